//! Deterministic synthetic EEG, identical to `scripts/reference/make_goldens.py`, for parity
//! tests, benchmarks and the demo. Not a physiological model: background is approximately
//! Gaussian noise (a 64-bit MMIX LCG, sum of four uniforms) plus a 10 Hz alpha rhythm; the
//! optional seizure-like burst is a 3 Hz spike-and-wave-like waveform (fundamental + 2
//! harmonics, 150 uV) with 2 s linear ramps. Real seizure EEG is not available to this
//! project, so sensitivity measured on these bursts says nothing about clinical sensitivity.

/// What to put into a synthetic channel.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SyntheticChannel {
    /// Seed of the noise and the alpha phase.
    pub seed: u64,
    /// Seizure-like burst from..to, in seconds.
    pub burst: Option<(f64, f64)>,
    /// Missing samples (NaN) from..to, in seconds.
    pub gap: Option<(f64, f64)>,
    /// Constant (flat-line) signal from..to, in seconds.
    pub flat: Option<(f64, f64)>,
}

/// Second `seq` of `rows` (whole signals at 256 Hz, one per channel) as a chunk of one
/// device's stream starting at `t0_ns`: how tests and benchmarks feed synthetic EEG.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticStream<'a> {
    /// Patient.
    pub patient_id: &'a str,
    /// Device.
    pub device_id: &'a str,
    /// Stream id.
    pub stream_id: uuid::Uuid,
    /// Time of sample 0 (UTC ns).
    pub t0_ns: i64,
    /// Channel labels, one per row.
    pub channels: &'a [&'a str],
}

impl SyntheticStream<'_> {
    /// Second `seq` of `rows` as an EEG chunk (1 s, 256 samples per channel).
    pub fn chunk(&self, seq: usize, rows: &[Vec<f32>]) -> vigil_core::record::EegChunk {
        let start_ns = self.t0_ns + seq as i64 * 1_000_000_000;
        vigil_core::record::EegChunk {
            patient_id: self.patient_id.to_owned(),
            device_id: self.device_id.to_owned(),
            stream_id: self.stream_id,
            seq: seq as u64,
            start_ns,
            received_ns: start_ns,
            sample_rate_hz: 256.0,
            channels: self.channels.iter().map(|c| (*c).to_owned()).collect(),
            unit: vigil_core::record::SignalUnit::Microvolt,
            samples: rows
                .iter()
                .map(|s| s[seq * 256..(seq + 1) * 256].to_vec())
                .collect(),
        }
    }
}

fn lcg_uniforms(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

impl SyntheticChannel {
    /// `seconds` of signal at `fs`, in microvolts, rounded to f32 as Vigil carries samples.
    pub fn generate(&self, fs: f64, seconds: f64) -> Vec<f32> {
        let n = (fs * seconds) as usize;
        let u = lcg_uniforms(self.seed, 4 * n);
        let two_pi = 2.0 * std::f64::consts::PI;
        let mut x: Vec<f64> = (0..n)
            .map(|i| {
                let t = i as f64 / fs;
                let noise = (u[4 * i] + u[4 * i + 1] + u[4 * i + 2] + u[4 * i + 3] - 2.0) * 15.0;
                noise + 20.0 * (two_pi * 10.0 * t + self.seed as f64).sin()
            })
            .collect();
        if let Some(burst) = self.burst {
            add_burst(&mut x, fs, burst, BURST_AMPLITUDE_UV);
        }
        let range = |(a, b): (f64, f64)| {
            ((a * fs).round() as usize).min(n)..((b * fs).round() as usize).min(n)
        };
        if let Some(gap) = self.gap {
            x[range(gap)].fill(f64::NAN);
        }
        if let Some(flat) = self.flat {
            x[range(flat)].fill(5.0);
        }
        x.into_iter().map(|v| v as f32).collect()
    }
}

/// Peak amplitude of the fundamental of the synthetic seizure-like burst, in microvolts.
pub const BURST_AMPLITUDE_UV: f64 = 150.0;

/// Adds the seizure-like burst to `x` (sampled at `fs`, sample 0 at t = 0) from `t0` to `t1`
/// seconds: a 3 Hz spike-and-wave-like waveform (fundamental + 0.5 x 6 Hz + 0.25 x 9 Hz) of
/// `amplitude_uv`, with 2 s linear ramps at both ends. Used by the generator above and by
/// the replay simulator to inject bursts into real recordings.
pub fn add_burst(x: &mut [f64], fs: f64, (t0, t1): (f64, f64), amplitude_uv: f64) {
    let two_pi = 2.0 * std::f64::consts::PI;
    for (i, v) in x.iter_mut().enumerate() {
        let t = i as f64 / fs;
        let ramp = ((t - t0).min(t1 - t) / 2.0).clamp(0.0, 1.0);
        if ramp == 0.0 {
            continue;
        }
        let wave = (two_pi * 3.0 * t).sin()
            + 0.5 * (two_pi * 6.0 * t).sin()
            + 0.25 * (two_pi * 9.0 * t).sin();
        *v += amplitude_uv * ramp * wave;
    }
}
