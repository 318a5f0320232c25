//! The two convolutions, one window at a time (a window's GEMMs are already large: batching
//! windows would not reduce packing, which matrixmultiply redoes per column block anyway).

use super::gemm::{gemm, View};

use super::graph::Conv;
use super::math::bias_relu;

/// Sizes shared by both convolutions for a window of `cols` columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    pub bins: usize,
    pub cols: usize,
    /// Frequency rows after conv1.
    pub rows1: usize,
    /// Columns of conv1's output buffer: `cols` rounded up to whole Winograd tiles, plus
    /// conv2's zero padding on both sides.
    pub padded: usize,
}

impl ConvShape {
    pub(crate) fn new(bins: usize, cols: usize, conv1: &Conv, conv2: &Conv) -> Self {
        Self {
            bins,
            cols,
            rows1: bins + 1 - conv1.kh,
            // Whole Winograd tiles, so every tile reads inside the buffer (extra columns zero).
            padded: cols.div_ceil(super::winograd::M) * super::winograd::M + 2 * conv2.pad_w,
        }
    }

    /// Length of conv1's output buffer, `[conv1.out_ch * rows1][padded]`.
    pub(crate) fn a1_len(&self, conv1: &Conv) -> usize {
        conv1.out_ch * self.rows1 * self.padded
    }
}

/// conv2's weight as one `[out][in * kh]` matrix per time tap, so each tap is a plain GEMM
/// over conv1's output shifted by the tap.
pub(crate) fn conv2_taps(conv: &Conv) -> Vec<f32> {
    let k = conv.in_ch * conv.kh;
    let mut taps = vec![0.0; conv.kw * conv.out_ch * k];
    for (j, w) in conv.weight.iter().enumerate() {
        let tap = j % conv.kw;
        let o = j / (conv.kw * k);
        let ck = (j / conv.kw) % k;
        taps[(tap * conv.out_ch + o) * k + ck] = *w;
    }
    taps
}

/// conv1 + ReLU of one window `x` (`[bins][cols]`) into `a1` (`[out_ch * rows1][padded]`,
/// conv2's padding columns zero), as im2col + one GEMM.
pub(crate) fn conv1(
    conv: &Conv,
    conv2_pad: usize,
    s: ConvShape,
    x: &[f32],
    xp: &mut Vec<f32>,
    cols: &mut Vec<f32>,
    a1: &mut Vec<f32>,
) {
    // Input padded by conv1's and conv2's time padding, so every im2col row is one copy.
    let off = conv.pad_w + conv2_pad;
    let wp = s.padded + conv.kw - 1;
    xp.clear();
    xp.resize(s.bins * wp, 0.0);
    for (dst, src) in xp.chunks_exact_mut(wp).zip(x.chunks_exact(s.cols)) {
        dst[off..off + s.cols].copy_from_slice(src);
    }
    let taps = conv.kh * conv.kw;
    let n = s.rows1 * s.padded;
    cols.resize(taps * n, 0.0);
    for (tap, row) in cols.chunks_exact_mut(n).enumerate() {
        let (kh, kw) = (tap / conv.kw, tap % conv.kw);
        for (h, dst) in row.chunks_exact_mut(s.padded).enumerate() {
            let start = (h + kh) * wp + kw;
            dst.copy_from_slice(&xp[start..start + s.padded]);
        }
    }
    a1.resize(conv.out_ch * n, 0.0);
    let w = View::rows(&conv.weight, conv.out_ch, taps);
    gemm(a1, n, false, w, View::rows(cols, taps, n));
    for (ch, block) in a1.chunks_exact_mut(n).enumerate() {
        bias_relu(block, conv.bias[ch]);
    }
    for row in a1.chunks_exact_mut(s.padded) {
        row[..conv2_pad].fill(0.0);
        row[conv2_pad + s.cols..].fill(0.0);
    }
}

/// conv2 + ReLU of one window from conv1's output into `out`: `cols` rows of `out_ch` values,
/// `row_stride` apart (the LSTM's time-major `[time][batch][features]` layout).
pub(crate) fn conv2(
    conv: &Conv,
    taps: &[f32],
    s: ConvShape,
    a1: &[f32],
    out: &mut [f32],
    row_stride: usize,
) {
    let k = conv.in_ch * conv.kh;
    let len = (s.cols - 1) * row_stride + conv.out_ch;
    for (tap, w) in taps.chunks_exact(conv.out_ch * k).enumerate() {
        let w = View::rows(w, conv.out_ch, k);
        // conv1's output shifted by the tap: columns tap..tap + cols.
        let shifted = View {
            data: &a1[tap..],
            rows: k,
            cols: s.cols,
            row_stride: s.padded,
            col_stride: 1,
        };
        gemm(&mut out[..len], row_stride, tap > 0, shifted.t(), w.t());
    }
    for row in out[..len].chunks_mut(row_stride) {
        for (v, b) in row[..conv.out_ch].iter_mut().zip(&conv.bias) {
            *v = (*v + b).max(0.0);
        }
    }
}
