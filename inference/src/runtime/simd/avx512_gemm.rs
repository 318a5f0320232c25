//! `C (+)= A B` on AVX-512 registers, for the model's products whose right-hand side is a
//! constant weight matrix packed once at load (conv2's Winograd products, the LSTM's input
//! projections) or a plain row-major matrix (conv1's im2col).
//!
//! matrixmultiply, which serves every other CPU, has no AVX-512 kernel and repacks the
//! weights on every call. Here a register tile of [`MR`] rows x [`NR`] columns (24 of the 32
//! vector registers) accumulates over a block of [`KC`] rows of `B`, whose panel then stays
//! in L1 while the tile walks down `A`; `A` is read in place (any strides), one broadcast per
//! element. The last panel of a matrix whose width is not a multiple of 16 is read and written
//! with masked loads and stores, so nothing outside `B` or `C` is touched.
//!
//! The safe entry point [`gemm`] checks every bound once per call; the pointer arithmetic
//! inside stays within those bounds (see the SAFETY notes).

use super::super::gemm::View;

/// Columns per register tile: four 16-lane vectors.
pub(crate) const NR: usize = 64;
/// Rows per register tile: 6 x 4 accumulators, 4 vectors of `B` and a broadcast of `A` use 29
/// of the 32 vector registers.
const MR: usize = 6;
/// Rows of `B` per pass: a packed panel block (`KC x NR` floats, 32 KB) stays in L1 while the
/// tile walks down `A`.
const KC: usize = 128;
const LANES: usize = 16;

/// Proof that this CPU runs AVX-512F: only [`Avx512::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// `Some` when this CPU has AVX-512F (per [`super::Level::detect`]).
    pub(crate) fn detect() -> Option<Self> {
        (super::Level::detect() == super::Level::Avx512).then_some(Self(()))
    }
}

/// A constant `k x n` matrix laid out for [`gemm`]: panels of [`NR`] columns (the last one
/// narrower), each `[k][width rounded up to 16]` with zero padding, so a panel's rows are
/// read as one contiguous stream.
#[derive(Debug, Clone)]
pub(crate) struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedB {
    /// Packs `b` (any strides).
    pub(crate) fn new(b: View<'_>) -> Self {
        let (k, n) = (b.rows, b.cols);
        let mut data = Vec::with_capacity(k * n.div_ceil(LANES) * LANES);
        for c0 in (0..n).step_by(NR) {
            let width = NR.min(n - c0);
            let padded = width.div_ceil(LANES) * LANES;
            for r in 0..k {
                data.extend((c0..c0 + width).map(|c| b.data[r * b.row_stride + c * b.col_stride]));
                data.resize(data.len() + padded - width, 0.0);
            }
        }
        Self { data, k, n }
    }

    /// Rows of `B`.
    pub(crate) fn rows(&self) -> usize {
        self.k
    }
}

/// The right-hand operand of [`gemm`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Right<'a> {
    /// Rows `r0..r0 + k` of a packed matrix.
    Packed { b: &'a PackedB, r0: usize, k: usize },
    /// A row-major matrix (`col_stride` 1).
    Rows(View<'a>),
}

/// Where one panel of `B` is: its first column, width, vectors per row, first element and
/// row stride in `data`.
#[derive(Debug, Clone, Copy)]
struct Panel {
    c0: usize,
    width: usize,
    vectors: usize,
    base: usize,
    row_stride: usize,
}

impl Right<'_> {
    fn shape(&self) -> (usize, usize) {
        match *self {
            Right::Packed { b, k, .. } => (k, b.n),
            Right::Rows(v) => (v.rows, v.cols),
        }
    }

    fn data(&self) -> &[f32] {
        match self {
            Right::Packed { b, .. } => &b.data,
            Right::Rows(v) => v.data,
        }
    }

    fn panels(&self) -> impl Iterator<Item = Panel> + '_ {
        let (_, n) = self.shape();
        (0..n).step_by(NR).map(move |c0| {
            let width = NR.min(n - c0);
            let vectors = width.div_ceil(LANES);
            match *self {
                Right::Packed { b, r0, .. } => {
                    // Every panel before this one is `NR` wide: `b.k` rows of NR floats.
                    let stride = vectors * LANES;
                    Panel {
                        c0,
                        width,
                        vectors,
                        base: c0 * b.k + r0 * stride,
                        row_stride: stride,
                    }
                }
                Right::Rows(v) => Panel {
                    c0,
                    width,
                    vectors,
                    base: c0,
                    row_stride: v.row_stride,
                },
            }
        })
    }
}

/// `c` (`a.rows x n`, rows `c_stride` apart) `= a b`, or `+= a b` when `accumulate`.
///
/// # Panics
/// If the shapes disagree or an operand is shorter than its shape and strides need.
pub(crate) fn gemm(
    _cpu: Avx512,
    c: &mut [f32],
    c_stride: usize,
    accumulate: bool,
    a: View<'_>,
    b: Right<'_>,
) {
    let (k, n) = b.shape();
    let m = a.rows;
    assert_eq!(a.cols, k, "inner dimensions");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c_stride >= n && (m - 1) * c_stride + n <= c.len(),
        "C bounds"
    );
    if k == 0 {
        if !accumulate {
            c.chunks_mut(c_stride)
                .take(m)
                .for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    assert!(
        (m - 1) * a.row_stride + (k - 1) * a.col_stride < a.data.len(),
        "A bounds"
    );
    let data = b.data();
    match b {
        Right::Packed { b: p, r0, .. } => {
            assert!(r0 + k <= p.k && p.data.len() == p.k * n.div_ceil(LANES) * LANES);
        }
        Right::Rows(v) => {
            assert!(v.col_stride == 1, "B rows must be contiguous");
            assert!((k - 1) * v.row_stride + n <= data.len(), "B bounds");
        }
    }
    let blocks = k.div_ceil(KC);
    let kc = k.div_ceil(blocks);
    for k0 in (0..k).step_by(kc) {
        let kn = kc.min(k - k0);
        let load = accumulate || k0 > 0;
        for p in b.panels() {
            let rem = p.width - (p.vectors - 1) * LANES;
            let mask = if rem == LANES {
                u16::MAX
            } else {
                (1u16 << rem) - 1
            };
            let step = Step {
                k: kn,
                a_rs: a.row_stride,
                a_cs: a.col_stride,
                b_rs: p.row_stride,
                c_rs: c_stride,
                load,
                mask,
            };
            // SAFETY: `Avx512` proves the CPU runs AVX-512F. Bounds, with `i < m`, `kk < kn`,
            // `v < p.vectors`: A reads `(i) * a_rs + (k0 + kk) * a_cs`, within the check on A;
            // B reads `p.base + (k0 + kk) * p.row_stride + v * 16 + lane`, where full vectors
            // stay within the panel's `width` columns (or its zero padding when packed) and the
            // last vector is masked to `rem` lanes, within the checks on B; C is read and
            // written at `i * c_stride + p.c0 + v * 16 + lane`, the last vector masked, so at
            // most `(m - 1) * c_stride + n`.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                panel(
                    m,
                    a.data.as_ptr().add(k0 * a.col_stride),
                    data.as_ptr().add(p.base + k0 * p.row_stride),
                    c.as_mut_ptr().add(p.c0),
                    p.vectors,
                    step,
                );
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("no AVX-512 off x86-64 ({step:?})");
        }
    }
}

/// The loop-invariant part of one pass over a panel.
#[derive(Debug, Clone, Copy)]
struct Step {
    k: usize,
    a_rs: usize,
    a_cs: usize,
    b_rs: usize,
    c_rs: usize,
    load: bool,
    mask: u16,
}

/// One block of `k` rows of a panel against every row of `A`, [`MR`] rows at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn panel(m: usize, a: *const f32, b: *const f32, c: *mut f32, vectors: usize, s: Step) {
    macro_rules! rows {
        ($v:literal, $r:expr, $($arg:expr),*) => {
            match $r {
                6 => tile::<6, $v>($($arg),*),
                5 => tile::<5, $v>($($arg),*),
                4 => tile::<4, $v>($($arg),*),
                3 => tile::<3, $v>($($arg),*),
                2 => tile::<2, $v>($($arg),*),
                _ => tile::<1, $v>($($arg),*),
            }
        };
    }
    let mut r0 = 0;
    while r0 < m {
        let r = MR.min(m - r0);
        // SAFETY: rows r0..r0 + r of A and C are within the caller's bounds.
        let (ap, cp) = unsafe { (a.add(r0 * s.a_rs), c.add(r0 * s.c_rs)) };
        // SAFETY: as the caller's.
        unsafe {
            match vectors {
                4 => rows!(4, r, ap, b, cp, s),
                3 => rows!(3, r, ap, b, cp, s),
                2 => rows!(2, r, ap, b, cp, s),
                _ => rows!(1, r, ap, b, cp, s),
            }
        }
        r0 += r;
    }
}

/// `R` rows x `V` vectors of `C` accumulated over `s.k` rows of `B` in registers; the last
/// vector of each row of `B` and `C` masked by `s.mask`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile<const R: usize, const V: usize>(a: *const f32, b: *const f32, c: *mut f32, s: Step) {
    use std::arch::x86_64::{
        _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };
    // SAFETY (whole body): called from `panel` (AVX-512F enabled) with pointers whose every
    // offset below the caller has bounds-checked.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        if s.load {
            for (i, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    let p = c.add(i * s.c_rs + v * LANES);
                    *x = if v + 1 == V {
                        _mm512_maskz_loadu_ps(s.mask, p)
                    } else {
                        _mm512_loadu_ps(p)
                    };
                }
            }
        }
        let (mut ap, mut bp) = (a, b);
        for _ in 0..s.k {
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                let p = bp.add(v * LANES);
                *x = if v + 1 == V {
                    _mm512_maskz_loadu_ps(s.mask, p)
                } else {
                    _mm512_loadu_ps(p)
                };
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*ap.add(i * s.a_rs));
                for (acc, &b) in row.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(x, b, *acc);
                }
            }
            ap = ap.add(s.a_cs);
            bp = bp.add(s.b_rs);
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                let p = c.add(i * s.c_rs + v * LANES);
                if v + 1 == V {
                    _mm512_mask_storeu_ps(p, s.mask, x);
                } else {
                    _mm512_storeu_ps(p, x);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::test_values::{max_diff, values};
    use super::*;

    /// `c (+)= a b` in f64, the plain loop the kernel must match.
    fn reference(c: &mut [f32], c_rs: usize, accumulate: bool, a: View<'_>, b: View<'_>) {
        for i in 0..a.rows {
            for j in 0..b.cols {
                let dot: f64 = (0..a.cols)
                    .map(|k| {
                        f64::from(a.data[i * a.row_stride + k * a.col_stride])
                            * f64::from(b.data[k * b.row_stride + j * b.col_stride])
                    })
                    .sum();
                let c0 = if accumulate {
                    f64::from(c[i * c_rs + j])
                } else {
                    0.0
                };
                c[i * c_rs + j] = (c0 + dot) as f32;
            }
        }
    }

    #[test]
    fn packed_and_row_major_match_a_plain_loop() {
        let Some(cpu) = Avx512::detect() else {
            eprintln!("no AVX-512 on this CPU: kernel not tested here");
            return;
        };
        // Odd sizes: row tails of every height, masked last vectors, several K blocks, and the
        // model's shapes (200 and 400 columns).
        for (m, k, n) in [
            (1, 1, 1),
            (7, 3, 17),
            (13, 300, 200),
            (6, 129, 64),
            (11, 200, 400),
            (5, 2, 33),
        ] {
            for (transposed_a, accumulate) in [(false, false), (true, true), (false, true)] {
                let a_data = values(m * k + 5, 1, 1.0);
                let a = if transposed_a {
                    View::rows(&a_data[..m * k], k, m).t()
                } else {
                    View::rows(&a_data[..m * k], m, k)
                };
                let b_data = values(k * n, 2, 1.0);
                let b = View::rows(&b_data, k, n);
                let c_rs = n + 3;
                let start = values(m * c_rs, 3, 1.0);
                let mut want = start.clone();
                reference(&mut want, c_rs, accumulate, a, b);
                let packed = PackedB::new(b);
                for right in [
                    Right::Packed {
                        b: &packed,
                        r0: 0,
                        k,
                    },
                    Right::Rows(b),
                ] {
                    let mut got = start.clone();
                    gemm(cpu, &mut got, c_rs, accumulate, a, right);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        // Padding between rows of C is never written.
                        let tol = if i % c_rs >= n { 0.0 } else { 1e-4 };
                        assert!(
                            (g - w).abs() <= tol,
                            "m{m} k{k} n{n} {right:?}: [{i}] {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn packed_row_ranges_are_sub_products() {
        let Some(cpu) = Avx512::detect() else {
            return;
        };
        let (m, k, n) = (9, 40, 70);
        let (a_data, b_data) = (values(m * k, 4, 1.0), values(k * n, 5, 1.0));
        let packed = PackedB::new(View::rows(&b_data, k, n));
        let mut want = vec![0.0; m * n];
        let mut got = vec![0.0; m * n];
        for (r0, rows) in [(0, 15), (15, 25)] {
            let a = View {
                data: &a_data[r0..],
                rows: m,
                cols: rows,
                row_stride: k,
                col_stride: 1,
            };
            let b = View::rows(&b_data[r0 * n..], rows, n);
            reference(&mut want, n, r0 > 0, a, b);
            gemm(
                cpu,
                &mut got,
                n,
                r0 > 0,
                a,
                Right::Packed {
                    b: &packed,
                    r0,
                    k: rows,
                },
            );
        }
        let d = max_diff(&got, &want);
        assert!(d < 1e-5, "{d}");
    }
}
