//! `C = A B` or `C += A B` on strided row-major views of slices, the one GEMM entry point of
//! the runtime.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

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
