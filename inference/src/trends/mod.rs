//! Quantitative EEG trends per patient for review over hours (issue 14, docs/TRENDS.md):
//! regional compressed spectral arrays (CSA), left/right asymmetry, aEEG per hemisphere and the
//! burst-suppression ratio, one [`TrendPoint`] per 2 s of signal.
//!
//! [`TrendEngine`] is a pure streaming computation: samples in, points out. Every sample goes
//! through the same per-sample arithmetic whatever the chunking, so feeding a stream in chunks
//! of any size gives bit-identical points. NaN in the input marks a missing sample; NaN in an
//! output means "not evaluated" (missing samples, an absent region or side, filter warm-up,
//! not enough history), never zero.

mod filters;
pub mod montage;
mod params;
mod suppression;

use std::f64::consts::PI;

use vigil_core::record::{EegTrends, SideTrends};

use crate::spectrogram::SpectrogramPlan;
use filters::{butter_highpass2, butter_lowpass, butter_lowpass1, weighting, RunFilter};
pub use montage::{Montage, MontageKind, RegionMap, Side};
pub use params::TrendParams;
use suppression::Suppression;

/// CSA bins: 1 Hz wide, centred on 1..=30 Hz (covering 0.5-30.5 Hz).
pub const CSA_BINS: usize = vigil_core::record::TREND_BINS;

/// Seconds of signal per point.
pub const POINT_SECONDS: usize = 2;

/// Envelope scale: the mean of a rectified sine is `2/pi` of its peak, so `pi` times the
/// smoothed rectified signal reads a sine's peak-to-peak amplitude (where the weighting is 1).
pub const ENVELOPE_SCALE: f64 = PI;

/// Sections of the aEEG filter before rectification (weighting, high-pass, two low-pass).
const AEEG_BAND_SECTIONS: usize = 4;

/// Trend failures (bad configuration or input shape; never a panic).
#[derive(Debug, thiserror::Error)]
pub enum TrendError {
    /// The sampling rate is not usable.
    #[error("sample rate {0} Hz is not usable for trends: it needs an even whole number of Hz >= 100 (resample first)")]
    SampleRate(f64),
    /// Inconsistent parameters.
    #[error("invalid trend parameters: {0}")]
    Params(String),
    /// A chunk of the wrong shape.
    #[error("chunk shape: {0}")]
    Shape(String),
}

/// aEEG margins and burst suppression of one hemisphere (or of all derivations).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SideTrend {
    /// Lowest aEEG envelope in the point's interval, uV (lower margin).
    pub aeeg_min_uv: f64,
    /// Highest aEEG envelope in the point's interval, uV (upper margin).
    pub aeeg_max_uv: f64,
    /// Percentage of the trailing window (ending at the point's end) in suppression.
    pub bsr_percent: f64,
}

/// The trends of one 2 s interval `[start_ns, start_ns + 2 s)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendPoint {
    /// Start of the interval, UTC ns.
    pub start_ns: i64,
    /// Per region (order of [`Montage::regions`]): 10 log10 of the mean power spectral
    /// density, dB re 1 uV^2/Hz, bins 1..=30 Hz.
    pub csa_db: Vec<[f64; CSA_BINS]>,
    /// Per bin 1..=30 Hz: (L - R) / (L + R) of mean left and right power.
    pub asymmetry: [f64; CSA_BINS],
    /// Power-weighted asymmetry over the index band: (sum L - sum R) / (sum L + sum R).
    pub asymmetry_index: f64,
    /// Left hemisphere.
    pub left: SideTrend,
    /// Right hemisphere.
    pub right: SideTrend,
    /// All derivations together.
    pub global: SideTrend,
}

/// Per-derivation streaming state.
#[derive(Debug, Clone)]
struct DerivationState {
    /// The last second of samples (circular; `pos` is the oldest).
    ring: Vec<f64>,
    pos: usize,
    /// Missing samples in `ring`.
    missing: usize,
    /// Sum of the current point's segment powers, bins 1..=30.
    power: [f64; CSA_BINS],
    power_missing: bool,
    aeeg: RunFilter,
    bsr: RunFilter,
}

/// Per-side streaming state (left, right, global).
#[derive(Debug, Clone)]
struct SideState {
    members: Vec<usize>,
    env_min: f64,
    env_max: f64,
    env_missing: bool,
    suppression: Suppression,
}

/// Streaming trends of one patient's EEG stream (one sampling rate and channel set).
pub struct TrendEngine {
    fs: usize,
    hop: usize,
    start_ns: i64,
    consumed: u64,
    channels: usize,
    montage: Montage,
    plan: SpectrogramPlan,
    params: TrendParams,
    derivations: Vec<DerivationState>,
    sides: [SideState; 3],
    asym: [Vec<usize>; 2],
    segment: Vec<f64>,
    env: Vec<f64>,
    amp: Vec<f64>,
}

impl std::fmt::Debug for TrendEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrendEngine")
            .field("fs", &self.fs)
            .field("kind", &self.montage.kind)
            .field("consumed", &self.consumed)
            .finish()
    }
}

impl TrendEngine {
    /// An engine for a stream whose first sample is at `start_ns`, with channel `labels`
    /// sampled at `fs` Hz (an even whole number >= 100). `regions` is the configured region
    /// map used when the labels are not a 10-20 montage.
    pub fn new(
        labels: &[String],
        fs: f64,
        start_ns: i64,
        params: TrendParams,
        regions: Option<&RegionMap>,
    ) -> Result<Self, TrendError> {
        if !((100.0..=65_536.0).contains(&fs)
            && fs.fract() == 0.0
            && (fs as usize).is_multiple_of(2))
        {
            return Err(TrendError::SampleRate(fs));
        }
        params.check(fs).map_err(TrendError::Params)?;
        let n = fs as usize;
        let montage = Montage::resolve(labels, regions);
        let warmup = (params.warmup_s * fs).round() as usize;
        let mut aeeg_sections = vec![
            weighting(params.aeeg_highpass_hz, params.aeeg_lowpass_hz, fs),
            butter_highpass2(params.aeeg_highpass_hz, fs),
        ];
        aeeg_sections.extend(butter_lowpass(4, params.aeeg_lowpass_hz, fs));
        let smooth = butter_lowpass1(params.aeeg_envelope_hz, fs);
        aeeg_sections.extend([smooth, smooth]);
        let mut bsr_sections = vec![butter_highpass2(params.bsr_highpass_hz, fs)];
        bsr_sections.extend(butter_lowpass(4, params.bsr_lowpass_hz, fs));
        let state = DerivationState {
            ring: vec![f64::NAN; n],
            pos: 0,
            missing: n,
            power: [0.0; CSA_BINS],
            power_missing: false,
            aeeg: RunFilter::new(aeeg_sections, warmup),
            bsr: RunFilter::new(bsr_sections, warmup),
        };
        let window = (params.bsr_window_s * fs).round() as usize;
        let min_run = (params.bsr_min_duration_s * fs).round() as usize;
        let min_valid = (params.bsr_min_valid_fraction * window as f64).ceil() as usize;
        let side = |members: Vec<usize>| SideState {
            members,
            env_min: f64::INFINITY,
            env_max: f64::NEG_INFINITY,
            env_missing: false,
            suppression: Suppression::new(window, min_run, min_valid),
        };
        let all = (0..montage.derivations.len()).collect();
        let sides = [
            side(montage.hemisphere(Side::Left)),
            side(montage.hemisphere(Side::Right)),
            side(all),
        ];
        let asym = [
            montage.side_members(Side::Left),
            montage.side_members(Side::Right),
        ];
        let k = montage.derivations.len();
        Ok(Self {
            fs: n,
            hop: n / 2,
            start_ns,
            consumed: 0,
            channels: labels.len(),
            plan: SpectrogramPlan::new(n),
            derivations: vec![state; k],
            sides,
            asym,
            segment: vec![0.0; n],
            env: vec![0.0; k * (n / 2)],
            amp: vec![0.0; k * (n / 2)],
            montage,
            params,
        })
    }

    /// The resolved montage (which rule applied, derivations, regions).
    pub fn montage(&self) -> &Montage {
        &self.montage
    }

    /// The parameters in use.
    pub fn params(&self) -> &TrendParams {
        &self.params
    }

    /// The record of `point` for `vigil.eeg.trends`: values narrowed to f32, any non-finite
    /// value sent as NaN ("not evaluated").
    pub fn record(
        &self,
        point: &TrendPoint,
        patient_id: &str,
        stream_id: uuid::Uuid,
        emitted_ns: i64,
    ) -> EegTrends {
        let narrow = |v: f64| if v.is_finite() { v as f32 } else { f32::NAN };
        let side = |s: &SideTrend| SideTrends {
            aeeg_min_uv: narrow(s.aeeg_min_uv),
            aeeg_max_uv: narrow(s.aeeg_max_uv),
            bsr_percent: narrow(s.bsr_percent),
        };
        EegTrends {
            patient_id: patient_id.to_owned(),
            stream_id,
            start_ns: point.start_ns,
            duration_ns: (POINT_SECONDS as i64) * 1_000_000_000,
            montage: self.montage.kind,
            regions: self
                .montage
                .regions
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
            csa_db: point
                .csa_db
                .iter()
                .map(|row| row.iter().map(|&v| narrow(v)).collect())
                .collect(),
            asymmetry: point.asymmetry.iter().map(|&v| narrow(v)).collect(),
            asymmetry_index: narrow(point.asymmetry_index),
            left: side(&point.left),
            right: side(&point.right),
            global: side(&point.global),
            emitted_ns,
        }
    }

    /// Samples consumed per channel so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Feeds the next contiguous chunk (`rows[channel][sample]`, uV, NaN = missing; gaps in
    /// time must be filled with NaN by the caller) and appends the points it completes.
    pub fn push<R: AsRef<[f32]>>(
        &mut self,
        rows: &[R],
        out: &mut Vec<TrendPoint>,
    ) -> Result<(), TrendError> {
        if rows.len() != self.channels {
            return Err(TrendError::Shape(format!(
                "{} rows for {} channels",
                rows.len(),
                self.channels
            )));
        }
        let len = rows.first().map_or(0, |r| r.as_ref().len());
        if rows.iter().any(|r| r.as_ref().len() != len) {
            return Err(TrendError::Shape("rows of different lengths".into()));
        }
        let mut i = 0;
        while i < len {
            let to_boundary = self.hop - (self.consumed % self.hop as u64) as usize;
            let span = to_boundary.min(len - i);
            self.process_span(rows, i, span);
            i += span;
            self.consumed += span as u64;
            if self.consumed.is_multiple_of(self.hop as u64) {
                self.on_hop(out);
            }
        }
        Ok(())
    }

    /// Runs `span` samples (never past a hop boundary) through every derivation, then the
    /// per-sample hemisphere aggregates.
    fn process_span<R: AsRef<[f32]>>(&mut self, rows: &[R], from: usize, span: usize) {
        let hop = self.hop;
        for (k, (d, st)) in self
            .montage
            .derivations
            .iter()
            .zip(self.derivations.iter_mut())
            .enumerate()
        {
            let plus = &rows[d.plus].as_ref()[from..from + span];
            let minus = d.minus.map(|m| &rows[m].as_ref()[from..from + span]);
            let env = &mut self.env[k * hop..k * hop + span];
            let amp = &mut self.amp[k * hop..k * hop + span];
            for j in 0..span {
                let x = match minus {
                    Some(m) => plus[j] as f64 - m[j] as f64,
                    None => plus[j] as f64,
                };
                let old = std::mem::replace(&mut st.ring[st.pos], x);
                st.missing = st.missing + usize::from(x.is_nan()) - usize::from(old.is_nan());
                st.pos = (st.pos + 1) % st.ring.len();
                env[j] = st.aeeg.step_rectified(x, AEEG_BAND_SECTIONS) * ENVELOPE_SCALE;
                amp[j] = st.bsr.step(x).abs();
            }
        }
        let threshold = self.params.bsr_threshold_uv;
        for side in &mut self.sides {
            for j in 0..span {
                side.aggregate(&self.env, &self.amp, hop, j, threshold);
            }
        }
    }

    /// At each hop boundary: the spectrum of the second just ended (when it lies inside one
    /// point), and the point itself every fourth hop.
    fn on_hop(&mut self, out: &mut Vec<TrendPoint>) {
        let n = self.consumed as usize;
        if n >= self.fs && ((n - self.fs) / self.hop) % 4 != 3 {
            for st in &mut self.derivations {
                if st.missing > 0 {
                    st.power_missing = true;
                    continue;
                }
                let (newer, older) = st.ring.split_at(st.pos);
                self.segment[..older.len()].copy_from_slice(older);
                self.segment[older.len()..].copy_from_slice(newer);
                let column = self.plan.column(&self.segment);
                for (p, c) in st.power.iter_mut().zip(&column[1..=CSA_BINS]) {
                    *p += c;
                }
            }
        }
        if n.is_multiple_of(POINT_SECONDS * self.fs) {
            out.push(self.emit(n / (POINT_SECONDS * self.fs) - 1));
        }
    }

    /// Builds point `p` from the accumulators and resets them.
    fn emit(&mut self, p: usize) -> TrendPoint {
        let segments = 3.0;
        let mean_power = |members: &[usize]| -> Option<[f64; CSA_BINS]> {
            if members.is_empty() || members.iter().any(|&d| self.derivations[d].power_missing) {
                return None;
            }
            let mut sum = [0.0; CSA_BINS];
            for &d in members {
                for (s, p) in sum.iter_mut().zip(&self.derivations[d].power) {
                    *s += p;
                }
            }
            Some(sum.map(|s| s / (members.len() as f64 * segments)))
        };
        let csa_db = self
            .montage
            .regions
            .iter()
            .map(|(_, members)| match mean_power(members) {
                Some(p) => p.map(|v| if v > 0.0 { 10.0 * v.log10() } else { f64::NAN }),
                None => [f64::NAN; CSA_BINS],
            })
            .collect();
        let (asymmetry, asymmetry_index) =
            match (mean_power(&self.asym[0]), mean_power(&self.asym[1])) {
                (Some(l), Some(r)) => {
                    let per_bin = std::array::from_fn(|b| ratio(l[b], r[b]));
                    let band =
                        self.params.asymmetry_index_lo_hz - 1..self.params.asymmetry_index_hi_hz;
                    let index = ratio(l[band.clone()].iter().sum(), r[band].iter().sum());
                    (per_bin, index)
                }
                _ => ([f64::NAN; CSA_BINS], f64::NAN),
            };
        for st in &mut self.derivations {
            st.power = [0.0; CSA_BINS];
            st.power_missing = false;
        }
        let [left, right, global] = self.sides.each_mut().map(SideState::emit);
        TrendPoint {
            start_ns: self.start_ns
                + (p as i64).saturating_mul(POINT_SECONDS as i64 * 1_000_000_000),
            csa_db,
            asymmetry,
            asymmetry_index,
            left,
            right,
            global,
        }
    }
}

/// (l - r) / (l + r), NaN when both are zero.
fn ratio(l: f64, r: f64) -> f64 {
    if l + r > 0.0 {
        (l - r) / (l + r)
    } else {
        f64::NAN
    }
}

impl SideState {
    /// Adds sample `j` of the span: mean envelope of the members, and suppression when every
    /// member is below the threshold.
    #[inline]
    fn aggregate(&mut self, env: &[f64], amp: &[f64], hop: usize, j: usize, threshold: f64) {
        if self.members.is_empty() {
            self.env_missing = true;
            self.suppression.push(None);
            return;
        }
        let (mut sum, mut peak, mut amp_ok) = (0.0, 0.0f64, true);
        for &d in &self.members {
            sum += env[d * hop + j];
            let a = amp[d * hop + j];
            amp_ok &= a.is_finite();
            peak = peak.max(a);
        }
        if sum.is_finite() {
            let mean = sum / self.members.len() as f64;
            self.env_min = self.env_min.min(mean);
            self.env_max = self.env_max.max(mean);
        } else {
            self.env_missing = true;
        }
        self.suppression.push(amp_ok.then_some(peak < threshold));
    }

    fn emit(&mut self) -> SideTrend {
        let valid = !self.env_missing && self.env_min.is_finite();
        let t = SideTrend {
            aeeg_min_uv: if valid { self.env_min } else { f64::NAN },
            aeeg_max_uv: if valid { self.env_max } else { f64::NAN },
            bsr_percent: self.suppression.percent(),
        };
        self.env_min = f64::INFINITY;
        self.env_max = f64::NEG_INFINITY;
        self.env_missing = false;
        t
    }
}
