//! conv2 as Winograd F(4, 3) along time: the 3-tap time kernel costs 6 multiplications per
//! 4 outputs instead of 12, so the GEMM work halves. Inputs and weights are transformed once
//! per window and at load; the points are 0, +-1, +-2 (Lavin & Gray), whose f32 error stays
//! far below the 1e-5 tolerance on probabilities (`tests/native.rs`).

use super::conv::ConvShape;
use super::gemm::{gemm_weights, View, Weights};
use super::graph::Conv;
use super::simd;

/// Outputs per tile.
pub(crate) const M: usize = 4;
/// Inputs per tile (`M + 3 - 1`).
const ALPHA: usize = 6;

/// Input rows transformed per block: about 1 MB of transformed tiles for a 300 s window.
const K_BLOCK: usize = 256;

/// `G g` for each `[out][in * kh]` 3-tap kernel: one `[in * kh][out]` matrix per transformed
/// point.
pub(crate) fn transform_weights(conv: &Conv) -> Vec<Weights> {
    let k = conv.in_ch * conv.kh;
    let mut u = vec![0.0; ALPHA * k * conv.out_ch];
    for o in 0..conv.out_ch {
        for ck in 0..k {
            let g = &conv.weight[(o * k + ck) * 3..(o * k + ck) * 3 + 3];
            let (g0, g1, g2) = (f64::from(g[0]), f64::from(g[1]), f64::from(g[2]));
            let t = [
                g0 / 4.0,
                -(g0 + g1 + g2) / 6.0,
                -(g0 - g1 + g2) / 6.0,
                g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
                g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
                g2,
            ];
            for (xi, v) in t.iter().enumerate() {
                u[(xi * k + ck) * conv.out_ch + o] = *v as f32;
            }
        }
    }
    u.chunks_exact(k * conv.out_ch)
        .map(|point| Weights::new(point.to_vec(), k, conv.out_ch))
        .collect()
}

/// Output transform `A^T`, one row per output of a tile.
const A_T: [[f32; ALPHA]; M] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// Reusable buffers of one window.
#[derive(Debug, Default)]
pub(crate) struct WinogradScratch {
    v: Vec<f32>,
    m: Vec<f32>,
}

/// conv2 + ReLU of one window (conv1's output `a1`, `[in * kh]` phase-split rows of
/// [`ConvShape`]) into `out` rows `row_stride` apart, as `conv::conv2`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2(
    conv: &Conv,
    u: &[Weights],
    s: ConvShape,
    a1: &[f32],
    out: &mut [f32],
    row_stride: usize,
    sc: &mut WinogradScratch,
) {
    let k = conv.in_ch * conv.kh;
    let tiles = s.cols.div_ceil(M);
    let o = conv.out_ch;
    sc.m.resize(ALPHA * tiles * o, 0.0);
    let level = simd::Level::detect();
    // Input rows in blocks whose transform (V, [ALPHA][rows][tiles]) stays in L2 for its six
    // GEMMs, instead of transforming all rows first and streaming V back from memory.
    let blocks = k.div_ceil(K_BLOCK);
    let rows_per = k.div_ceil(blocks);
    sc.v.resize(ALPHA * rows_per * tiles, 0.0);
    let a1 = &a1[..k * s.row_len()];
    for (blk, rows) in a1.chunks(rows_per * s.row_len()).enumerate() {
        let r0 = blk * rows_per;
        let n = rows.len() / s.row_len();
        let plane = n * tiles;
        for (row, src) in rows.chunks_exact(s.row_len()).enumerate() {
            simd::winograd_input(level, src, s.phase, tiles, &mut sc.v[row * tiles..], plane);
        }
        // One GEMM per transformed point: M[xi] ([tiles][out]) (+)= V[xi]^T U[xi].
        for (xi, u) in u.iter().enumerate() {
            let v = View::rows(&sc.v[xi * plane..(xi + 1) * plane], n, tiles);
            let m = &mut sc.m[xi * tiles * o..(xi + 1) * tiles * o];
            gemm_weights(m, o, blk > 0, v.t(), u, r0);
        }
    }
    output_transform(&sc.m, tiles, o, s.cols, &conv.bias, out, row_stride);
}

/// `B^T d` for the `tiles` tiles of one phase-split row (`phase` values per run), into
/// `v[xi * plane + j]`. Tile `j` reads columns `4j..4j + 6`, i.e. runs 0-3 at `j` and runs
/// 0-1 at `j + 1`.
#[inline(always)]
pub(crate) fn input_body<F: simd::MulAdd>(
    row: &[f32],
    phase: usize,
    tiles: usize,
    v: &mut [f32],
    plane: usize,
) {
    let (p0, p1) = (&row[..tiles + 1], &row[phase..phase + tiles + 1]);
    let (p2, p3) = (
        &row[2 * phase..2 * phase + tiles],
        &row[3 * phase..3 * phase + tiles],
    );
    let (d4, d5) = (&p0[1..], &p1[1..]);
    let (v0, rest) = v.split_at_mut(plane);
    let (v1, rest) = rest.split_at_mut(plane);
    let (v2, rest) = rest.split_at_mut(plane);
    let (v3, rest) = rest.split_at_mut(plane);
    let (v4, v5) = rest.split_at_mut(plane);
    let (v0, v1, v2) = (&mut v0[..tiles], &mut v1[..tiles], &mut v2[..tiles]);
    let (v3, v4, v5) = (&mut v3[..tiles], &mut v4[..tiles], &mut v5[..tiles]);
    for j in 0..tiles {
        let (d0, d1, d2, d3) = (p0[j], p1[j], p2[j], p3[j]);
        v0[j] = F::mul_add(4.0, d0, F::mul_add(-5.0, d2, d4[j]));
        v1[j] = F::mul_add(-4.0, d1 + d2, d3 + d4[j]);
        v2[j] = F::mul_add(4.0, d1 - d2, d4[j] - d3);
        v3[j] = F::mul_add(2.0, d3 - d1, d4[j] - d2);
        v4[j] = F::mul_add(2.0, d1 - d3, d4[j] - d2);
        v5[j] = F::mul_add(4.0, d1, F::mul_add(-5.0, d3, d5[j]));
    }
}

/// `A^T m` per tile and channel, then bias and ReLU, into the time-major output.
fn output_transform(
    m: &[f32],
    tiles: usize,
    o: usize,
    cols: usize,
    bias: &[f32],
    out: &mut [f32],
    row_stride: usize,
) {
    let plane = tiles * o;
    for j in 0..tiles {
        let p: [&[f32]; ALPHA] =
            std::array::from_fn(|xi| &m[xi * plane + j * o..xi * plane + (j + 1) * o]);
        for (i, a) in A_T.iter().enumerate().take(cols - j * M) {
            let t = j * M + i;
            let dst = &mut out[t * row_stride..t * row_stride + o];
            for (c, d) in dst.iter_mut().enumerate() {
                let y = a[0] * p[0][c]
                    + a[1] * p[1][c]
                    + a[2] * p[2][c]
                    + a[3] * p[3][c]
                    + a[4] * p[4][c]
                    + a[5] * p[5][c];
                *d = (y + bias[c]).max(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winograd_equals_direct_taps() {
        let mut seed = 7u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let (in_ch, kh, out_ch) = (3, 4, 5);
        let conv = Conv {
            out_ch,
            in_ch,
            kh,
            kw: 3,
            pad_w: 1,
            weight: (0..out_ch * in_ch * kh * 3).map(|_| rnd()).collect(),
            bias: (0..out_ch).map(|_| rnd()).collect(),
        };
        for cols in [1, 4, 7, 13] {
            let conv1 = Conv {
                out_ch: in_ch,
                in_ch: 1,
                kh: 1,
                kw: 1,
                pad_w: 0,
                weight: vec![],
                bias: vec![],
            };
            let s = ConvShape::new(kh, cols, &conv1, &conv);
            let k = in_ch * kh;
            // conv1's output layout: phase-split rows, padding columns zero.
            let mut a1 = vec![0.0; k * s.row_len()];
            for row in a1.chunks_exact_mut(s.row_len()) {
                (1..=cols).for_each(|c| row[s.at(c)] = rnd() * 3.0);
            }
            let mut want = vec![0.0; cols * out_ch];
            super::super::conv::conv2(
                &conv,
                &super::super::conv::conv2_taps(&conv),
                s,
                &a1,
                &mut want,
                out_ch,
                &mut Vec::new(),
            );
            let mut got = vec![0.0; cols * out_ch];
            let u = transform_weights(&conv);
            conv2(
                &conv,
                &u,
                s,
                &a1,
                &mut got,
                out_ch,
                &mut WinogradScratch::default(),
            );
            assert!(want.iter().any(|&v| v > 0.0));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-5, "cols {cols}, value {i}: {g} vs {w}");
            }
        }
    }
}
