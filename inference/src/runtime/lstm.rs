//! Bidirectional LSTM layer in ONNX semantics (gates i, o, f, c; zero initial state; output
//! `[time][batch][fwd h | bwd h]`), batched across all sequences of a call.

use super::gemm::{gemm_weights, View};
use super::graph::Lstm;
use super::simd::{self, Level};

/// Rows (time steps x sequences) whose input projections are one GEMM: enough to amortise
/// packing `W` (32-row calls ran at half the rate), few enough that the block's gates
/// (`ROWS * 4 * hidden` floats) stay in L2 for the recurrence (256 to 2048 measured within 1 %).
const ROWS: usize = 512;

/// Reusable buffers of one layer run.
#[derive(Debug, Default)]
pub(crate) struct LstmScratch {
    gates: Vec<f32>,
    cell: Vec<f32>,
}

/// Runs one layer over `x` (`[steps][batch][layer.input]`) into `y` (`[steps][batch][2 * hidden]`).
pub(crate) fn bilstm(
    layer: &Lstm,
    x: &[f32],
    steps: usize,
    batch: usize,
    y: &mut [f32],
    scratch: &mut LstmScratch,
) {
    for dir in 0..2 {
        direction(layer, dir, x, steps, batch, y, scratch);
    }
}

fn direction(
    layer: &Lstm,
    dir: usize,
    x: &[f32],
    steps: usize,
    batch: usize,
    y: &mut [f32],
    s: &mut LstmScratch,
) {
    let (h, inp) = (layer.hidden, layer.input);
    let g4 = 4 * h;
    let w = &layer.w_t[dir];
    let bias = &layer.bias[dir * g4..(dir + 1) * g4];
    let level = Level::detect();
    // Even blocks: a short last block would run at a poor rate.
    let block = steps.div_ceil((steps * batch).div_ceil(ROWS).max(1));
    s.cell.clear();
    s.cell.resize(batch * h, 0.0);
    s.gates.resize(block * batch * g4, 0.0);
    let blocks = steps.div_ceil(block.max(1));
    let mut first = true;
    for blk in 0..blocks {
        // Blocks in processing order: forward from the start, backward from the end.
        let (t0, t1) = if dir == 0 {
            (blk * block, ((blk + 1) * block).min(steps))
        } else {
            (steps.saturating_sub((blk + 1) * block), steps - blk * block)
        };
        let rows = (t1 - t0) * batch;
        let xin = &x[t0 * batch * inp..t1 * batch * inp];
        let gates = &mut s.gates[..rows * g4];
        for row in gates.chunks_exact_mut(g4) {
            row.copy_from_slice(bias);
        }
        gemm_weights(gates, g4, true, View::rows(xin, rows, inp), w, 0);
        for k in 0..t1 - t0 {
            let t = if dir == 0 { t0 + k } else { t1 - 1 - k };
            let g = &mut s.gates[(t - t0) * batch * g4..(t - t0 + 1) * batch * g4];
            if !first {
                let prev = if dir == 0 { t - 1 } else { t + 1 };
                let start = prev * batch * 2 * h + dir * h;
                let hp = &y[start..start + (batch - 1) * 2 * h + h];
                let r = &layer.r_packed[dir * h * g4..(dir + 1) * h * g4];
                simd::recurrence(level, hp, 2 * h, h, r, g);
            }
            first = false;
            let out = &mut y[t * batch * 2 * h..(t + 1) * batch * 2 * h];
            simd::lstm_cell(level, h, g, &mut s.cell, &mut out[dir * h..], 2 * h);
        }
    }
}
