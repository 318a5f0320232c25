//! Bidirectional LSTM layer in ONNX semantics (gates i, o, f, c; zero initial state; output
//! `[time][batch][fwd h | bwd h]`), batched across all sequences of a call.

use super::gemm::{gemm, View};

use super::graph::Lstm;
use super::math::{sigmoid, tanh, tanh_into};

/// Time steps whose input projections are computed by one GEMM: large enough for an
/// efficient GEMM, small enough that the block stays in cache for the recurrence.
const TIME_BLOCK: usize = 32;

/// Up to this many sequences, the recurrence runs as vectorised row updates: a GEMM call per
/// step repacks `R` each time, which costs more than it saves for so few rows.
const FEW: usize = 4;

/// Reusable buffers of one layer run.
#[derive(Debug, Default)]
pub(crate) struct LstmScratch {
    gates: Vec<f32>,
    cell: Vec<f32>,
    tanh_cell: Vec<f32>,
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
    let w = View::rows(&layer.w[dir * g4 * inp..(dir + 1) * g4 * inp], g4, inp);
    let r = View::rows(&layer.r[dir * g4 * h..(dir + 1) * g4 * h], g4, h);
    let bias = &layer.bias[dir * g4..(dir + 1) * g4];
    s.cell.clear();
    s.cell.resize(batch * h, 0.0);
    s.tanh_cell.resize(h, 0.0);
    s.gates.resize(TIME_BLOCK * batch * g4, 0.0);
    let blocks = steps.div_ceil(TIME_BLOCK);
    let mut first = true;
    for blk in 0..blocks {
        // Blocks in processing order: forward from the start, backward from the end.
        let (t0, t1) = if dir == 0 {
            (blk * TIME_BLOCK, ((blk + 1) * TIME_BLOCK).min(steps))
        } else {
            (
                steps.saturating_sub((blk + 1) * TIME_BLOCK),
                steps - blk * TIME_BLOCK,
            )
        };
        let rows = (t1 - t0) * batch;
        let xin = View::rows(&x[t0 * batch * inp..t1 * batch * inp], rows, inp);
        let gates = &mut s.gates[..rows * g4];
        for row in gates.chunks_exact_mut(g4) {
            row.copy_from_slice(bias);
        }
        gemm(gates, g4, true, xin, w.t());
        for k in 0..t1 - t0 {
            let t = if dir == 0 { t0 + k } else { t1 - 1 - k };
            let g = &mut s.gates[(t - t0) * batch * g4..(t - t0 + 1) * batch * g4];
            if !first {
                let prev = if dir == 0 { t - 1 } else { t + 1 };
                let start = prev * batch * 2 * h + dir * h;
                let hp = &y[start..start + (batch - 1) * 2 * h + h];
                if batch <= FEW {
                    let r_t = &layer.r_t[dir * h * g4..(dir + 1) * h * g4];
                    recurrence_few(hp, h, r_t, g);
                } else {
                    let hp = View {
                        data: hp,
                        rows: batch,
                        cols: h,
                        row_stride: 2 * h,
                        col_stride: 1,
                    };
                    gemm(g, g4, true, hp, r.t());
                }
            }
            first = false;
            let out = &mut y[t * batch * 2 * h..(t + 1) * batch * 2 * h];
            cell_update(g, &mut s.cell, &mut s.tanh_cell, out, h, dir);
        }
    }
}

/// `gates[b] += h[b] R^T` for each sequence, `h[b]` at `hp[b * 2h..]`, with `R^T` row-major;
/// four rows of `R^T` per pass so the gate row is loaded and stored a quarter as often.
fn recurrence_few(hp: &[f32], h: usize, r_t: &[f32], gates: &mut [f32]) {
    let g4 = 4 * h;
    for (b, g) in gates.chunks_exact_mut(g4).enumerate() {
        let hb = &hp[b * 2 * h..b * 2 * h + h];
        let quads = h / 4;
        for q in 0..quads {
            let k = 4 * q;
            let (h0, h1, h2, h3) = (hb[k], hb[k + 1], hb[k + 2], hb[k + 3]);
            let rows = &r_t[k * g4..(k + 4) * g4];
            let (r0, rest) = rows.split_at(g4);
            let (r1, rest) = rest.split_at(g4);
            let (r2, r3) = rest.split_at(g4);
            for ((((gj, &a), &b1), &c), &d) in g.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
                *gj += h0 * a + h1 * b1 + h2 * c + h3 * d;
            }
        }
        for k in 4 * quads..h {
            for (gj, &r) in g.iter_mut().zip(&r_t[k * g4..(k + 1) * g4]) {
                *gj += hb[k] * r;
            }
        }
    }
}

/// Gate non-linearities and the state update for one step of every sequence.
fn cell_update(
    gates: &mut [f32],
    cell: &mut [f32],
    tanh_cell: &mut [f32],
    out: &mut [f32],
    h: usize,
    dir: usize,
) {
    for ((g, c), o) in gates
        .chunks_exact_mut(4 * h)
        .zip(cell.chunks_exact_mut(h))
        .zip(out.chunks_exact_mut(2 * h))
    {
        let (sig, cand) = g.split_at_mut(3 * h);
        sigmoid(sig);
        tanh(cand);
        let (i, rest) = sig.split_at(h);
        let (og, f) = rest.split_at(h);
        for (((cj, &fj), &ij), &gj) in c.iter_mut().zip(f).zip(i).zip(cand.iter()) {
            *cj = fj * *cj + ij * gj;
        }
        tanh_into(c, tanh_cell);
        for ((dst, &oj), &tc) in o[dir * h..(dir + 1) * h]
            .iter_mut()
            .zip(og)
            .zip(tanh_cell.iter())
        {
            *dst = oj * tc;
        }
    }
}
