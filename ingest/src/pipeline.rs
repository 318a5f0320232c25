//! The path every record takes, whether it came over HTTP or WebSocket: authorize against
//! the token's device, check the registration, classify the sequence number, correct the
//! clock, produce, and only then acknowledge.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vigil_core::bus::{BusError, Topic};
use vigil_core::codec::{self, CodecError, DecodeLimits, Record};
use vigil_core::record::{EegChunk, HrBatch};
use vigil_core::telemetry::events::Emit;

use crate::devices::RegisteredDevice;
use crate::error::IngestError;
use crate::events::{DuplicateRecord, LateRecord, RecordAccepted, SeqRefused, SequenceGap};
use crate::streams::{Gap, SeqCheck, StreamKey, StreamKind};
use crate::IngestState;

/// Whether a record was produced now or had been already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    /// Produced now; the broker acknowledged it durably (`late` tells whether it came after
    /// a higher seq of its stream).
    Accepted,
    /// Already accepted before (a resend); not produced again.
    Duplicate,
}

/// The 202 body of `POST /v1/eeg` and `POST /v1/hr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IngestAck {
    /// The record's stream.
    pub stream_id: Uuid,
    /// The record's sequence number.
    pub seq: u64,
    /// `accepted` or `duplicate`.
    pub status: AckStatus,
    /// Set when records before this one are missing from the stream.
    pub gap: Option<Gap>,
    /// True when accepted after a higher seq of the stream (it arrived late; produced now,
    /// downstream treats it as late). False for duplicates.
    #[serde(default)]
    pub late: bool,
}

/// How the body is encoded, from the Content-Type (HTTP) or the frame type (WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// `application/json` (WebSocket text frames).
    Json,
    /// `application/vnd.vigil.record` or `application/octet-stream` (WebSocket binary frames).
    Binary,
}

impl WireFormat {
    /// The format named by a Content-Type value, ignoring parameters and case.
    pub fn from_content_type(value: Option<&str>) -> Result<Self, IngestError> {
        let raw = value.unwrap_or("");
        let media = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json" => Ok(Self::Json),
            "application/vnd.vigil.record" | "application/octet-stream" => Ok(Self::Binary),
            _ => Err(IngestError::UnsupportedMediaType(
                raw.chars().take(100).collect(),
            )),
        }
    }

    /// Decodes (and, through the core codec, validates) one record.
    pub fn decode<R: Record>(self, bytes: &[u8], limits: &DecodeLimits) -> Result<R, CodecError> {
        match self {
            Self::Json => codec::from_json(bytes, limits).map_err(|err| match err {
                CodecError::Json { kind, reason } => CodecError::Json {
                    kind,
                    reason: with_json_path::<R>(bytes, reason),
                },
                other => other,
            }),
            Self::Binary => codec::decode(bytes, limits),
        }
    }
}

/// Prefixes a JSON error with the path of the offending field (parsed again, only on error).
fn with_json_path<R: Record>(bytes: &[u8], reason: String) -> String {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, R>(&mut de) {
        Err(err) if !err.path().to_string().is_empty() && err.path().to_string() != "." => {
            format!("field `{}`: {reason}", err.path())
        }
        _ => reason,
    }
}

/// A record the gateway accepts from devices.
pub trait IngestRecord: Record + Send + Sync + 'static {
    /// Sequence space of the record.
    const STREAM: StreamKind;
    /// Topic it is produced to.
    const TOPIC: Topic;
    /// Patient (the Kafka key).
    fn patient_id(&self) -> &str;
    /// Device.
    fn device_id(&self) -> &str;
    /// Stream.
    fn stream_id(&self) -> Uuid;
    /// Sequence number.
    fn seq(&self) -> u64;
    /// Device time of the end of the record (for the clock offset estimate).
    fn device_end_ns(&self) -> i64;
    /// Shifts device times by `offset_ns` and stamps the server receive time.
    fn apply_clock(&mut self, offset_ns: i64, received_ns: i64);
    /// 64-bit hash of the fields the device sets besides the `(stream, seq)` key, as sent
    /// (before [`IngestRecord::apply_clock`]): equal for a faithful resend, whatever its
    /// encoding. NaN samples hash alike (NaN only means "missing").
    fn content_hash(&self) -> u64;
    /// Checks the record against the device's registration.
    fn check_registration(&self, _device: &RegisteredDevice) -> Result<(), IngestError> {
        Ok(())
    }
}

fn shift(t: i64, offset: i64) -> i64 {
    t.saturating_add(offset).max(0)
}

fn float_bits(x: f32) -> u32 {
    if x.is_nan() {
        f32::NAN.to_bits()
    } else {
        x.to_bits()
    }
}

impl IngestRecord for EegChunk {
    const STREAM: StreamKind = StreamKind::Eeg;
    const TOPIC: Topic = Topic::EegRaw;
    fn patient_id(&self) -> &str {
        &self.patient_id
    }
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn stream_id(&self) -> Uuid {
        self.stream_id
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn device_end_ns(&self) -> i64 {
        self.start_ns.saturating_add(self.duration_ns())
    }
    fn apply_clock(&mut self, offset_ns: i64, received_ns: i64) {
        self.start_ns = shift(self.start_ns, offset_ns);
        self.received_ns = received_ns;
    }
    /// `received_ns` is left out: the gateway overwrites whatever the device put there.
    fn content_hash(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.start_ns.hash(&mut h);
        self.sample_rate_hz.to_bits().hash(&mut h);
        self.channels.hash(&mut h);
        std::mem::discriminant(&self.unit).hash(&mut h);
        for channel in &self.samples {
            h.write_usize(channel.len());
            for &x in channel {
                h.write_u32(float_bits(x));
            }
        }
        h.finish()
    }
    fn check_registration(&self, device: &RegisteredDevice) -> Result<(), IngestError> {
        if let Some(rate) = device.sample_rate_hz {
            if (self.sample_rate_hz - rate).abs() > 1e-9 * rate.abs().max(1.0) {
                return Err(IngestError::RegistrationMismatch {
                    field: "sample_rate_hz",
                    registered: format!("{rate} Hz"),
                    found: format!("{} Hz", self.sample_rate_hz),
                });
            }
        }
        if let Some(channels) = &device.channels {
            if *channels != self.channels {
                return Err(IngestError::RegistrationMismatch {
                    field: "channels",
                    registered: channels.join(","),
                    found: self.channels.join(","),
                });
            }
        }
        Ok(())
    }
}

impl IngestRecord for HrBatch {
    const STREAM: StreamKind = StreamKind::Hr;
    const TOPIC: Topic = Topic::HrRaw;
    fn patient_id(&self) -> &str {
        &self.patient_id
    }
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn stream_id(&self) -> Uuid {
        self.stream_id
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn device_end_ns(&self) -> i64 {
        self.points.last().map_or(0, |p| p.t_ns)
    }
    /// `HrBatch` has no `received_ns` field: only the point times are corrected.
    fn apply_clock(&mut self, offset_ns: i64, _received_ns: i64) {
        for point in &mut self.points {
            point.t_ns = shift(point.t_ns, offset_ns);
        }
    }
    fn content_hash(&self) -> u64 {
        let mut h = DefaultHasher::new();
        std::mem::discriminant(&self.source).hash(&mut h);
        h.write_usize(self.points.len());
        for p in &self.points {
            p.t_ns.hash(&mut h);
            h.write_u32(float_bits(p.bpm));
            p.rr_ms.map(float_bits).hash(&mut h);
        }
        h.finish()
    }
}

/// Refuses a record naming another patient or device than the token's, or not matching the
/// device's registration.
fn authorize<R: IngestRecord>(device: &RegisteredDevice, record: &R) -> Result<(), IngestError> {
    if record.patient_id() != device.patient_id {
        return Err(IngestError::Forbidden {
            field: "patient_id",
            expected: device.patient_id.clone(),
            found: record.patient_id().to_owned(),
        });
    }
    if record.device_id() != device.device_id {
        return Err(IngestError::Forbidden {
            field: "device_id",
            expected: device.device_id.clone(),
            found: record.device_id().to_owned(),
        });
    }
    record.check_registration(device)
}

impl IngestState {
    /// Authorizes, classifies the sequence number, corrects and produces one decoded record;
    /// returns the ack only after the broker acknowledged the record durably.
    pub async fn ingest<R: IngestRecord>(
        &self,
        device: &RegisteredDevice,
        mut record: R,
        bytes: usize,
    ) -> Result<IngestAck, IngestError> {
        authorize(device, &record)?;
        let key = StreamKey {
            kind: R::STREAM,
            device_id: device.device_id.clone(),
            stream_id: record.stream_id(),
        };
        let seq = record.seq();
        let hash = record.content_hash();
        let stream = self.inner.streams.get(&key);
        // Held until the broker answered: one record of a stream in flight at a time.
        let mut state = stream.lock().await;
        let high = state.seqs.high();
        let (gap, late) = match state.seqs.check(seq, hash) {
            SeqCheck::New(gap) => (gap, false),
            SeqCheck::Late => (None, true),
            SeqCheck::Duplicate => {
                DuplicateRecord {
                    kind: R::STREAM,
                    device_id: &device.device_id,
                    seq,
                }
                .emit();
                return Ok(IngestAck {
                    stream_id: key.stream_id,
                    seq,
                    status: AckStatus::Duplicate,
                    gap: None,
                    late: false,
                });
            }
            SeqCheck::Conflict => {
                let stream_id = key.stream_id;
                return Err(refused(&key, IngestError::SeqConflict { stream_id, seq }));
            }
            SeqCheck::BelowWindow { oldest } => {
                let stream_id = key.stream_id;
                let err = IngestError::SeqBelowWindow {
                    stream_id,
                    seq,
                    oldest,
                };
                return Err(refused(&key, err));
            }
        };

        let received_ns = vigil_core::time::now_ns();
        let offset = if self.inner.correct_device_clock {
            state.clock.observe(received_ns, record.device_end_ns())
        } else {
            0
        };
        record.apply_clock(offset, received_ns);
        let produce_latency = self.publish(&device.patient_id, &record).await?;
        state.seqs.record(seq, hash);
        drop(state);

        RecordAccepted {
            kind: R::STREAM,
            device_id: &device.device_id,
            seq,
            bytes,
            produce_latency,
        }
        .emit();
        if let Some(gap) = gap {
            SequenceGap {
                kind: R::STREAM,
                device_id: &device.device_id,
                gap,
            }
            .emit();
        }
        if late {
            LateRecord {
                kind: R::STREAM,
                device_id: &device.device_id,
                seq,
                behind: high.map_or(0, |h| h.saturating_sub(seq)),
            }
            .emit();
        }
        Ok(IngestAck {
            stream_id: key.stream_id,
            seq,
            status: AckStatus::Accepted,
            gap,
            late,
        })
    }

    /// Produces `record` within the publish timeout; returns how long the broker took.
    async fn publish<R: IngestRecord>(
        &self,
        patient_id: &str,
        record: &R,
    ) -> Result<Duration, IngestError> {
        let started = Instant::now();
        let timeout = self.inner.publish_timeout;
        tokio::time::timeout(
            timeout,
            self.inner.bus.publish_record(R::TOPIC, patient_id, record),
        )
        .await
        .unwrap_or(Err(BusError::Timeout {
            op: "publish",
            after: timeout,
        }))
        .map_err(|source| IngestError::BusUnavailable {
            source,
            retry_after: self.inner.retry_after,
        })?;
        Ok(started.elapsed())
    }

    /// Decodes `bytes` in `format` as an `R` and ingests it.
    pub async fn ingest_bytes<R: IngestRecord>(
        &self,
        device: &RegisteredDevice,
        format: WireFormat,
        bytes: &[u8],
    ) -> Result<IngestAck, IngestError> {
        let record: R = format.decode(bytes, &self.inner.limits)?;
        self.ingest(device, record, bytes.len()).await
    }

    /// Retry hint sent with 503.
    pub fn retry_after(&self) -> Duration {
        self.inner.retry_after
    }
}

/// Emits the refusal of a record by its sequence check (conflict, below the window).
fn refused(key: &StreamKey, err: IngestError) -> IngestError {
    SeqRefused {
        kind: key.kind,
        device_id: &key.device_id,
        seq: err.seq().unwrap_or_default(),
        reason: err.reason(),
    }
    .emit();
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_select_the_codec() {
        assert_eq!(
            WireFormat::from_content_type(Some("Application/JSON; charset=utf-8")).ok(),
            Some(WireFormat::Json)
        );
        assert_eq!(
            WireFormat::from_content_type(Some("application/vnd.vigil.record")).ok(),
            Some(WireFormat::Binary)
        );
        assert_eq!(
            WireFormat::from_content_type(Some("application/octet-stream")).ok(),
            Some(WireFormat::Binary)
        );
        assert!(WireFormat::from_content_type(Some("text/plain")).is_err());
        assert!(WireFormat::from_content_type(None).is_err());
    }
}
