//! The runtime's element-wise and recurrence loops compiled three times: for AVX-512, for
//! AVX2 + FMA, and for the baseline target, chosen once at run time from the CPU's features.
//!
//! The default build targets baseline x86-64 (SSE2, no FMA), so loops the compiler vectorises
//! run 4 lanes wide and without fused multiply-add; on the AVX-512 machines Vigil runs on, the
//! same loops compiled with `#[target_feature]` run 16 lanes wide. The kernels are plain safe
//! Rust; the only `unsafe` is the call into a `#[target_feature]` function once the features
//! have been detected, which is what makes that call sound.
//!
//! The one exception is [`avx512_gemm`], the GEMM kernel for AVX-512 CPUs, written with
//! `std::arch` intrinsics: its register tile did not survive auto-vectorisation (LLVM spilled
//! or scalarised it, docs/PERFORMANCE.md), so it reads through raw pointers after a safe entry
//! point has checked every bound.
#![allow(unsafe_code)] // see the module doc; measured in docs/PERFORMANCE.md (native runtime)

mod avx512_gemm;

use std::sync::OnceLock;

use super::winograd::input_body;

pub(crate) use avx512_gemm::{gemm as gemm_avx512, Avx512, PackedB, Right};

/// The instruction sets a kernel can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// AVX-512F (+ AVX2, FMA).
    Avx512,
    /// AVX2 + FMA.
    Avx2,
    /// The build's baseline target, no fused multiply-add.
    Baseline,
}

impl Level {
    /// The best level this CPU supports (detected once).
    pub(crate) fn detect() -> Self {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
                if avx2 && is_x86_feature_detected!("avx512f") {
                    return Level::Avx512;
                }
                if avx2 {
                    return Level::Avx2;
                }
            }
            Level::Baseline
        })
    }

    /// Every level this CPU can run, best first (for tests comparing them).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let all = [Level::Avx512, Level::Avx2, Level::Baseline];
        let best = all.iter().position(|&l| l == Self::detect()).unwrap_or(2);
        all[best..].to_vec()
    }
}

/// `a * b + c`, fused where the level has FMA (a libm call otherwise, hence two versions).
pub(crate) trait MulAdd {
    /// `a * b + c`.
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// Fused multiply-add (levels with FMA).
pub(crate) struct Fused;
/// Multiply then add (the baseline).
pub(crate) struct Separate;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// Generates a dispatcher `$name(level, args)` calling the body `$body::<MulAdd>(args)`
/// compiled for each level.
macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident => $body:ident ($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        pub(crate) fn $name(level: Level, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) {
                    $body::<Fused>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body::<Fused>($($arg),*)
                }
                match level {
                    // SAFETY: `Level::detect` found AVX-512F, AVX2 and FMA on this CPU (tests
                    // pass only levels from `Level::available`).
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above, AVX2 and FMA were detected.
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    Level::Baseline => {}
                }
            }
            let _ = level;
            $body::<Separate>($($arg),*)
        }
    };
}

dispatch! {
    /// `gates[b] += h[b] R^T` for every sequence `b` of a step: `h[b]` is `hp[b * stride..][..h]`,
    /// `packed` is `R^T` from [`pack_recurrent`], `gates` is `[batch][g4]`.
    recurrence => recurrence_body(hp: &[f32], stride: usize, h: usize, packed: &[f32], gates: &mut [f32])
}

dispatch! {
    /// Winograd F(4, 3) input transform of one conv1 output row (see `winograd::input_body`).
    winograd_input => input_body(row: &[f32], phase: usize, tiles: usize, v: &mut [f32], plane: usize)
}

/// Gate columns per register block: 5 AVX-512 registers of accumulators per sequence, and 400
/// gates (100 hidden units) are exactly 5 blocks.
pub(crate) const COLS: usize = 80;

/// `R^T` (`[h][g4]` row-major) rearranged for [`recurrence`]: blocks of [`COLS`] gate columns
/// (the last one narrower if `g4` is not a multiple), each block `[h][width]`, so a block's
/// rows are read as one contiguous stream.
pub(crate) fn pack_recurrent(r_t: &[f32], h: usize) -> Vec<f32> {
    let g4 = r_t.len() / h;
    let mut packed = Vec::with_capacity(r_t.len());
    for c0 in (0..g4).step_by(COLS) {
        let width = COLS.min(g4 - c0);
        for k in 0..h {
            packed.extend_from_slice(&r_t[k * g4 + c0..k * g4 + c0 + width]);
        }
    }
    packed
}

#[inline(always)]
fn recurrence_body<F: MulAdd>(
    hp: &[f32],
    stride: usize,
    h: usize,
    packed: &[f32],
    gates: &mut [f32],
) {
    let g4 = packed.len() / h;
    let batch = gates.len() / g4;
    let mut b = 0;
    while b + 4 <= batch {
        recurrence_rows::<F, 4>(hp, stride, b, h, packed, gates, g4);
        b += 4;
    }
    while b < batch {
        recurrence_rows::<F, 1>(hp, stride, b, h, packed, gates, g4);
        b += 1;
    }
}

/// `NB` sequences from `b0` on, gate columns in blocks of [`COLS`] held in registers while the
/// block's `h` rows stream past (each loaded once for the `NB` sequences).
#[inline(always)]
fn recurrence_rows<F: MulAdd, const NB: usize>(
    hp: &[f32],
    stride: usize,
    b0: usize,
    h: usize,
    packed: &[f32],
    gates: &mut [f32],
    g4: usize,
) {
    let hs: [&[f32]; NB] = std::array::from_fn(|i| &hp[(b0 + i) * stride..][..h]);
    for c0 in (0..g4).step_by(COLS) {
        let width = COLS.min(g4 - c0);
        let block = &packed[c0 * h..(c0 + width) * h];
        if width == COLS {
            let mut acc = [[0.0f32; COLS]; NB];
            for (i, a) in acc.iter_mut().enumerate() {
                a.copy_from_slice(&gates[(b0 + i) * g4 + c0..][..COLS]);
            }
            for (k, row) in block.chunks_exact(COLS).enumerate() {
                for (a, hb) in acc.iter_mut().zip(&hs) {
                    let x = hb[k];
                    for (v, &r) in a.iter_mut().zip(row) {
                        *v = F::mul_add(x, r, *v);
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                gates[(b0 + i) * g4 + c0..][..COLS].copy_from_slice(a);
            }
        } else {
            for (i, hb) in hs.iter().enumerate() {
                let g = &mut gates[(b0 + i) * g4 + c0..][..width];
                for (&x, row) in hb.iter().zip(block.chunks_exact(width)) {
                    for (v, &r) in g.iter_mut().zip(row) {
                        *v = F::mul_add(x, r, *v);
                    }
                }
            }
        }
    }
}

dispatch! {
    /// One LSTM step for every sequence: gate non-linearities (`gates` `[batch][i o f c]`,
    /// overwritten; `h` hidden units), `cell = f * cell + i * c`, and `out[b * stride..][..h] = o * tanh(cell)`.
    lstm_cell => lstm_cell_body(h: usize, gates: &mut [f32], cell: &mut [f32], out: &mut [f32], stride: usize)
}

#[inline(always)]
fn lstm_cell_body<F: MulAdd>(
    h: usize,
    gates: &mut [f32],
    cell: &mut [f32],
    out: &mut [f32],
    stride: usize,
) {
    for (b, (g, c)) in gates
        .chunks_exact_mut(4 * h)
        .zip(cell.chunks_exact_mut(h))
        .enumerate()
    {
        let (sig, cand) = g.split_at_mut(3 * h);
        for x in sig.iter_mut() {
            *x = 1.0 / (1.0 + exp::<F>(-*x));
        }
        for x in cand.iter_mut() {
            *x = 1.0 - 2.0 / (exp::<F>(2.0 * *x) + 1.0);
        }
        let (i, rest) = sig.split_at(h);
        let (og, f) = rest.split_at(h);
        let o = &mut out[b * stride..][..h];
        for ((((cj, &fj), &ij), (&gj, &oj)), dst) in c
            .iter_mut()
            .zip(f)
            .zip(i)
            .zip(cand.iter().zip(og))
            .zip(o.iter_mut())
        {
            *cj = F::mul_add(fj, *cj, ij * gj);
            *dst = oj * (1.0 - 2.0 / (exp::<F>(2.0 * *cj) + 1.0));
        }
    }
}

/// `exp(x)` to ~2 ulp for |x| <= 87, as `math::exp` (Cephes' polynomial), with the
/// polynomial fused where the level allows.
#[inline(always)]
fn exp<F: MulAdd>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 87.0);
    // t = ROUND + n with n = round(x log2 e): n sits in t's low mantissa bits, which gives 2^n
    // by integer arithmetic (a float-to-int cast would not vectorise: it saturates).
    let t = F::mul_add(x, LOG2E, ROUND);
    let n = t - ROUND;
    let r = F::mul_add(-n, LN2_LO, F::mul_add(-n, LN2_HI, x));
    let mut p = 1.987_569_1e-4_f32;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5e-1,
    ] {
        p = F::mul_add(p, r, c);
    }
    let y = F::mul_add(p, r * r, r + 1.0);
    let biased = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    y * f32::from_bits(biased << 23)
}

#[cfg(test)]
mod tests {
    use super::super::test_values::{max_diff, values};
    use super::*;

    #[test]
    fn exp_matches_libm_fused_or_not() {
        for i in -4000..=4000 {
            let x = i as f32 * 0.01;
            let want = x.exp();
            for got in [exp::<Separate>(x), exp::<Fused>(x)] {
                assert!(
                    (got - want).abs() <= 4.0 * f32::EPSILON * want,
                    "exp({x}): {got} vs {want}"
                );
            }
        }
        assert_eq!(exp::<Separate>(-1e30), exp::<Separate>(-87.0));
        assert_eq!(exp::<Separate>(1e30), exp::<Separate>(87.0));
    }

    #[test]
    fn recurrence_levels_match_a_plain_loop() {
        // 100 hidden units as in the model, and an odd size that leaves a partial column block.
        for (h, batch) in [(100, 1), (100, 2), (100, 9), (7, 3), (30, 5)] {
            let g4 = 4 * h;
            let stride = 2 * h;
            let hp = values((batch - 1) * stride + h, 1, 2.0);
            let r_t = values(h * g4, 2, 0.5);
            let start = values(batch * g4, 3, 1.0);
            let mut want = start.clone();
            for b in 0..batch {
                for j in 0..g4 {
                    let dot: f64 = (0..h)
                        .map(|k| f64::from(hp[b * stride + k]) * f64::from(r_t[k * g4 + j]))
                        .sum();
                    want[b * g4 + j] = (f64::from(start[b * g4 + j]) + dot) as f32;
                }
            }
            for level in Level::available() {
                let mut got = start.clone();
                recurrence(level, &hp, stride, h, &pack_recurrent(&r_t, h), &mut got);
                let d = max_diff(&got, &want);
                assert!(d < 1e-5, "{level:?} h {h} batch {batch}: {d}");
            }
        }
    }

    #[test]
    fn lstm_cell_levels_match_libm() {
        let (h, batch) = (100, 3);
        let gates = values(batch * 4 * h, 4, 20.0);
        let cell0 = values(batch * h, 5, 4.0);
        let sig = |x: f32| 1.0 / (1.0 + (-f64::from(x)).exp());
        let mut want_cell = cell0.clone();
        let mut want_out = vec![0.0f32; batch * 2 * h];
        for b in 0..batch {
            let g = &gates[b * 4 * h..];
            for j in 0..h {
                let (i, o, f) = (sig(g[j]), sig(g[h + j]), sig(g[2 * h + j]));
                let c = f * f64::from(cell0[b * h + j]) + i * f64::from(g[3 * h + j]).tanh();
                want_cell[b * h + j] = c as f32;
                want_out[b * 2 * h + h + j] = (o * c.tanh()) as f32;
            }
        }
        for level in Level::available() {
            let mut g = gates.clone();
            let mut cell = cell0.clone();
            let mut out = vec![0.0f32; batch * 2 * h];
            lstm_cell(level, h, &mut g, &mut cell, &mut out[h..], 2 * h);
            assert!(max_diff(&cell, &want_cell) < 1e-6, "{level:?} cell");
            assert!(max_diff(&out, &want_out) < 1e-6, "{level:?} out");
        }
    }
}
