//! `C = A B` or `C += A B` on strided row-major views of slices, the runtime's GEMM entry
//! points: matrixmultiply ([`gemm`]), and the AVX-512 kernel where the CPU has it, for
//! constant weights packed once ([`Weights`], [`gemm_weights`]) and row-major right-hand
//! sides ([`gemm_rows`]).

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

use super::simd::{self, Avx512, Level, PackedB, Right};

/// A read-only matrix over a slice: element (i, j) at `i * row_stride + j * col_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A dense row-major matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn array(self) -> ArrayView2<'a, f32> {
        let shape = (self.rows, self.cols).strides((self.row_stride, self.col_stride));
        ArrayView2::from_shape(shape, self.data).expect("GEMM operand layout")
    }
}

/// `c` (`rows x cols`, rows `row_stride` apart) = `a b`, or `+= a b` when `accumulate`.
pub(crate) fn gemm(c: &mut [f32], row_stride: usize, accumulate: bool, a: View<'_>, b: View<'_>) {
    let shape = (a.rows, b.cols).strides((row_stride, 1));
    let mut cv = ArrayViewMut2::from_shape(shape, c).expect("GEMM output layout");
    let beta = if accumulate { 1.0 } else { 0.0 };
    general_mat_mul(1.0, &a.array(), &b.array(), beta, &mut cv);
}

/// A constant right-hand operand (model weights, `rows x cols`): packed once for the AVX-512
/// kernel where this CPU has it, else kept row-major for matrixmultiply (which packs per call).
#[derive(Debug, Clone)]
pub(crate) enum Weights {
    /// Laid out for [`simd::gemm_avx512`].
    Packed(PackedB, Avx512),
    /// Row-major.
    Plain {
        data: Vec<f32>,
        rows: usize,
        cols: usize,
    },
}

impl Weights {
    /// `data` (`rows x cols`, row-major) laid out for the best kernel of this CPU.
    pub fn new(data: Vec<f32>, rows: usize, cols: usize) -> Self {
        Self::for_level(Level::detect(), data, rows, cols)
    }

    /// As [`Weights::new`] for a given level (tests compare the kernels).
    pub fn for_level(level: Level, data: Vec<f32>, rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "weights shape");
        match Avx512::detect().filter(|_| level == Level::Avx512) {
            Some(cpu) => Self::Packed(PackedB::new(View::rows(&data, rows, cols)), cpu),
            None => Self::Plain { data, rows, cols },
        }
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        match self {
            Self::Packed(p, _) => p.rows(),
            Self::Plain { rows, .. } => *rows,
        }
    }
}

/// `c` (rows `row_stride` apart) `= a w[r0..r0 + a.cols]`, or `+=` when `accumulate`: the
/// product of `a` with a block of the weights' rows.
pub(crate) fn gemm_weights(
    c: &mut [f32],
    row_stride: usize,
    accumulate: bool,
    a: View<'_>,
    w: &Weights,
    r0: usize,
) {
    let k = a.cols;
    assert!(
        r0 + k <= w.rows(),
        "rows {r0}..{} of {} weight rows",
        r0 + k,
        w.rows()
    );
    match w {
        Weights::Packed(b, cpu) => {
            let right = Right::Packed { b, r0, k };
            simd::gemm_avx512(*cpu, c, row_stride, accumulate, a, right);
        }
        Weights::Plain { data, cols, .. } => {
            let b = View::rows(&data[r0 * cols..(r0 + k) * cols], k, *cols);
            gemm(c, row_stride, accumulate, a, b);
        }
    }
}

/// `c = a b` or `+= a b` with `b` row-major: the AVX-512 kernel where this CPU has it (it reads
/// `b` in place), else matrixmultiply.
pub(crate) fn gemm_rows(
    c: &mut [f32],
    row_stride: usize,
    accumulate: bool,
    a: View<'_>,
    b: View<'_>,
) {
    match Avx512::detect() {
        Some(cpu) if b.col_stride == 1 => {
            simd::gemm_avx512(cpu, c, row_stride, accumulate, a, Right::Rows(b));
        }
        _ => gemm(c, row_stride, accumulate, a, b),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_values::{max_diff, values};
    use super::*;

    #[test]
    fn weights_give_the_same_product_on_every_level() {
        // The model's shapes: a Winograd product's row block and an LSTM projection.
        for (m, k, n, r0, rows) in [(150, 480, 200, 240, 240), (37, 200, 400, 0, 200)] {
            let a_data = values(rows * m, 1, 1.0);
            // A transposed, as conv2 reads its transformed tiles.
            let a = View::rows(&a_data, rows, m).t();
            let w = values(k * n, 2, 1.0);
            let start = values(m * n, 3, 1.0);
            let mut want = start.clone();
            gemm(
                &mut want,
                n,
                true,
                a,
                View::rows(&w[r0 * n..(r0 + rows) * n], rows, n),
            );
            for level in Level::available() {
                let weights = Weights::for_level(level, w.clone(), k, n);
                assert_eq!(weights.rows(), k);
                let mut got = start.clone();
                gemm_weights(&mut got, n, true, a, &weights, r0);
                let d = max_diff(&got, &want);
                assert!(d < 1e-4, "{level:?}: {d}");
            }
            let mut got = start.clone();
            gemm_rows(
                &mut got,
                n,
                true,
                a,
                View::rows(&w[r0 * n..(r0 + rows) * n], rows, n),
            );
            let d = max_diff(&got, &want);
            assert!(d < 1e-4, "gemm_rows: {d}");
        }
    }
}
