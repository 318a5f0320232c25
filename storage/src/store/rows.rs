//! Rows as prepared for insertion and as read back, and their conversions.

use super::*;

// ---- rows as prepared for insertion ---------------------------------------------------

pub(super) struct EegRowIn {
    pub(super) patient_id: String,
    pub(super) device_id: String,
    pub(super) stream_id: String,
    pub(super) seq: i64,
    pub(super) start_ns: i64,
    pub(super) end_ns: i64,
    pub(super) received_ns: i64,
    pub(super) sample_rate_hz: f64,
    pub(super) channels: String,
    pub(super) n_samples: i64,
    pub(super) blob: Vec<u8>,
    pub(super) raw_len: usize,
    pub(super) archive_part: Option<String>,
}

pub(super) struct HrRowIn {
    pub(super) patient_id: String,
    pub(super) device_id: String,
    pub(super) stream_id: String,
    pub(super) seq: i64,
    pub(super) idx: i64,
    pub(super) t_ns: i64,
    pub(super) bpm: f32,
    pub(super) rr_ms: Option<f32>,
    pub(super) source: &'static str,
    pub(super) archive_part: Option<String>,
}

pub(super) struct ProbRowIn {
    pub(super) patient_id: String,
    pub(super) t_ns: i64,
    pub(super) step_ns: i64,
    pub(super) p: Option<f32>,
    pub(super) channels: String,
    pub(super) channel_p: String,
    pub(super) model_id: String,
    pub(super) model_sha256: String,
    pub(super) emitted_ns: i64,
    pub(super) archive_part: Option<String>,
}

/// One qEEG trend interval as written: the record in the binary codec.
pub(super) struct TrendRowIn {
    pub(super) patient_id: String,
    pub(super) stream_id: String,
    pub(super) start_ns: i64,
    pub(super) duration_ns: i64,
    pub(super) record: Vec<u8>,
    pub(super) emitted_ns: i64,
}

impl TrendRowIn {
    pub(super) fn new(trends: &EegTrends) -> Result<Self, StorageError> {
        Ok(Self {
            patient_id: trends.patient_id.clone(),
            stream_id: trends.stream_id.to_string(),
            start_ns: trends.start_ns,
            duration_ns: trends.duration_ns,
            record: codec::encode(trends).map_err(|e| StorageError::Unstorable(e.to_string()))?,
            emitted_ns: trends.emitted_ns,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct TrendRowOut {
    pub(super) id: i64,
    pub(super) start_ns: i64,
    pub(super) record: Vec<u8>,
}

impl TrendRowOut {
    /// The stored record, validated as when it was received.
    pub(super) fn decode(&self) -> Result<EegTrends, StorageError> {
        codec::decode(&self.record, &DecodeLimits::default()).map_err(|e| {
            StorageError::CorruptRow {
                table: "eeg_trends",
                id: self.id,
                reason: e.to_string(),
            }
        })
    }
}

pub(super) fn seq_i64(seq: u64) -> Result<i64, StorageError> {
    i64::try_from(seq).map_err(|_| {
        StorageError::Unstorable(format!("seq {seq} exceeds the stored range (2^63 - 1)"))
    })
}

pub(super) fn nan_to_none(p: f32) -> Option<f32> {
    (!p.is_nan()).then_some(p)
}

pub(super) fn hr_source_str(source: HrSource) -> &'static str {
    match source {
        HrSource::Ecg => "ecg",
        HrSource::Ppg => "ppg",
        HrSource::ChestStrap => "chest_strap",
        HrSource::Other => "other",
    }
}

pub(super) fn parse_hr_source(s: &str) -> Option<HrSource> {
    Some(match s {
        "ecg" => HrSource::Ecg,
        "ppg" => HrSource::Ppg,
        "chest_strap" => HrSource::ChestStrap,
        "other" => HrSource::Other,
        _ => return None,
    })
}

pub(super) fn enum_str<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(super) fn parse_enum<T: serde::de::DeserializeOwned>(
    table: &'static str,
    id: i64,
    s: &str,
) -> Result<T, StorageError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| {
        StorageError::CorruptRow {
            table,
            id,
            reason: format!("{s:?}: {e}"),
        }
    })
}

/// Compresses chunks into rows (CPU work: run off the async runtime).
pub(super) fn prepare_eeg(
    chunks: Vec<EegChunk>,
    part_ids: Vec<Option<String>>,
) -> Result<Vec<EegRowIn>, StorageError> {
    chunks
        .into_iter()
        .zip(part_ids)
        .map(|(chunk, archive_part)| {
            let encoded =
                codec::encode(&chunk).map_err(|e| StorageError::Unstorable(e.to_string()))?;
            let blob = zstd::bulk::compress(&encoded, ZSTD_LEVEL)
                .map_err(|e| StorageError::Unstorable(format!("zstd: {e}")))?;
            Ok(EegRowIn {
                seq: seq_i64(chunk.seq)?,
                end_ns: chunk.start_ns.saturating_add(chunk.duration_ns()),
                n_samples: chunk.samples_per_channel() as i64,
                channels: serde_json::to_string(&chunk.channels).unwrap_or_default(),
                patient_id: chunk.patient_id,
                device_id: chunk.device_id,
                stream_id: chunk.stream_id.to_string(),
                start_ns: chunk.start_ns,
                received_ns: chunk.received_ns,
                sample_rate_hz: chunk.sample_rate_hz,
                raw_len: encoded.len(),
                blob,
                archive_part,
            })
        })
        .collect()
}

/// Decodes a stored EEG blob back into the chunk.
pub(super) fn decode_eeg_blob(
    id: i64,
    format: &str,
    blob: &[u8],
) -> Result<EegChunk, StorageError> {
    let corrupt = |reason: String| StorageError::CorruptRow {
        table: "eeg_chunks",
        id,
        reason,
    };
    if format != EEG_BLOB_FORMAT {
        return Err(corrupt(format!("unknown blob format {format:?}")));
    }
    // Stored records were valid when written; the caps only guard against corruption.
    let limits = DecodeLimits {
        max_record_bytes: 256 * 1024 * 1024,
        record: RecordLimits {
            max_samples: 64 * 1024 * 1024,
            ..RecordLimits::default()
        },
    };
    let raw = zstd::bulk::decompress(blob, limits.max_record_bytes)
        .map_err(|e| corrupt(format!("zstd: {e}")))?;
    codec::decode::<EegChunk>(&raw, &limits).map_err(|e| corrupt(e.to_string()))
}

// ---- rows as read ---------------------------------------------------------------------

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    pub(super) id: i64,
    pub(super) username: String,
    pub(super) role: String,
    pub(super) password_hash: String,
}

impl UserRow {
    pub(super) fn into_user(self) -> Result<User, StorageError> {
        Ok(User {
            role: Role::from_str(&self.role).map_err(|e| StorageError::CorruptRow {
                table: "users",
                id: self.id,
                reason: e.to_string(),
            })?,
            id: self.id,
            username: self.username,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EegRowOut {
    pub(super) id: i64,
    pub(super) start_ns: i64,
    pub(super) blob_format: String,
    pub(super) samples: Vec<u8>,
}

#[derive(sqlx::FromRow)]
pub(super) struct HrRowOut {
    pub(super) id: i64,
    pub(super) t_ns: i64,
    pub(super) bpm: f32,
    pub(super) rr_ms: Option<f32>,
    pub(super) source: String,
    pub(super) stream_id: String,
    pub(super) seq: i64,
}

impl HrRowOut {
    pub(super) fn into_sample(self) -> Result<HrSample, StorageError> {
        let corrupt = |reason: String| StorageError::CorruptRow {
            table: "hr_points",
            id: self.id,
            reason,
        };
        Ok(HrSample {
            t_ns: self.t_ns,
            bpm: self.bpm,
            rr_ms: self.rr_ms,
            source: parse_hr_source(&self.source)
                .ok_or_else(|| corrupt(format!("source {:?}", self.source)))?,
            stream_id: Uuid::parse_str(&self.stream_id).map_err(|e| corrupt(e.to_string()))?,
            seq: u64::try_from(self.seq).map_err(|e| corrupt(e.to_string()))?,
        })
    }
}

/// A stored heart-rate point with its origin, for the archive.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HrArchiveRow {
    /// Row id.
    pub id: i64,
    /// Patient.
    pub patient_id: String,
    /// Device.
    pub device_id: String,
    /// Stream (uuid text).
    pub stream_id: String,
    /// Batch sequence number.
    pub seq: i64,
    /// Point index in the batch.
    pub idx: i64,
    /// Time, UTC ns.
    pub t_ns: i64,
    /// Beats per minute.
    pub bpm: f32,
    /// RR interval, ms.
    pub rr_ms: Option<f32>,
    /// Sensor kind.
    pub source: String,
}

/// A stored probability point (one 0.5 s grid point).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProbRow {
    /// Row id.
    pub id: i64,
    /// Patient.
    pub patient_id: String,
    /// Start of the point, UTC ns.
    pub t_ns: i64,
    /// Grid step, ns.
    pub step_ns: i64,
    /// Aggregate probability; `None` = not evaluated.
    pub p: Option<f32>,
    /// Channel labels (JSON list).
    pub channels: String,
    /// Per-channel probabilities (JSON list, `null` = not evaluated).
    pub channel_p: String,
    /// Model id.
    pub model_id: String,
    /// Model weights SHA-256.
    pub model_sha256: String,
    /// When inference emitted the point, UTC ns.
    pub emitted_ns: i64,
}

impl ProbRow {
    /// Channel labels and per-channel values (NaN = not evaluated).
    pub fn channel_values(&self) -> Result<(Vec<String>, Vec<f32>), StorageError> {
        let corrupt = |reason: String| StorageError::CorruptRow {
            table: "seizure_prob",
            id: self.id,
            reason,
        };
        let channels: Vec<String> =
            serde_json::from_str(&self.channels).map_err(|e| corrupt(e.to_string()))?;
        let values: Vec<Option<f32>> =
            serde_json::from_str(&self.channel_p).map_err(|e| corrupt(e.to_string()))?;
        if values.len() != channels.len() {
            return Err(corrupt(format!(
                "{} channel values for {} channels",
                values.len(),
                channels.len()
            )));
        }
        Ok((
            channels,
            values.into_iter().map(|v| v.unwrap_or(f32::NAN)).collect(),
        ))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AlertRowOut {
    pub(super) id: i64,
    pub(super) alert_id: String,
    pub(super) patient_id: String,
    pub(super) kind: String,
    pub(super) onset_ns: i64,
    pub(super) last_at_ns: i64,
    pub(super) state: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct AlertEventRowOut {
    pub(super) id: i64,
    pub(super) alert_id: String,
    pub(super) patient_id: String,
    pub(super) kind: String,
    pub(super) transition: String,
    pub(super) onset_ns: i64,
    pub(super) at_ns: i64,
    pub(super) by_user: Option<String>,
    pub(super) p: Option<f32>,
    pub(super) burden: Option<f32>,
    pub(super) bpm: Option<f32>,
    pub(super) baseline_bpm: Option<f32>,
    pub(super) hr_rise_bpm: Option<f32>,
    pub(super) rmssd_ms: Option<f32>,
}

impl AlertEventRowOut {
    pub(super) fn into_event(self) -> Result<AlertEvent, StorageError> {
        Ok(AlertEvent {
            alert_id: Uuid::parse_str(&self.alert_id).map_err(|e| StorageError::CorruptRow {
                table: "alert_events",
                id: self.id,
                reason: e.to_string(),
            })?,
            kind: parse_enum("alert_events", self.id, &self.kind)?,
            transition: parse_enum("alert_events", self.id, &self.transition)?,
            patient_id: self.patient_id,
            onset_ns: self.onset_ns,
            at_ns: self.at_ns,
            by: self.by_user,
            evidence: AlertEvidence {
                p: self.p,
                burden: self.burden,
                bpm: self.bpm,
                baseline_bpm: self.baseline_bpm,
                hr_rise_bpm: self.hr_rise_bpm,
                rmssd_ms: self.rmssd_ms,
            },
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct PartRow {
    pub(super) part_id: String,
    pub(super) kind: String,
    pub(super) patient_id: String,
    pub(super) utc_day: String,
}
