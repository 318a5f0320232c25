//! qEEG trends on `vigil.eeg.trends` (docs/TRENDS.md): one record per patient per 2 s interval.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{check_identifier, check_label, check_time, RecordLimits, Validate, ValidationError};
use crate::serde_fields;

/// CSA and asymmetry bins: 1 Hz wide, centred on 1..=30 Hz.
pub const TREND_BINS: usize = 30;

/// Which rule formed the trend regions from the channel labels (shown in the UI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MontageKind {
    /// Bipolar double-banana labels, used as they are.
    DoubleBanana,
    /// Referential 10-20 labels, re-referenced to the double banana by subtraction.
    ReferentialToBipolar,
    /// Regions from a configured map.
    Configured,
    /// No known montage and no map: every channel in one region, `all`.
    ChannelGroups,
}

/// aEEG margins and burst suppression of one hemisphere (or of every derivation). NaN = not
/// evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideTrends {
    /// Lowest aEEG envelope in the interval, uV (lower margin); >= 0.
    #[serde(with = "serde_fields::scalar")]
    pub aeeg_min_uv: f32,
    /// Highest aEEG envelope in the interval, uV (upper margin); >= `aeeg_min_uv`.
    #[serde(with = "serde_fields::scalar")]
    pub aeeg_max_uv: f32,
    /// Percentage of the trailing window (ending at the interval's end) in suppression, 0..=100.
    #[serde(with = "serde_fields::scalar")]
    pub bsr_percent: f32,
}

/// Quantitative EEG trends of one patient over `[start_ns, start_ns + duration_ns)`.
///
/// NaN anywhere means "not evaluated" (missing samples, an absent region or side, filter
/// warm-up, not enough history, zero power), never zero or "normal".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EegTrends {
    /// Patient; the Kafka key.
    pub patient_id: String,
    /// The device stream the samples came from.
    pub stream_id: Uuid,
    /// Start of the interval, UTC ns.
    pub start_ns: i64,
    /// Length of the interval, ns (2 s).
    pub duration_ns: i64,
    /// Which rule formed `regions`.
    pub montage: MontageKind,
    /// Region names, one per row of `csa_db`.
    pub regions: Vec<String>,
    /// `csa_db[region][bin]`: 10 log10 of the mean power spectral density, dB re 1 uV^2/Hz,
    /// bins centred on 1..=30 Hz.
    #[serde(with = "serde_fields::matrix")]
    pub csa_db: Vec<Vec<f32>>,
    /// Per bin 1..=30 Hz: (L - R) / (L + R) of mean left and right power, in [-1, 1].
    #[serde(with = "serde_fields::vector")]
    pub asymmetry: Vec<f32>,
    /// Power-weighted asymmetry over the index band, in [-1, 1].
    #[serde(with = "serde_fields::scalar")]
    pub asymmetry_index: f32,
    /// Left hemisphere.
    pub left: SideTrends,
    /// Right hemisphere.
    pub right: SideTrends,
    /// Every derivation together.
    pub global: SideTrends,
    /// When inference emitted the record, UTC ns.
    pub emitted_ns: i64,
}

/// NaN, or finite and within `lo..=hi`.
fn check_range(
    field: &'static str,
    values: &[f32],
    lo: f32,
    hi: f32,
) -> Result<(), ValidationError> {
    match values
        .iter()
        .position(|v| !(v.is_nan() || (lo..=hi).contains(v)))
    {
        Some(index) => Err(ValidationError::OutOfRange {
            field,
            index,
            value: values[index],
            lo,
            hi,
        }),
        None => Ok(()),
    }
}

impl SideTrends {
    /// `names`: the full field names of the aEEG minimum, maximum and BSR, for the message.
    fn validate(&self, names: [&'static str; 3]) -> Result<(), ValidationError> {
        check_range(names[0], &[self.aeeg_min_uv], 0.0, f32::MAX)?;
        check_range(names[1], &[self.aeeg_max_uv], 0.0, f32::MAX)?;
        if self.aeeg_min_uv > self.aeeg_max_uv {
            return Err(ValidationError::OutOfRange {
                field: names[0],
                index: 0,
                value: self.aeeg_min_uv,
                lo: 0.0,
                hi: self.aeeg_max_uv,
            });
        }
        check_range(names[2], &[self.bsr_percent], 0.0, 100.0)
    }
}

impl Validate for EegTrends {
    fn validate(&self, limits: &RecordLimits) -> Result<(), ValidationError> {
        check_identifier("patient_id", &self.patient_id, limits.max_label_len)?;
        check_time("start_ns", self.start_ns)?;
        check_time("emitted_ns", self.emitted_ns)?;
        if self.duration_ns <= 0 {
            return Err(ValidationError::Duration(self.duration_ns));
        }
        if self.regions.is_empty() || self.regions.len() > limits.max_channels {
            return Err(ValidationError::TooManyChannels {
                found: self.regions.len(),
                max: limits.max_channels,
            });
        }
        for (i, region) in self.regions.iter().enumerate() {
            check_label(region, &self.regions[..i], limits.max_label_len)?;
        }
        if self.csa_db.len() != self.regions.len() {
            return Err(ValidationError::ChannelCountMismatch {
                rows: self.csa_db.len(),
                labels: self.regions.len(),
            });
        }
        for row in &self.csa_db {
            if row.len() != TREND_BINS {
                return Err(ValidationError::LengthMismatch {
                    field: "csa_db row",
                    expected: TREND_BINS,
                    found: row.len(),
                });
            }
            check_range("csa_db", row, -f32::MAX, f32::MAX)?;
        }
        if self.asymmetry.len() != TREND_BINS {
            return Err(ValidationError::LengthMismatch {
                field: "asymmetry",
                expected: TREND_BINS,
                found: self.asymmetry.len(),
            });
        }
        check_range("asymmetry", &self.asymmetry, -1.0, 1.0)?;
        check_range("asymmetry_index", &[self.asymmetry_index], -1.0, 1.0)?;
        self.left
            .validate(["left.aeeg_min_uv", "left.aeeg_max_uv", "left.bsr_percent"])?;
        self.right.validate([
            "right.aeeg_min_uv",
            "right.aeeg_max_uv",
            "right.bsr_percent",
        ])?;
        self.global.validate([
            "global.aeeg_min_uv",
            "global.aeeg_max_uv",
            "global.bsr_percent",
        ])
    }
}
