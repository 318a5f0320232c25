//! Causal IIR filters for the amplitude trends: Butterworth sections by the bilinear transform
//! with pre-warping (the same design as `scipy.signal.butter(..., fs=fs, output="sos")`), a
//! first-order frequency weighting, and a run-aware wrapper that restarts after missing
//! samples.

use std::f64::consts::{PI, SQRT_2};

/// One second-order section, transposed direct form II (as scipy's `sosfilt`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    z: [f64; 2],
}

impl Biquad {
    fn new(b: [f64; 3], a1: f64, a2: f64) -> Self {
        Self {
            b,
            a: [a1, a2],
            z: [0.0; 2],
        }
    }

    /// Filters one sample.
    #[inline]
    pub fn step(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }

    fn reset(&mut self) {
        self.z = [0.0; 2];
    }
}

/// Q of the `k`-th pole pair of an order-`n` Butterworth filter (`n` even).
fn butterworth_q(n: usize, k: usize) -> f64 {
    1.0 / (2.0 * (PI * (2 * k + 1) as f64 / (2 * n) as f64).cos())
}

/// Butterworth low-pass of even order `n` at `fc` Hz, as second-order sections.
pub fn butter_lowpass(n: usize, fc: f64, fs: f64) -> Vec<Biquad> {
    let k = (PI * fc / fs).tan();
    (0..n / 2)
        .map(|i| {
            let q = butterworth_q(n, i);
            let norm = 1.0 / (1.0 + k / q + k * k);
            let b0 = k * k * norm;
            Biquad::new(
                [b0, 2.0 * b0, b0],
                2.0 * (k * k - 1.0) * norm,
                (1.0 - k / q + k * k) * norm,
            )
        })
        .collect()
}

/// Butterworth low-pass of order 1 at `fc` Hz. Its impulse response is positive, so two in
/// cascade smooth a rectified signal without overshoot (an envelope is never negative).
pub fn butter_lowpass1(fc: f64, fs: f64) -> Biquad {
    let k = (PI * fc / fs).tan();
    let b0 = k / (1.0 + k);
    Biquad::new([b0, b0, 0.0], (k - 1.0) / (k + 1.0), 0.0)
}

/// Butterworth high-pass of order 2 at `fc` Hz (one section).
pub fn butter_highpass2(fc: f64, fs: f64) -> Biquad {
    let k = (PI * fc / fs).tan();
    let norm = 1.0 / (1.0 + SQRT_2 * k + k * k);
    Biquad::new(
        [norm, -2.0 * norm, norm],
        2.0 * (k * k - 1.0) * norm,
        (1.0 - SQRT_2 * k + k * k) * norm,
    )
}

/// The aEEG frequency weighting: analog `H(s) = g (s + 2 pi f_lo) / (s + 2 pi f_hi)` with `g`
/// giving unit analog gain at `f_hi`, by the bilinear transform without pre-warping (as
/// `scipy.signal.bilinear`). Gain rises about 13 dB per decade from `f_lo` to `f_hi`.
pub fn weighting(f_lo: f64, f_hi: f64, fs: f64) -> Biquad {
    let (wz, wp) = (2.0 * PI * f_lo, 2.0 * PI * f_hi);
    let g = ((wp * wp + wp * wp) / (wp * wp + wz * wz)).sqrt();
    let c = 2.0 * fs;
    let a0 = c + wp;
    Biquad::new(
        [g * (c + wz) / a0, g * (wz - c) / a0, 0.0],
        (wp - c) / a0,
        0.0,
    )
}

/// A cascade of sections whose output is valid only `warmup` samples after the start or after
/// the last missing sample; a missing sample resets the state (scipy's `sosfilt` run from
/// zero state on each run of finite samples).
#[derive(Debug, Clone)]
pub struct RunFilter {
    sections: Vec<Biquad>,
    warmup: usize,
    run: usize,
}

impl RunFilter {
    /// Wraps `sections`, valid after `warmup` finite samples.
    pub fn new(sections: Vec<Biquad>, warmup: usize) -> Self {
        Self {
            sections,
            warmup,
            run: 0,
        }
    }

    /// Filters one sample. Returns NaN for a missing input and during warm-up.
    #[inline]
    pub fn step(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            self.run = 0;
            self.sections.iter_mut().for_each(Biquad::reset);
            return f64::NAN;
        }
        let y = self.sections.iter_mut().fold(x, |v, s| s.step(v));
        self.run = self.run.saturating_add(1);
        if self.run > self.warmup {
            y
        } else {
            f64::NAN
        }
    }

    /// Filters one sample through the first `split` sections, rectifies, then the rest
    /// (band-pass, rectify, smooth: one envelope filter). NaN as [`RunFilter::step`].
    #[inline]
    pub fn step_rectified(&mut self, x: f64, split: usize) -> f64 {
        if !x.is_finite() {
            self.run = 0;
            self.sections.iter_mut().for_each(Biquad::reset);
            return f64::NAN;
        }
        let split = split.min(self.sections.len());
        let (band, smooth) = self.sections.split_at_mut(split);
        let y = band.iter_mut().fold(x, |v, s| s.step(v)).abs();
        let y = smooth.iter_mut().fold(y, |v, s| s.step(v));
        self.run = self.run.saturating_add(1);
        if self.run > self.warmup {
            y
        } else {
            f64::NAN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gain(sections: &[Biquad], f: f64, fs: f64) -> f64 {
        let mut s = sections.to_vec();
        let n = (fs * 20.0) as usize;
        let mut peak: f64 = 0.0;
        for i in 0..n {
            let x = (2.0 * PI * f * i as f64 / fs).sin();
            let y = s.iter_mut().fold(x, |v, b| b.step(v));
            if i > n / 2 {
                peak = peak.max(y.abs());
            }
        }
        peak
    }

    #[test]
    fn butterworth_corners_are_3_db() {
        let fs = 256.0;
        let lp = butter_lowpass(4, 15.0, fs);
        assert!((gain(&lp, 15.0, fs) - SQRT_2.recip()).abs() < 0.01);
        assert!(gain(&lp, 2.0, fs) > 0.999);
        let hp = [butter_highpass2(2.0, fs)];
        assert!((gain(&hp, 2.0, fs) - SQRT_2.recip()).abs() < 0.01);
        assert!(gain(&hp, 20.0, fs) > 0.99);
    }

    #[test]
    fn weighting_rises_from_low_to_high_corner() {
        let fs = 256.0;
        let w = [weighting(2.0, 15.0, fs)];
        let (g2, g15) = (gain(&w, 2.0, fs), gain(&w, 15.0, fs));
        assert!((g15 - 1.0).abs() < 0.02, "{g15}");
        assert!(g15 / g2 > 3.5 && g15 / g2 < 4.0, "{}", g15 / g2);
    }

    #[test]
    fn missing_sample_restarts_the_warm_up() {
        let mut f = RunFilter::new(vec![butter_highpass2(1.0, 100.0)], 3);
        let out: Vec<bool> = [1.0, 1.0, 1.0, 1.0, f64::NAN, 1.0, 1.0, 1.0, 1.0]
            .iter()
            .map(|&x| f.step(x).is_nan())
            .collect();
        assert_eq!(
            out,
            [true, true, true, false, true, true, true, true, false]
        );
    }
}
