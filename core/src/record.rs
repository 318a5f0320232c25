//! The records every stage exchanges (docs/ARCHITECTURE.md "Records"), with their validation rules.
//!
//! A record is only ever built from untrusted bytes through [`crate::codec`], which runs
//! [`Validate::validate`] before handing it out, so a stage can rely on the invariants listed
//! on each type.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::serde_fields;

mod trends;
pub use trends::{EegTrends, MontageKind, SideTrends, TREND_BINS};

/// Limits that bound every record, so a malicious or buggy device cannot make a stage allocate
/// or compute without bound. The defaults fit one Kafka record of at most 1 MiB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordLimits {
    /// Most channels one EEG chunk may carry.
    pub max_channels: usize,
    /// Most samples (all channels together) one EEG chunk may carry.
    pub max_samples: usize,
    /// Most points one heart-rate batch or probability record may carry.
    pub max_points: usize,
    /// Highest sampling rate accepted, in Hz.
    pub max_sample_rate_hz: f64,
    /// Longest identifier or label, in bytes.
    pub max_label_len: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        Self {
            max_channels: 256,
            max_samples: 256 * 1024,
            max_points: 16 * 1024,
            max_sample_rate_hz: 65_536.0,
            max_label_len: 64,
        }
    }
}

/// Why a record was refused. Every variant names the offending field so the message can go
/// straight into an HTTP problem body or a dead-letter reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// An identifier is empty, too long or has characters outside `[A-Za-z0-9._:-]`.
    #[error(
        "{field} {value:?} is not a valid identifier (1..={max} chars of A-Z a-z 0-9 . _ : -)"
    )]
    BadIdentifier {
        /// Field name.
        field: &'static str,
        /// The refused value (truncated).
        value: String,
        /// Longest allowed.
        max: usize,
    },
    /// The chunk has no channels.
    #[error("an EEG chunk needs at least one channel")]
    NoChannels,
    /// More channels than [`RecordLimits::max_channels`].
    #[error("{found} channels exceed the limit of {max}")]
    TooManyChannels {
        /// Channels in the record.
        found: usize,
        /// Limit.
        max: usize,
    },
    /// A channel label is empty, too long or repeated.
    #[error("channel label {label:?} is empty, longer than {max} bytes, or repeated")]
    BadChannelLabel {
        /// The label.
        label: String,
        /// Longest allowed.
        max: usize,
    },
    /// Sampling rate not finite, not positive, or above the limit.
    #[error("sample rate {found} Hz is not in (0, {max}] Hz")]
    SampleRate {
        /// The rate in the record.
        found: f64,
        /// Highest accepted.
        max: f64,
    },
    /// The sample block does not have one row per channel label.
    #[error("sample block has {rows} channel rows but {labels} channel labels")]
    ChannelCountMismatch {
        /// Rows in the sample block.
        rows: usize,
        /// Channel labels.
        labels: usize,
    },
    /// Channel rows differ in length.
    #[error("channel {channel} has {found} samples, expected {expected} like channel 0")]
    RaggedChannels {
        /// Index of the first channel whose length differs.
        channel: usize,
        /// Length of channel 0.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// A chunk without samples carries nothing.
    #[error("an EEG chunk needs at least one sample per channel")]
    NoSamples,
    /// Too many samples in one record.
    #[error("{found} samples exceed the limit of {max} per record")]
    TooManySamples {
        /// Samples in the record.
        found: usize,
        /// Limit.
        max: usize,
    },
    /// An infinite sample: NaN means "missing", but infinity is always a device fault.
    #[error("sample {index} of channel {channel} is infinite (use NaN for missing samples)")]
    InfiniteSample {
        /// Channel index.
        channel: usize,
        /// Sample index within the channel.
        index: usize,
    },
    /// A timestamp before 1970 (all times are UTC nanoseconds since the Unix epoch).
    #[error("{field} = {value} is before the Unix epoch")]
    NegativeTimestamp {
        /// Field name.
        field: &'static str,
        /// The value.
        value: i64,
    },
    /// A record that must carry points has none.
    #[error("{record} has no points")]
    NoPoints {
        /// Record type.
        record: &'static str,
    },
    /// Too many points.
    #[error("{found} points exceed the limit of {max} per record")]
    TooManyPoints {
        /// Points in the record.
        found: usize,
        /// Limit.
        max: usize,
    },
    /// Heart-rate point times must strictly increase.
    #[error("heart-rate point {index} is not later than the point before it")]
    NonIncreasingTime {
        /// Index of the offending point.
        index: usize,
    },
    /// A heart-rate value outside what any sensor can report.
    #[error("heart-rate point {index}: {field} = {value} is not finite or outside {range}")]
    HeartValue {
        /// Index of the point.
        index: usize,
        /// `bpm` or `rr_ms`.
        field: &'static str,
        /// Value found.
        value: f32,
        /// Accepted range, for the message.
        range: &'static str,
    },
    /// A probability outside [0, 1] that is not NaN.
    #[error("{field}[{index}] = {value} is neither NaN (not evaluated) nor in [0, 1]")]
    Probability {
        /// Field name.
        field: &'static str,
        /// Index within the field.
        index: usize,
        /// Value found.
        value: f32,
    },
    /// Arrays that must have one entry per point or channel do not.
    #[error("{field} has {found} entries, expected {expected}")]
    LengthMismatch {
        /// Field name.
        field: &'static str,
        /// Expected length.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// A value that must be NaN (not evaluated) or within a range is not.
    #[error("{field}[{index}] = {value} is neither NaN (not evaluated) nor in [{lo}, {hi}]")]
    OutOfRange {
        /// Field name.
        field: &'static str,
        /// Index within the field.
        index: usize,
        /// Value found.
        value: f32,
        /// Lowest accepted.
        lo: f32,
        /// Highest accepted.
        hi: f32,
    },
    /// The probability grid step must be positive.
    #[error("step_ns must be positive, got {0}")]
    Step(i64),
    /// An interval's duration must be positive.
    #[error("duration_ns must be positive, got {0}")]
    Duration(i64),
    /// Acknowledgements must say who acknowledged.
    #[error("an acknowledgement must name the user in `by`")]
    AckWithoutUser,
    /// A free-text field is longer than allowed.
    #[error("{field} is {found} bytes long, the limit is {max}")]
    TextTooLong {
        /// Field name.
        field: &'static str,
        /// Length found.
        found: usize,
        /// Limit.
        max: usize,
    },
}

/// Checks the invariants of a decoded record.
pub trait Validate {
    /// Returns the first rule the record breaks.
    fn validate(&self, limits: &RecordLimits) -> Result<(), ValidationError>;
}

fn check_identifier(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::BadIdentifier {
            field,
            value: value.chars().take(80).collect(),
            max,
        })
    }
}

/// A channel or region label: not empty, at most `max` bytes, not one of `earlier`.
fn check_label(label: &str, earlier: &[String], max: usize) -> Result<(), ValidationError> {
    if label.is_empty() || label.len() > max || earlier.iter().any(|l| l == label) {
        Err(ValidationError::BadChannelLabel {
            label: label.chars().take(80).collect(),
            max,
        })
    } else {
        Ok(())
    }
}

fn check_time(field: &'static str, value: i64) -> Result<(), ValidationError> {
    if value < 0 {
        Err(ValidationError::NegativeTimestamp { field, value })
    } else {
        Ok(())
    }
}

fn check_points(record: &'static str, n: usize, max: usize) -> Result<(), ValidationError> {
    if n == 0 {
        Err(ValidationError::NoPoints { record })
    } else if n > max {
        Err(ValidationError::TooManyPoints { found: n, max })
    } else {
        Ok(())
    }
}

fn check_probabilities(field: &'static str, values: &[f32]) -> Result<(), ValidationError> {
    match values
        .iter()
        .position(|p| !(p.is_nan() || (0.0..=1.0).contains(p)))
    {
        Some(index) => Err(ValidationError::Probability {
            field,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), ValidationError> {
    if text.len() > max {
        Err(ValidationError::TextTooLong {
            field,
            found: text.len(),
            max,
        })
    } else {
        Ok(())
    }
}

/// Physical unit of EEG samples. Only microvolts are carried on the bus: devices convert
/// before sending, so no stage ever has to guess a scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SignalUnit {
    /// Microvolts.
    #[default]
    #[serde(rename = "uV")]
    Microvolt,
}

/// A block of consecutive EEG samples from one device stream.
///
/// Invariants after validation: at least one channel, unique labels, one row of samples per
/// label, all rows the same non-zero length, no infinite sample (NaN marks a missing sample),
/// `0 < sample_rate_hz <= limit`, non-negative times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EegChunk {
    /// Patient the device is bound to; the Kafka key.
    pub patient_id: String,
    /// Device that recorded the samples.
    pub device_id: String,
    /// One id per device session; `(stream_id, seq)` is the idempotency key.
    pub stream_id: Uuid,
    /// Gapless sequence number within the stream, starting anywhere.
    pub seq: u64,
    /// UTC time of the first sample, ns since the Unix epoch, corrected for the device clock
    /// offset at ingest.
    pub start_ns: i64,
    /// UTC time the gateway received the chunk, ns since the Unix epoch (0 before ingest).
    #[serde(default)]
    pub received_ns: i64,
    /// Samples per second per channel.
    pub sample_rate_hz: f64,
    /// Channel labels, e.g. `Fp1-F7`.
    pub channels: Vec<String>,
    /// Unit of every sample.
    #[serde(default)]
    pub unit: SignalUnit,
    /// Channel-major samples: `samples[channel][i]`. NaN = missing sample.
    #[serde(with = "serde_fields::matrix")]
    pub samples: Vec<Vec<f32>>,
}

impl EegChunk {
    /// Samples per channel.
    pub fn samples_per_channel(&self) -> usize {
        self.samples.first().map_or(0, Vec::len)
    }

    /// Duration covered by the chunk in ns (samples per channel / rate).
    pub fn duration_ns(&self) -> i64 {
        (self.samples_per_channel() as f64 * 1e9 / self.sample_rate_hz).round() as i64
    }
}

impl EegChunk {
    /// Checks the chunk's header fields with `samples` as its sample block.
    fn validate_shape(
        &self,
        limits: &RecordLimits,
        samples: &[Vec<f32>],
    ) -> Result<(), ValidationError> {
        check_identifier("patient_id", &self.patient_id, limits.max_label_len)?;
        check_identifier("device_id", &self.device_id, limits.max_label_len)?;
        check_time("start_ns", self.start_ns)?;
        check_time("received_ns", self.received_ns)?;
        let rate = self.sample_rate_hz;
        if !(rate.is_finite() && rate > 0.0 && rate <= limits.max_sample_rate_hz) {
            return Err(ValidationError::SampleRate {
                found: rate,
                max: limits.max_sample_rate_hz,
            });
        }
        let labels = self.channels.len();
        if labels == 0 {
            return Err(ValidationError::NoChannels);
        }
        if labels > limits.max_channels {
            return Err(ValidationError::TooManyChannels {
                found: labels,
                max: limits.max_channels,
            });
        }
        for (i, label) in self.channels.iter().enumerate() {
            check_label(label, &self.channels[..i], limits.max_label_len)?;
        }
        if samples.len() != labels {
            return Err(ValidationError::ChannelCountMismatch {
                rows: samples.len(),
                labels,
            });
        }
        let n = samples.first().map_or(0, Vec::len);
        if n == 0 {
            return Err(ValidationError::NoSamples);
        }
        let total = n.saturating_mul(labels);
        if total > limits.max_samples {
            return Err(ValidationError::TooManySamples {
                found: total,
                max: limits.max_samples,
            });
        }
        for (channel, row) in samples.iter().enumerate() {
            if row.len() != n {
                return Err(ValidationError::RaggedChannels {
                    channel,
                    expected: n,
                    found: row.len(),
                });
            }
            if let Some(index) = row.iter().position(|x| x.is_infinite()) {
                return Err(ValidationError::InfiniteSample { channel, index });
            }
        }
        Ok(())
    }
}

impl Validate for EegChunk {
    fn validate(&self, limits: &RecordLimits) -> Result<(), ValidationError> {
        self.validate_shape(limits, &self.samples)
    }
}

/// Display-filtered EEG for clinicians' screens (`vigil.eeg.trace`), produced by inference
/// from `EegChunk`s. Same shape rules as [`EegChunk`]; NaN marks a gap in the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EegTrace {
    /// Patient; the Kafka key.
    pub patient_id: String,
    /// The device stream the samples came from.
    pub stream_id: Uuid,
    /// UTC time of the first sample, ns (filter delay already removed).
    pub start_ns: i64,
    /// When ingest received the newest chunk that went into this trace, UTC ns (the chunk's
    /// `received_ns`), so screens can measure receipt-to-display latency.
    pub received_ns: i64,
    /// Samples per second per channel after decimation.
    pub sample_rate_hz: f64,
    /// Channel labels.
    pub channels: Vec<String>,
    /// `samples[channel][i]`, microvolts, NaN = gap.
    #[serde(with = "serde_fields::matrix")]
    pub samples: Vec<Vec<f32>>,
}

impl Validate for EegTrace {
    fn validate(&self, limits: &RecordLimits) -> Result<(), ValidationError> {
        // The same rules as a chunk of the same shape.
        EegChunk {
            patient_id: self.patient_id.clone(),
            device_id: "trace".to_owned(),
            stream_id: self.stream_id,
            seq: 0,
            start_ns: self.start_ns,
            received_ns: self.received_ns,
            sample_rate_hz: self.sample_rate_hz,
            channels: self.channels.clone(),
            unit: SignalUnit::Microvolt,
            samples: Vec::new(),
        }
        .validate_shape(limits, &self.samples)
    }
}

/// What produced a heart-rate series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HrSource {
    /// Derived from ECG R-peaks.
    Ecg,
    /// Photoplethysmography (wrist or finger optical sensor).
    Ppg,
    /// Chest strap reporting beats and RR intervals.
    ChestStrap,
    /// Anything else; the device documents it.
    Other,
}

/// One heart-rate observation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HrPoint {
    /// UTC time of the observation, ns since the Unix epoch.
    pub t_ns: i64,
    /// Beats per minute, finite and in (0, 400).
    pub bpm: f32,
    /// The RR interval ending at this beat in ms, when the sensor reports it.
    #[serde(default)]
    pub rr_ms: Option<f32>,
}

/// A batch of heart-rate points from one device stream.
///
/// Invariants after validation: 1..=limit points, strictly increasing times, finite bpm in
/// (0, 400), RR in (0, 10000) ms when present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HrBatch {
    /// Patient; the Kafka key.
    pub patient_id: String,
    /// Device that measured the points.
    pub device_id: String,
    /// One id per device session; `(stream_id, seq)` is the idempotency key.
    pub stream_id: Uuid,
    /// Gapless sequence number within the stream.
    pub seq: u64,
    /// The observations, oldest first.
    pub points: Vec<HrPoint>,
    /// Kind of sensor.
    pub source: HrSource,
}

impl Validate for HrBatch {
    fn validate(&self, limits: &RecordLimits) -> Result<(), ValidationError> {
        check_identifier("patient_id", &self.patient_id, limits.max_label_len)?;
        check_identifier("device_id", &self.device_id, limits.max_label_len)?;
        check_points("heart-rate batch", self.points.len(), limits.max_points)?;
        for (index, point) in self.points.iter().enumerate() {
            check_time("points.t_ns", point.t_ns)?;
            if index > 0 && point.t_ns <= self.points[index - 1].t_ns {
                return Err(ValidationError::NonIncreasingTime { index });
            }
            if !(point.bpm.is_finite() && point.bpm > 0.0 && point.bpm < 400.0) {
                return Err(ValidationError::HeartValue {
                    index,
                    field: "bpm",
                    value: point.bpm,
                    range: "(0, 400)",
                });
            }
            if let Some(rr) = point.rr_ms {
                if !(rr.is_finite() && rr > 0.0 && rr < 10_000.0) {
                    return Err(ValidationError::HeartValue {
                        index,
                        field: "rr_ms",
                        value: rr,
                        range: "(0, 10000) ms",
                    });
                }
            }
        }
        Ok(())
    }
}

/// Which model produced a probability, so every output can be traced to exact weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// Model id from `models/manifest.toml`.
    pub id: String,
    /// SHA-256 of the weights file, lowercase hex.
    pub sha256: String,
}

/// Seizure probabilities for consecutive finalized points of the 0.5 s output grid.
///
/// Point `i` covers `[start_ns + i*step_ns, start_ns + (i+1)*step_ns)`. NaN means "not
/// evaluated" (missing or flat signal, or not yet covered by a model window), never "no
/// seizure".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeizureProbability {
    /// Patient; the Kafka key.
    pub patient_id: String,
    /// Start of the first point, UTC ns since the Unix epoch.
    pub start_ns: i64,
    /// Grid step in ns (500 ms in the reference model).
    pub step_ns: i64,
    /// Channel labels, one per row of `channel_p`.
    pub channels: Vec<String>,
    /// `channel_p[channel][point]`: per-channel probability, NaN = not evaluated.
    #[serde(with = "serde_fields::matrix")]
    pub channel_p: Vec<Vec<f32>>,
    /// NaN-aware max over channels per point; NaN only when no channel was evaluated.
    #[serde(with = "serde_fields::vector")]
    pub aggregate_p: Vec<f32>,
    /// The model that produced the values.
    pub model: ModelRef,
    /// When inference emitted the record, UTC ns since the Unix epoch.
    pub emitted_ns: i64,
}

/// The rules shared by final and provisional probabilities: identifiers, times, the grid
/// step, the point count and the aggregate's range.
fn check_probability_grid(
    record: &'static str,
    (patient_id, model): (&str, &ModelRef),
    (start_ns, step_ns, emitted_ns): (i64, i64, i64),
    aggregate_p: &[f32],
    limits: &RecordLimits,
) -> Result<(), ValidationError> {
    check_identifier("patient_id", patient_id, limits.max_label_len)?;
    check_time("start_ns", start_ns)?;
    check_time("emitted_ns", emitted_ns)?;
    if step_ns <= 0 {
        return Err(ValidationError::Step(step_ns));
    }
    check_points(record, aggregate_p.len(), limits.max_points)?;
    check_probabilities("aggregate_p", aggregate_p)?;
    check_identifier("model.id", &model.id, limits.max_label_len)?;
    check_text("model.sha256", &model.sha256, 64)
}

impl Validate for SeizureProbability {
    fn validate(&self, limits: &RecordLimits) -> Result<(), ValidationError> {
        check_probability_grid(
            "seizure probability",
            (&self.patient_id, &self.model),
            (self.start_ns, self.step_ns, self.emitted_ns),
            &self.aggregate_p,
            limits,
        )?;
        let points = self.aggregate_p.len();
        if self.channels.len() > limits.max_channels {
            return Err(ValidationError::TooManyChannels {
                found: self.channels.len(),
                max: limits.max_channels,
            });
        }
        if self.channel_p.len() != self.channels.len() {
            return Err(ValidationError::ChannelCountMismatch {
                rows: self.channel_p.len(),
                labels: self.channels.len(),
            });
        }
        for row in &self.channel_p {
            if row.len() != points {
                return Err(ValidationError::LengthMismatch {
                    field: "channel_p row",
                    expected: points,
                    found: row.len(),
                });
            }
            check_probabilities("channel_p", row)?;
        }
        Ok(())
    }
}

/// The current lower bound of a patient's seizure probability on points that are not final
/// yet (docs/ALERTS.md, "Early alerting"). Provisional: never stored as the record, and
/// replaced by the next one; the final [`SeizureProbability`] of a point can only be at or
/// above its provisional value.
///
/// Point `i` covers `[start_ns + i*step_ns, start_ns + (i+1)*step_ns)`. NaN means "not
/// evaluated yet" (no window has covered the point, or its windows were not evaluable), never
/// "no seizure". Only the aggregate over channels is carried: it is what screens and alerts
/// use, and it keeps a record per model step at a few KiB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionalProbability {
    /// Patient; the Kafka key.
    pub patient_id: String,
    /// Start of the first point, UTC ns since the Unix epoch.
    pub start_ns: i64,
    /// Grid step in ns.
    pub step_ns: i64,
    /// NaN-aware max over channels of the windows run so far, per point.
    #[serde(with = "serde_fields::vector")]
    pub aggregate_p: Vec<f32>,
    /// The model that produced the values.
    pub model: ModelRef,
    /// When inference emitted the record, UTC ns since the Unix epoch.
    pub emitted_ns: i64,
}

impl Validate for ProvisionalProbability {
    fn validate(&self, limits: &RecordLimits) -> Result<(), ValidationError> {
        check_probability_grid(
            "provisional probability",
            (&self.patient_id, &self.model),
            (self.start_ns, self.step_ns, self.emitted_ns),
            &self.aggregate_p,
            limits,
        )
    }
}

/// The condition an alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Aggregate seizure probability above threshold long enough (hysteresis).
    Seizure,
    /// Seizure burden >= 90% of the last 5 minutes.
    SustainedSeizureBurden,
    /// Heart rate above the patient's band for long enough.
    Tachycardia,
    /// Heart rate below the patient's band for long enough.
    Bradycardia,
    /// No samples from the patient's stream for too long.
    SignalLoss,
}

/// A step in an alert's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertTransition {
    /// The condition started.
    Raised,
    /// A clinician acknowledged it.
    Acknowledged,
    /// Nobody acknowledged it in time.
    Escalated,
    /// The condition ended.
    Resolved,
    /// A seizure alert raised early, on provisional values, got its final onset, earlier than
    /// the one it was raised with: `onset_ns` is the refined onset. Not a change of state
    /// (docs/ALERTS.md, "Early alerting").
    OnsetRefined,
}

/// Measurements that justified a transition; absent fields were not part of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertEvidence {
    /// Aggregate seizure probability.
    #[serde(default)]
    pub p: Option<f32>,
    /// Seizure burden (fraction of the burden window).
    #[serde(default)]
    pub burden: Option<f32>,
    /// Heart rate in bpm.
    #[serde(default)]
    pub bpm: Option<f32>,
    /// Heart-rate baseline (median of the baseline window) before an ictal rise, in bpm.
    #[serde(default)]
    pub baseline_bpm: Option<f32>,
    /// Ictal tachycardia: the rise over `baseline_bpm` seen during the alert, in bpm.
    #[serde(default)]
    pub hr_rise_bpm: Option<f32>,
    /// RMSSD of the RR intervals in the policy's window, in ms (heart-rate variability).
    #[serde(default)]
    pub rmssd_ms: Option<f32>,
}

/// One transition of one alert. The alert's state is the fold of its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertEvent {
    /// Stable id of the alert across all its transitions.
    pub alert_id: Uuid,
    /// Patient; the Kafka key.
    pub patient_id: String,
    /// Condition.
    pub kind: AlertKind,
    /// What happened.
    pub transition: AlertTransition,
    /// When the condition began (signal time), UTC ns.
    pub onset_ns: i64,
    /// When this transition happened, UTC ns.
    pub at_ns: i64,
    /// User who acknowledged; required for acknowledgements.
    #[serde(default)]
    pub by: Option<String>,
    /// Measurements behind the transition.
    #[serde(default)]
    pub evidence: AlertEvidence,
}

impl Validate for AlertEvent {
    fn validate(&self, limits: &RecordLimits) -> Result<(), ValidationError> {
        check_identifier("patient_id", &self.patient_id, limits.max_label_len)?;
        check_time("onset_ns", self.onset_ns)?;
        check_time("at_ns", self.at_ns)?;
        match (&self.transition, &self.by) {
            (AlertTransition::Acknowledged, None) => return Err(ValidationError::AckWithoutUser),
            (_, Some(user)) => check_identifier("by", user, limits.max_label_len)?,
            _ => {}
        }
        if let Some(p) = self.evidence.p {
            check_probabilities("evidence.p", &[p])?;
        }
        if let Some(burden) = self.evidence.burden {
            check_probabilities("evidence.burden", &[burden])?;
        }
        let heart = [
            ("evidence.bpm", self.evidence.bpm, 0.0..400.0),
            (
                "evidence.baseline_bpm",
                self.evidence.baseline_bpm,
                0.0..400.0,
            ),
            (
                "evidence.hr_rise_bpm",
                self.evidence.hr_rise_bpm,
                -400.0..400.0,
            ),
            ("evidence.rmssd_ms", self.evidence.rmssd_ms, 0.0..10_000.0),
        ];
        for (field, value, range) in heart {
            if let Some(value) = value.filter(|v| !range.contains(v)) {
                return Err(ValidationError::HeartValue {
                    index: 0,
                    field,
                    value,
                    range: "finite, within the field's physiological range",
                });
            }
        }
        Ok(())
    }
}

/// A record a stage could not process, with the reason, kept for audit on `vigil.dlq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    /// Stage that refused the record (`ingest`, `inference`, `storage`, ...).
    pub stage: String,
    /// Topic the record came from; empty when it never reached the bus (ingest).
    pub source_topic: String,
    /// Partition it came from, -1 when not from the bus.
    pub partition: i32,
    /// Offset it came from, -1 when not from the bus.
    pub offset: i64,
    /// Key of the refused record.
    #[serde(with = "serde_fields::bytes")]
    pub key: Vec<u8>,
    /// The refused bytes, cut to [`DeadLetter::MAX_PAYLOAD`].
    #[serde(with = "serde_fields::bytes")]
    pub payload: Vec<u8>,
    /// Whether `payload` was cut.
    pub truncated: bool,
    /// Human-readable reason (the error message).
    pub reason: String,
    /// When it was refused, UTC ns since the Unix epoch.
    pub at_ns: i64,
}

impl DeadLetter {
    /// Most payload bytes kept, so a dead letter always fits a record.
    pub const MAX_PAYLOAD: usize = 256 * 1024;
    /// Longest reason kept.
    pub const MAX_REASON: usize = 4096;

    /// Builds a dead letter, cutting payload and reason to their limits.
    pub fn new(
        stage: &str,
        source: Option<(&str, i32, i64)>,
        key: &[u8],
        payload: &[u8],
        reason: &str,
        at_ns: i64,
    ) -> Self {
        let (source_topic, partition, offset) = source.unwrap_or(("", -1, -1));
        let truncated = payload.len() > Self::MAX_PAYLOAD;
        let mut reason_end = reason.len().min(Self::MAX_REASON);
        while !reason.is_char_boundary(reason_end) {
            reason_end -= 1;
        }
        Self {
            stage: stage.to_owned(),
            source_topic: source_topic.to_owned(),
            partition,
            offset,
            key: key[..key.len().min(1024)].to_vec(),
            payload: payload[..payload.len().min(Self::MAX_PAYLOAD)].to_vec(),
            truncated,
            reason: reason[..reason_end].to_owned(),
            at_ns,
        }
    }
}

impl Validate for DeadLetter {
    fn validate(&self, limits: &RecordLimits) -> Result<(), ValidationError> {
        check_identifier("stage", &self.stage, limits.max_label_len)?;
        check_text("source_topic", &self.source_topic, 249)?;
        check_text("reason", &self.reason, Self::MAX_REASON)?;
        check_time("at_ns", self.at_ns)?;
        if self.key.len() > 1024 {
            return Err(ValidationError::TextTooLong {
                field: "key",
                found: self.key.len(),
                max: 1024,
            });
        }
        if self.payload.len() > Self::MAX_PAYLOAD {
            return Err(ValidationError::TextTooLong {
                field: "payload",
                found: self.payload.len(),
                max: Self::MAX_PAYLOAD,
            });
        }
        Ok(())
    }
}
