//! The two convolutions, one window at a time (a window's GEMMs are already large: batching
//! windows would not reduce packing, which matrixmultiply redoes per column block anyway).

use super::gemm::{gemm, gemm_rows, View};

use super::graph::Conv;
use super::math::bias_relu;

/// Sizes shared by both convolutions for a window of `cols` columns.
///
/// conv1's output rows are stored phase-split: a row's columns (time with conv2's zero padding,
/// `padded` of them) are kept as four runs of `phase` values, run `r` holding columns
/// `r, r + 4, r + 8, ...`. Winograd F(4, 3) reads column `4j + i` of tile `j`, so each of its
/// six inputs becomes a contiguous run and the input transform vectorises.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    pub bins: usize,
    pub cols: usize,
    /// Frequency rows after conv1.
    pub rows1: usize,
    /// conv1 output columns: `cols` rounded up to whole Winograd tiles, plus conv2's zero
    /// padding on both sides.
    pub padded: usize,
    /// Values per phase run (`padded / 4` rounded up); a row holds `4 * phase` values.
    pub phase: usize,
}

impl ConvShape {
    pub(crate) fn new(bins: usize, cols: usize, conv1: &Conv, conv2: &Conv) -> Self {
        // Whole Winograd tiles, so every tile reads inside the buffer (extra columns zero).
        let padded = cols.div_ceil(super::winograd::M) * super::winograd::M + 2 * conv2.pad_w;
        Self {
            bins,
            cols,
            rows1: bins + 1 - conv1.kh,
            padded,
            phase: padded.div_ceil(4),
        }
    }

    /// Length of one conv1 output row (four phase runs).
    pub(crate) fn row_len(&self) -> usize {
        4 * self.phase
    }

    /// Length of conv1's output buffer, `[conv1.out_ch * rows1][row_len]`.
    pub(crate) fn a1_len(&self, conv1: &Conv) -> usize {
        conv1.out_ch * self.rows1 * self.row_len()
    }

    /// Column `c` (0..padded) of a phase-split row.
    pub(crate) fn at(&self, c: usize) -> usize {
        (c % 4) * self.phase + c / 4
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

/// conv1 + ReLU of one window `x` (`[bins][cols]`) into `a1` (`[out_ch * rows1]` phase-split
/// rows, conv2's padding columns zero), as im2col + one GEMM.
pub(crate) fn conv1(
    conv: &Conv,
    conv2_pad: usize,
    s: ConvShape,
    x: &[f32],
    xp: &mut Vec<f32>,
    cols: &mut Vec<f32>,
    a1: &mut Vec<f32>,
) {
    // The input padded by conv1's and conv2's time padding, phase-split like the output (one
    // extra value per run for the taps' shift): `[bins][4][phase + 1]`.
    let off = conv.pad_w + conv2_pad;
    let run = s.phase + 1;
    xp.clear();
    xp.resize(s.bins * 4 * run, 0.0);
    for (dst, src) in xp.chunks_exact_mut(4 * run).zip(x.chunks_exact(s.cols)) {
        for (t, &v) in src.iter().enumerate() {
            let c = t + off;
            dst[(c % 4) * run + c / 4] = v;
        }
    }
    // Output column c = 4j + r of tap column kw reads input column c + kw: phase (r + kw) % 4,
    // index j + (r + kw) / 4, so every run is one copy.
    let taps = conv.kh * conv.kw;
    let n = s.rows1 * s.row_len();
    cols.resize(taps * n, 0.0);
    for (tap, block) in cols.chunks_exact_mut(n).enumerate() {
        let (kh, kw) = (tap / conv.kw, tap % conv.kw);
        for (h, row) in block.chunks_exact_mut(s.row_len()).enumerate() {
            let src = &xp[(h + kh) * 4 * run..(h + kh + 1) * 4 * run];
            for (r, dst) in row.chunks_exact_mut(s.phase).enumerate() {
                let start = ((r + kw) % 4) * run + (r + kw) / 4;
                dst.copy_from_slice(&src[start..start + s.phase]);
            }
        }
    }
    a1.resize(conv.out_ch * n, 0.0);
    let w = View::rows(&conv.weight, conv.out_ch, taps);
    gemm_rows(a1, n, false, w, View::rows(cols, taps, n));
    for (ch, block) in a1.chunks_exact_mut(n).enumerate() {
        bias_relu(block, conv.bias[ch]);
    }
    // conv2's zero padding, and the columns past `padded` that fill the last runs.
    for row in a1.chunks_exact_mut(s.row_len()) {
        for (r, run) in row.chunks_exact_mut(s.phase).enumerate() {
            let hi = (conv2_pad + s.cols)
                .saturating_sub(r)
                .div_ceil(4)
                .min(s.phase);
            let lo = conv2_pad.saturating_sub(r).div_ceil(4).min(hi);
            run[..lo].fill(0.0);
            run[hi..].fill(0.0);
        }
    }
}

/// A phase-split conv1 output row back in column order (`padded` values), for the per-tap path.
fn unphase(s: ConvShape, row: &[f32], dst: &mut [f32]) {
    for (c, d) in dst.iter_mut().enumerate() {
        *d = row[s.at(c)];
    }
}

/// conv2 + ReLU of one window from conv1's output (put back in column order in `plain`) into
/// `out`: `cols` rows of `out_ch` values,
/// `row_stride` apart (the LSTM's time-major `[time][batch][features]` layout).
pub(crate) fn conv2(
    conv: &Conv,
    taps: &[f32],
    s: ConvShape,
    a1: &[f32],
    out: &mut [f32],
    row_stride: usize,
    plain: &mut Vec<f32>,
) {
    let k = conv.in_ch * conv.kh;
    plain.resize(k * s.padded, 0.0);
    for (src, dst) in a1
        .chunks_exact(s.row_len())
        .zip(plain.chunks_exact_mut(s.padded))
    {
        unphase(s, src, dst);
    }
    let len = (s.cols - 1) * row_stride + conv.out_ch;
    for (tap, w) in taps.chunks_exact(conv.out_ch * k).enumerate() {
        let w = View::rows(w, conv.out_ch, k);
        // conv1's output shifted by the tap: columns tap..tap + cols.
        let shifted = View {
            data: &plain[tap..],
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
