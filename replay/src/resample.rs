//! Rational-rate resampling with an anti-aliasing filter, for rates the model does not accept
//! (it needs an even whole number of Hz >= 200; docs/ARCHITECTURE.md "Inference contract").
//!
//! Method (the same as `scipy.signal.resample_poly` with its defaults, so results can be
//! checked against it): for a ratio `up/down` in lowest terms, upsample by `up` (zero
//! stuffing), low-pass with a linear-phase FIR, keep every `down`-th sample. The FIR is a
//! windowed sinc with cutoff at the lower of the two Nyquist frequencies (`1/max(up, down)` of
//! the upsampled Nyquist), `2 * 10 * max(up, down) + 1` taps, Kaiser window beta = 5 (about
//! 50 dB stop-band attenuation), normalised to unit DC gain and multiplied by `up`. The
//! filter's delay is removed so output sample `k` is at time `k / fs_out` like input sample
//! `k * down / up`; the signal is taken as zero outside the recording (edge effects over
//! about 10 input samples at each end). Output length = `ceil(n * up / down)`.
//!
//! Computed as a polyphase filter (only non-zero products), in f64. Matches scipy to ~1e-12
//! relative (`tests/resample.rs`, golden from `scripts/reference/run data`).

/// A rational resampler from one whole-number rate to another.
#[derive(Debug, Clone)]
pub struct Resampler {
    up: usize,
    down: usize,
    /// Filter taps, zero-padded in front as scipy does (`n_pre_pad`).
    taps: Vec<f64>,
    /// Output samples of the full convolution dropped at the front (filter delay).
    skip: usize,
}

/// Why a resampler cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResampleError {
    /// A rate that is not a positive whole number of Hz.
    #[error("resampling needs whole-number rates in Hz; got {0}")]
    Rate(f64),
    /// A ratio so extreme the filter would be huge.
    #[error("ratio {up}/{down} needs a filter of more than 1,000,001 taps")]
    Ratio {
        /// Upsampling factor.
        up: usize,
        /// Downsampling factor.
        down: usize,
    },
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Modified Bessel function of the first kind, order 0 (power series; converges for all x).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..500 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// `scipy.signal.firwin(numtaps, cutoff, window=('kaiser', beta))`: low-pass, DC gain 1,
/// `cutoff` relative to Nyquist.
fn firwin_kaiser(numtaps: usize, cutoff: f64, beta: f64) -> Vec<f64> {
    let alpha = 0.5 * (numtaps as f64 - 1.0);
    let i0_beta = bessel_i0(beta);
    let mut h: Vec<f64> = (0..numtaps)
        .map(|n| {
            let m = n as f64 - alpha;
            let ideal = cutoff * sinc(cutoff * m);
            // Symmetric Kaiser window.
            let r = if numtaps > 1 {
                2.0 * n as f64 / (numtaps as f64 - 1.0) - 1.0
            } else {
                0.0
            };
            ideal * bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta
        })
        .collect();
    let sum: f64 = h.iter().sum();
    for v in &mut h {
        *v /= sum;
    }
    h
}

impl Resampler {
    /// A resampler from `from_hz` to `to_hz` (both whole numbers of Hz).
    pub fn new(from_hz: f64, to_hz: f64) -> Result<Self, ResampleError> {
        let whole = |r: f64| {
            if r.is_finite() && r >= 1.0 && r.fract() == 0.0 && r <= 1e7 {
                Ok(r as usize)
            } else {
                Err(ResampleError::Rate(r))
            }
        };
        let (from, to) = (whole(from_hz)?, whole(to_hz)?);
        let g = gcd(from, to);
        let (up, down) = (to / g, from / g);
        let max_rate = up.max(down);
        let half_len = 10 * max_rate;
        if 2 * half_len + 1 > 1_000_001 {
            return Err(ResampleError::Ratio { up, down });
        }
        let mut h = firwin_kaiser(2 * half_len + 1, 1.0 / max_rate as f64, 5.0);
        for v in &mut h {
            *v *= up as f64;
        }
        // scipy pads the filter in front so its delay is a whole number of output samples.
        let pre_pad = down - half_len % down;
        let mut taps = vec![0.0; pre_pad];
        taps.extend(h);
        let skip = (half_len + pre_pad) / down;
        Ok(Self {
            up,
            down,
            taps,
            skip,
        })
    }

    /// Upsampling and downsampling factors in lowest terms.
    pub fn ratio(&self) -> (usize, usize) {
        (self.up, self.down)
    }

    /// Output samples for `n` input samples: `ceil(n * up / down)`.
    pub fn output_len(&self, n: usize) -> usize {
        (n * self.up).div_ceil(self.down)
    }

    /// Resamples a whole signal. NaN (missing) samples spread over the filter's length: fill
    /// or cut gaps first if that matters.
    pub fn process(&self, x: &[f64]) -> Vec<f64> {
        if self.up == 1 && self.down == 1 {
            return x.to_vec();
        }
        let (up, down) = (self.up as i64, self.down as i64);
        let n_taps = self.taps.len() as i64;
        let n = x.len() as i64;
        (0..self.output_len(x.len()))
            .map(|k| {
                // Sample t of the upsampled-and-filtered signal: sum over inputs j with
                // 0 <= t - j*up < n_taps of taps[t - j*up] * x[j].
                let t = (k + self.skip) as i64 * down;
                let j_hi = (t / up).min(n - 1);
                let j_lo = ((t - n_taps + 1).max(0) + up - 1) / up;
                let mut acc = 0.0;
                let mut j = j_lo;
                while j <= j_hi {
                    acc += self.taps[(t - j * up) as usize] * x[j as usize];
                    j += 1;
                }
                acc
            })
            .collect()
    }
}

/// The rate a signal at `fs` is fed to the model at: `fs` itself when the model accepts it
/// (even whole number >= 200 Hz), else the smallest accepted rate above `fs` (200 Hz below
/// 200 Hz; an odd rate goes one up), so no content the model could use is thrown away.
pub fn model_rate_for(fs: f64) -> f64 {
    if vigil_inference::windowing::model_sample_rate(fs).is_ok() {
        return fs;
    }
    let up = fs.ceil().max(200.0);
    if up % 2.0 == 0.0 {
        up
    } else {
        up + 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_low_frequencies_and_removes_aliases() {
        // 160 -> 200 Hz: a 10 Hz sine keeps amplitude and phase.
        let r = Resampler::new(160.0, 200.0).expect("resampler");
        assert_eq!(r.ratio(), (5, 4));
        let x: Vec<f64> = (0..1600)
            .map(|i| (2.0 * std::f64::consts::PI * 10.0 * i as f64 / 160.0).sin())
            .collect();
        let y = r.process(&x);
        assert_eq!(y.len(), 2000);
        for (k, v) in y.iter().enumerate().skip(100).take(1800) {
            let expect = (2.0 * std::f64::consts::PI * 10.0 * k as f64 / 200.0).sin();
            assert!((v - expect).abs() < 2e-3, "k {k}: {v} vs {expect}");
        }
        // 1000 -> 200 Hz: 350 Hz would alias to 50 Hz without the filter; it must vanish.
        let r = Resampler::new(1000.0, 200.0).expect("resampler");
        let x: Vec<f64> = (0..10_000)
            .map(|i| (2.0 * std::f64::consts::PI * 350.0 * i as f64 / 1000.0).sin())
            .collect();
        let y = r.process(&x);
        let rms = (y[100..1900].iter().map(|v| v * v).sum::<f64>() / 1800.0).sqrt();
        assert!(rms < 0.01, "alias rms {rms}");
    }

    #[test]
    fn model_rates() {
        assert_eq!(model_rate_for(256.0), 256.0);
        assert_eq!(model_rate_for(160.0), 200.0);
        assert_eq!(model_rate_for(201.0), 202.0);
        assert_eq!(model_rate_for(250.5), 252.0);
        assert!(Resampler::new(250.5, 252.0).is_err());
        assert_eq!(
            Resampler::new(256.0, 256.0).expect("identity").ratio(),
            (1, 1)
        );
    }
}
