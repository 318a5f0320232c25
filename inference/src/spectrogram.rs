//! The model's input: a one-sided power spectrogram with 1 s segments and a 0.5 s hop, bins
//! 0..99 Hz, z-scored per frequency bin over each model window (docs/ARCHITECTURE.md
//! "Inference contract").
//!
//! Matches `scipy.signal.spectrogram(x, fs, nperseg=fs, noverlap=fs/2)` as the reference
//! package calls it: periodic Tukey(0.25) window, per-segment mean removal (`detrend =
//! "constant"`), density scaling `1 / (fs * sum(w^2))`, bins 1.. doubled (one-sided). All
//! arithmetic is f64, as in the reference; the model gets f32.
//!
//! Why a column can come from the raw samples: the reference z-scores each raw window (mean
//! `mu`, std `sd`) before the spectrogram. Segment mean removal cancels `mu`, and dividing by
//! `sd` scales every column by `1/sd^2`, which the later per-bin z-score cancels. So a column
//! computed from raw samples, divided by the window's `sd^2`, equals the reference column to
//! rounding. The exception is a segment with missing (NaN) samples: the reference fills them
//! with 0 after normalisation, i.e. with the *window's* mean, so such a column is computed
//! from the z-scored window ([`WindowSpectrogram`]). Flat segments are too: their power is
//! rounding noise whose value depends on the normalisation. Columns are built per window,
//! not kept between overlapping windows: a stream holds only raw samples
//! (docs/ARCHITECTURE.md "Per-patient state").

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Frequency bins the model reads (0..99 Hz at 1 Hz resolution).
pub const N_BINS: usize = 100;

/// scipy's `get_window(("tukey", alpha), n)` (periodic: a symmetric window of n+1 points
/// without its last point).
pub fn tukey_periodic(n: usize, alpha: f64) -> Vec<f64> {
    let m = n + 1;
    let width = (alpha * (m as f64 - 1.0) / 2.0).floor() as usize;
    let denom = alpha * (m as f64 - 1.0);
    (0..n)
        .map(|i| {
            let x = i as f64;
            if i <= width {
                0.5 * (1.0 + (std::f64::consts::PI * (-1.0 + 2.0 * x / denom)).cos())
            } else if i < m - width - 1 {
                1.0
            } else {
                0.5 * (1.0 + (std::f64::consts::PI * (-2.0 / alpha + 1.0 + 2.0 * x / denom)).cos())
            }
        })
        .collect()
}

/// numpy's pairwise summation (`pairwise_sum` in numpy's loops), so sums round exactly as
/// the reference's `np.mean`/`np.nanstd` do. Exactness matters for flat segments: numpy's
/// mean of identical values is exact, so their detrended power is exactly 0 and the column is
/// treated as "no power"; a naive sum leaves rounding residue and changes the result.
pub fn pairwise_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |s, x| s + x)
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        for i in (8..whole).step_by(8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &a[whole..] {
            res += x;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

/// One spectrogram column: power in bins 0..99 of one 1 s segment.
pub type Column = [f64; N_BINS];

/// Computes columns for one sampling rate. Cheap to clone (shares the FFT plan).
#[derive(Clone)]
pub struct SpectrogramPlan {
    fs: usize,
    window: Arc<Vec<f64>>,
    fft: Arc<dyn Fft<f64>>,
    scale: f64,
}

impl std::fmt::Debug for SpectrogramPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectrogramPlan")
            .field("fs", &self.fs)
            .finish()
    }
}

impl SpectrogramPlan {
    /// Plan for `fs` samples per second (segment = `fs` samples). `fs` must be >= 200.
    pub fn new(fs: usize) -> Self {
        let window = tukey_periodic(fs, 0.25);
        let scale = 1.0 / (fs as f64 * window.iter().map(|w| w * w).sum::<f64>());
        let fft = FftPlanner::new().plan_fft_forward(fs);
        Self {
            fs,
            window: Arc::new(window),
            fft,
            scale,
        }
    }

    /// Samples per segment.
    pub fn segment_len(&self) -> usize {
        self.fs
    }

    /// The column of one segment of exactly `fs` finite samples.
    pub fn column(&self, segment: &[f64]) -> Column {
        debug_assert_eq!(segment.len(), self.fs);
        let mean = pairwise_sum(segment) / segment.len() as f64;
        let mut buf: Vec<Complex<f64>> = segment
            .iter()
            .zip(self.window.iter())
            .map(|(x, w)| Complex::new((x - mean) * w, 0.0))
            .collect();
        self.fft.process(&mut buf);
        let mut column = [0.0; N_BINS];
        for (k, out) in column.iter_mut().enumerate() {
            let power = buf[k].norm_sqr() * self.scale;
            // One-sided spectrum: every bin but DC carries its negative-frequency twin. (The
            // Nyquist bin, also single, is never among bins 0..99 since fs >= 200.)
            *out = if k == 0 { power } else { 2.0 * power };
        }
        column
    }
}

/// NaN-aware mean and population std of a window, as numpy's nanmean/nanstd (two-pass).
/// Returns `(0, 1)`-style fallbacks like the reference: mean 0 when all samples are missing,
/// std 1 when it is zero or undefined.
pub fn window_moments(samples: &[f64]) -> (f64, f64) {
    // As numpy's nanmean/nanstd: NaN replaced by 0, pairwise sums over the whole window,
    // divided by the count of finite samples.
    let n = samples.iter().filter(|x| x.is_finite()).count();
    if n == 0 {
        return (0.0, 1.0);
    }
    let zeroed: Vec<f64> = samples
        .iter()
        .map(|&x| if x.is_finite() { x } else { 0.0 })
        .collect();
    let mean = pairwise_sum(&zeroed) / n as f64;
    let squares: Vec<f64> = samples
        .iter()
        .map(|&x| {
            if x.is_finite() {
                (x - mean) * (x - mean)
            } else {
                0.0
            }
        })
        .collect();
    let sd = (pairwise_sum(&squares) / n as f64).sqrt();
    (mean, if sd.is_finite() && sd > 0.0 { sd } else { 1.0 })
}

/// One model window's raw samples, from which its normalised `[N_BINS x n_cols]` input is
/// built.
pub struct WindowSpectrogram<'a> {
    /// Plan for the window's sampling rate.
    pub plan: &'a SpectrogramPlan,
    /// The window's raw samples (NaN = missing).
    pub samples: &'a [f32],
    /// Hop in samples (fs / 2).
    pub hop: usize,
}

impl WindowSpectrogram<'_> {
    /// Columns (and model outputs) of the window.
    pub fn n_cols(&self) -> usize {
        (self.samples.len() - self.plan.segment_len()) / self.hop + 1
    }

    /// Builds the normalised spectrogram, bin-major (`out[bin * n_cols + col]`), as f32.
    ///
    /// A segment that is finite and not flat takes its column from the raw samples, scaled
    /// by `1 / sd^2` (see the module docs); the others are computed the reference's way, from
    /// the window's z-scored samples with missing ones set to 0.
    pub fn normalised(&self) -> Vec<f32> {
        let fs = self.plan.segment_len();
        let samples: Vec<f64> = self.samples.iter().map(|&x| f64::from(x)).collect();
        let (mean, sd) = window_moments(&samples);
        let inv_var = 1.0 / (sd * sd);
        let columns: Vec<Column> = (0..self.n_cols())
            .map(|col| {
                let segment = &samples[col * self.hop..col * self.hop + fs];
                let finite = segment.iter().all(|x| x.is_finite());
                if finite && segment.iter().any(|x| *x != segment[0]) {
                    return self.plan.column(segment).map(|p| p * inv_var);
                }
                let z: Vec<f64> = segment
                    .iter()
                    .map(|x| {
                        let z = (x - mean) / sd;
                        if z.is_finite() {
                            z
                        } else {
                            0.0
                        }
                    })
                    .collect();
                self.plan.column(&z)
            })
            .collect();
        normalise_bins(&columns)
    }
}

/// Per-bin z-score over the columns with non-zero total power (ddof 0); zero-power columns
/// stay 0; a bin with zero spread is only mean-centred. Returns bin-major f32.
pub fn normalise_bins(columns: &[Column]) -> Vec<f32> {
    let n_cols = columns.len();
    let valid: Vec<bool> = columns
        .iter()
        .map(|c| c.iter().sum::<f64>() != 0.0)
        .collect();
    let n_valid = valid.iter().filter(|v| **v).count();
    let mut out = vec![0.0f32; N_BINS * n_cols];
    if n_valid == 0 {
        return out;
    }
    for bin in 0..N_BINS {
        let values = || {
            columns
                .iter()
                .zip(&valid)
                .filter(|(_, v)| **v)
                .map(move |(c, _)| c[bin])
        };
        let mean = values().sum::<f64>() / n_valid as f64;
        let var = values().map(|p| (p - mean) * (p - mean)).sum::<f64>() / n_valid as f64;
        let sd = var.sqrt();
        let sd = if sd > 0.0 { sd } else { 1.0 };
        let row = &mut out[bin * n_cols..(bin + 1) * n_cols];
        for (col, (c, v)) in columns.iter().zip(&valid).enumerate() {
            if *v {
                row[col] = ((c[bin] - mean) / sd) as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tukey_has_flat_top_and_tapered_ends() {
        let w = tukey_periodic(256, 0.25);
        assert_eq!(w.len(), 256);
        assert_eq!(w[0], 0.0);
        assert_eq!(w[128], 1.0);
        assert!(w[1] > 0.0 && w[1] < 0.01);
        // Periodic: symmetric around n/2 (w[k] == w[n-k]).
        for k in 1..128 {
            assert!((w[k] - w[256 - k]).abs() < 1e-12, "k={k}");
        }
    }

    #[test]
    fn pure_tone_lands_in_its_bin() {
        let fs = 256;
        let plan = SpectrogramPlan::new(fs);
        let segment: Vec<f64> = (0..fs)
            .map(|i| (2.0 * std::f64::consts::PI * 10.0 * i as f64 / fs as f64).sin() + 3.0)
            .collect();
        let col = plan.column(&segment);
        let peak = col
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, _)| k);
        assert_eq!(peak, Some(10));
        assert!(col[0] < 1e-20, "segment mean removed: DC power {}", col[0]);
    }

    #[test]
    fn zero_power_columns_stay_zero_and_others_are_standardised() {
        let mut a = [0.0; N_BINS];
        let mut b = [0.0; N_BINS];
        a[5] = 2.0;
        b[5] = 4.0;
        let z = [0.0; N_BINS];
        let out = normalise_bins(&[a, z, b]);
        let row5 = &out[5 * 3..6 * 3];
        assert_eq!(row5, &[-1.0, 0.0, 1.0]);
    }
}
