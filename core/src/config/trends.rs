//! `[inference.trends]`: the qEEG trends (docs/TRENDS.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::record::TREND_BINS;

/// Region map: region name -> channel labels (exact labels, compared case-insensitively). A
/// region whose name starts with `left` or `right` counts for that hemisphere.
pub type RegionMap = BTreeMap<String, Vec<String>>;

/// qEEG trend settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrendsConfig {
    /// Compute the trends and publish them on `vigil.eeg.trends`.
    pub enabled: bool,
    /// Regions for patients whose channel labels are not a 10-20 montage and who have no map
    /// of their own in `patient_regions`; empty = one region, `all`, of every channel.
    pub regions: RegionMap,
    /// Per-patient region maps, keyed by patient id, e.g.
    /// `[inference.trends.patient_regions."patient-7"]` with `"left temporal" = ["T7", "P7"]`.
    pub patient_regions: BTreeMap<String, RegionMap>,
    /// Filter corners and thresholds.
    pub params: TrendParams,
}

impl Default for TrendsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            regions: RegionMap::new(),
            patient_regions: BTreeMap::new(),
            params: TrendParams::default(),
        }
    }
}

impl TrendsConfig {
    /// Checks the parameters at the lowest rate the model accepts (200 Hz).
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        self.params
            .check(200.0)
            .map_err(|problem| ConfigError::Invalid {
                key: "inference.trends.params",
                problem,
            })
    }

    /// The configured region map for a patient: its own, else the default, else none.
    pub fn regions_for(&self, patient_id: &str) -> Option<&RegionMap> {
        self.patient_regions
            .get(patient_id)
            .or((!self.regions.is_empty()).then_some(&self.regions))
    }
}

/// Numeric parameters of the trends. Filter orders are fixed by the method (docs/TRENDS.md);
/// corners and thresholds are configurable.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrendParams {
    /// Lowest 1 Hz bin of the scalar asymmetry index (default 1 Hz).
    pub asymmetry_index_lo_hz: usize,
    /// Highest 1 Hz bin of the scalar asymmetry index (default 18 Hz).
    pub asymmetry_index_hi_hz: usize,
    /// aEEG band-pass lower corner: 2nd-order Butterworth high-pass (default 2 Hz); also the
    /// zero of the frequency weighting.
    pub aeeg_highpass_hz: f64,
    /// aEEG band-pass upper corner: 4th-order Butterworth low-pass (default 15 Hz); also the
    /// pole of the frequency weighting, where its gain is 1.
    pub aeeg_lowpass_hz: f64,
    /// aEEG envelope smoothing: two cascaded 1st-order Butterworth low-pass sections on the
    /// rectified signal (default 1 Hz each).
    pub aeeg_envelope_hz: f64,
    /// Seconds after the stream start or a missing sample during which filtered signals are
    /// not evaluated (filter transients; default 4 s).
    pub warmup_s: f64,
    /// Burst suppression: 2nd-order Butterworth high-pass against drift (default 0.5 Hz).
    pub bsr_highpass_hz: f64,
    /// Burst suppression: 4th-order Butterworth low-pass against mains and muscle (default
    /// 30 Hz).
    pub bsr_lowpass_hz: f64,
    /// Suppression threshold on |filtered amplitude| (default 5 uV).
    pub bsr_threshold_uv: f64,
    /// Shortest run below the threshold that counts as suppression (default 0.5 s).
    pub bsr_min_duration_s: f64,
    /// Trailing window of the ratio (default 60 s).
    pub bsr_window_s: f64,
    /// Smallest fraction of the window with evaluated samples for a ratio (default 0.75).
    pub bsr_min_valid_fraction: f64,
}

impl Default for TrendParams {
    fn default() -> Self {
        Self {
            asymmetry_index_lo_hz: 1,
            asymmetry_index_hi_hz: 18,
            aeeg_highpass_hz: 2.0,
            aeeg_lowpass_hz: 15.0,
            aeeg_envelope_hz: 1.0,
            warmup_s: 4.0,
            bsr_highpass_hz: 0.5,
            bsr_lowpass_hz: 30.0,
            bsr_threshold_uv: 5.0,
            bsr_min_duration_s: 0.5,
            bsr_window_s: 60.0,
            bsr_min_valid_fraction: 0.75,
        }
    }
}

impl TrendParams {
    /// Checks the parameters for sampling rate `fs`; the message says which rule failed.
    pub fn check(&self, fs: f64) -> Result<(), String> {
        let bad = |what: &str| Err(what.to_string());
        let nyquist = fs / 2.0;
        let corner = |f: f64| f.is_finite() && f > 0.0 && f < nyquist;
        if !(1..=self.asymmetry_index_hi_hz).contains(&self.asymmetry_index_lo_hz)
            || self.asymmetry_index_hi_hz > TREND_BINS
        {
            return bad("asymmetry index band must satisfy 1 <= lo <= hi <= 30 Hz");
        }
        if !(corner(self.aeeg_highpass_hz)
            && corner(self.aeeg_lowpass_hz)
            && self.aeeg_highpass_hz < self.aeeg_lowpass_hz
            && corner(self.aeeg_envelope_hz))
        {
            return bad(
                "aEEG corners must satisfy 0 < high-pass < low-pass < fs/2, 0 < envelope < fs/2",
            );
        }
        if !(corner(self.bsr_highpass_hz)
            && corner(self.bsr_lowpass_hz)
            && self.bsr_highpass_hz < self.bsr_lowpass_hz)
        {
            return bad("burst-suppression corners must satisfy 0 < high-pass < low-pass < fs/2");
        }
        if !(0.0..=60.0).contains(&self.warmup_s) {
            return bad("warmup_s must be in [0, 60]");
        }
        let min_run = self.bsr_min_duration_s * fs;
        let ok = self.bsr_threshold_uv.is_finite()
            && self.bsr_threshold_uv > 0.0
            && min_run.is_finite()
            && min_run >= 1.0
            && (self.bsr_min_duration_s..=3600.0).contains(&self.bsr_window_s)
            && (0.0..=1.0).contains(&self.bsr_min_valid_fraction);
        if !ok {
            return bad("burst suppression needs threshold > 0, 1 sample <= min duration <= window <= 3600 s, valid fraction in [0, 1]");
        }
        Ok(())
    }
}
