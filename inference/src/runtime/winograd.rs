//! conv2 as Winograd F(4, 3) along time: the 3-tap time kernel costs 6 multiplications per
//! 4 outputs instead of 12, so the GEMM work halves. Inputs and weights are transformed once
//! per window and at load; the points are 0, +-1, +-2 (Lavin & Gray), whose f32 error stays
//! far below the 1e-5 tolerance on probabilities (`tests/native.rs`).

use super::conv::ConvShape;
use super::gemm::{gemm, View};
use super::graph::Conv;

/// Outputs per tile.
pub(crate) const M: usize = 4;
/// Inputs per tile (`M + 3 - 1`).
const ALPHA: usize = 6;

/// `G g` for each `[out][in * kh]` 3-tap kernel: `[ALPHA][in * kh][out]`.
pub(crate) fn transform_weights(conv: &Conv) -> Vec<f32> {
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
    u
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

/// conv2 + ReLU of one window (conv1's output `a1`, `[in * kh][padded]`, with at least
/// `tiles * 4 + 2` columns) into `out` rows `row_stride` apart, as `conv::conv2`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2(
    conv: &Conv,
    u: &[f32],
    s: ConvShape,
    a1: &[f32],
    out: &mut [f32],
    row_stride: usize,
    sc: &mut WinogradScratch,
) {
    let k = conv.in_ch * conv.kh;
    let tiles = s.cols.div_ceil(M);
    // B^T d for every input row and tile: V is [ALPHA][k][tiles].
    sc.v.resize(ALPHA * k * tiles, 0.0);
    let plane = k * tiles;
    for (row, src) in a1.chunks_exact(s.padded).take(k).enumerate() {
        for j in 0..tiles {
            let d = &src[j * M..j * M + ALPHA];
            let at = row * tiles + j;
            sc.v[at] = 4.0 * d[0] - 5.0 * d[2] + d[4];
            sc.v[plane + at] = -4.0 * (d[1] + d[2]) + d[3] + d[4];
            sc.v[2 * plane + at] = 4.0 * (d[1] - d[2]) - d[3] + d[4];
            sc.v[3 * plane + at] = 2.0 * (d[3] - d[1]) - d[2] + d[4];
            sc.v[4 * plane + at] = 2.0 * (d[1] - d[3]) - d[2] + d[4];
            sc.v[5 * plane + at] = 4.0 * d[1] - 5.0 * d[3] + d[5];
        }
    }
    // One GEMM per transformed point: M[xi] ([tiles][out]) = V[xi]^T U[xi].
    let o = conv.out_ch;
    sc.m.resize(ALPHA * tiles * o, 0.0);
    for xi in 0..ALPHA {
        let v = View::rows(&sc.v[xi * plane..(xi + 1) * plane], k, tiles);
        let w = View::rows(&u[xi * k * o..(xi + 1) * k * o], k, o);
        gemm(
            &mut sc.m[xi * tiles * o..(xi + 1) * tiles * o],
            o,
            false,
            v.t(),
            w,
        );
    }
    output_transform(&sc.m, tiles, o, s.cols, &conv.bias, out, row_stride);
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
            let mut a1 = vec![0.0; k * s.padded];
            for row in a1.chunks_exact_mut(s.padded) {
                row[1..=cols].iter_mut().for_each(|v| *v = rnd() * 3.0);
            }
            let mut want = vec![0.0; cols * out_ch];
            super::super::conv::conv2(
                &conv,
                &super::super::conv::conv2_taps(&conv),
                s,
                &a1,
                &mut want,
                out_ch,
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
