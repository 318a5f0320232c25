//! The path every record takes, whether it came over HTTP or WebSocket: authorize against
//! the token's device, check the registration, classify the sequence number, correct the
//! clock, produce, and only then acknowledge.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vigil_core::bus::{BusError, Topic};
use vigil_core::codec::{self, CodecError, DecodeLimits, Record};
use vigil_core::record::{EegChunk, HrBatch};
use vigil_core::telemetry::events::Emit;

use crate::devices::RegisteredDevice;
use crate::error::IngestError;
use crate::events::{DuplicateRecord, RecordAccepted, SequenceGap};
use crate::streams::{Gap, SeqCheck, StreamKey, StreamKind};
use crate::IngestState;

/// Whether a record was produced now or had been already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    /// Produced now; the broker acknowledged it durably.
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
    /// Checks the record against the device's registration.
    fn check_registration(&self, _device: &RegisteredDevice) -> Result<(), IngestError> {
        Ok(())
    }
}

fn shift(t: i64, offset: i64) -> i64 {
    t.saturating_add(offset).max(0)
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
}

impl IngestState {
    /// Authorizes, deduplicates, corrects and produces one decoded record; returns the ack
    /// only after the broker acknowledged the record durably.
    pub async fn ingest<R: IngestRecord>(
        &self,
        device: &RegisteredDevice,
        mut record: R,
        bytes: usize,
    ) -> Result<IngestAck, IngestError> {
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
        record.check_registration(device)?;

        let key = StreamKey {
            kind: R::STREAM,
            device_id: device.device_id.clone(),
            stream_id: record.stream_id(),
        };
        let stream = self.inner.streams.get(&key);
        // Held until the broker answered: one record of a stream in flight at a time.
        let mut state = stream.lock().await;
        let seq = record.seq();
        let gap = match state.check(seq) {
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
                });
            }
            SeqCheck::New(gap) => gap,
        };

        let received_ns = vigil_core::time::now_ns();
        let offset = if self.inner.correct_device_clock {
            state.clock.observe(received_ns, record.device_end_ns())
        } else {
            0
        };
        record.apply_clock(offset, received_ns);

        let started = Instant::now();
        let timeout = self.inner.publish_timeout;
        let published = tokio::time::timeout(
            timeout,
            self.inner
                .bus
                .publish_record(R::TOPIC, &device.patient_id, &record),
        )
        .await
        .unwrap_or(Err(BusError::Timeout {
            op: "publish",
            after: timeout,
        }));
        if let Err(source) = published {
            return Err(IngestError::BusUnavailable {
                source,
                retry_after: self.inner.retry_after,
            });
        }
        state.accepted(seq);
        drop(state);

        RecordAccepted {
            kind: R::STREAM,
            device_id: &device.device_id,
            seq,
            bytes,
            produce_latency: started.elapsed(),
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
        Ok(IngestAck {
            stream_id: key.stream_id,
            seq,
            status: AckStatus::Accepted,
            gap,
        })
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
