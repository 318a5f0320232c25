//! Typed telemetry events of the gateway: each `emit()` writes the log line and updates the
//! metric together (see `vigil_core::telemetry::events`).
//!
//! Metrics: `vigil_ingest_accepted_total{kind}`, `vigil_ingest_accepted_bytes_total{kind}`,
//! `vigil_ingest_rejected_total{reason}`, `vigil_ingest_duplicates_total{kind}`,
//! `vigil_ingest_gaps_total{kind}`, `vigil_ingest_late_total{kind}`,
//! `vigil_ingest_seq_refused_total{kind, reason}`, `vigil_ingest_produce_latency_seconds{kind}`
//! (histogram).

use std::time::Duration;

use vigil_core::telemetry::events::Emit;

use crate::streams::{Gap, StreamKind};

fn kind_label(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Eeg => "eeg",
        StreamKind::Hr => "hr",
    }
}

/// A record the broker acknowledged.
pub struct RecordAccepted<'a> {
    /// Record kind.
    pub kind: StreamKind,
    /// Device.
    pub device_id: &'a str,
    /// Sequence number.
    pub seq: u64,
    /// Request body bytes.
    pub bytes: usize,
    /// Time from publish call to broker acknowledgement.
    pub produce_latency: Duration,
}

impl Emit for RecordAccepted<'_> {
    fn emit(&self) {
        tracing::debug!(
            kind = kind_label(self.kind),
            device_id = self.device_id,
            seq = self.seq,
            bytes = self.bytes,
            produce_ms = self.produce_latency.as_secs_f64() * 1e3,
            "record accepted"
        );
        let kind = kind_label(self.kind);
        metrics::counter!("vigil_ingest_accepted_total", "kind" => kind).increment(1);
        metrics::counter!("vigil_ingest_accepted_bytes_total", "kind" => kind)
            .increment(self.bytes as u64);
        metrics::histogram!("vigil_ingest_produce_latency_seconds", "kind" => kind)
            .record(self.produce_latency.as_secs_f64());
    }
}

/// A request or frame refused.
pub struct RecordRejected<'a> {
    /// Stable reason label (`IngestError::reason`).
    pub reason: &'static str,
    /// Device, when authenticated.
    pub device_id: Option<&'a str>,
}

impl Emit for RecordRejected<'_> {
    fn emit(&self) {
        tracing::debug!(
            reason = self.reason,
            device_id = self.device_id,
            "record rejected"
        );
        metrics::counter!("vigil_ingest_rejected_total", "reason" => self.reason).increment(1);
    }
}

/// A resend of an already accepted record (not produced again).
pub struct DuplicateRecord<'a> {
    /// Record kind.
    pub kind: StreamKind,
    /// Device.
    pub device_id: &'a str,
    /// Sequence number.
    pub seq: u64,
}

impl Emit for DuplicateRecord<'_> {
    fn emit(&self) {
        tracing::debug!(
            kind = kind_label(self.kind),
            device_id = self.device_id,
            seq = self.seq,
            "duplicate record not produced again"
        );
        metrics::counter!("vigil_ingest_duplicates_total", "kind" => kind_label(self.kind))
            .increment(1);
    }
}

/// Records skipped in a stream.
pub struct SequenceGap<'a> {
    /// Record kind.
    pub kind: StreamKind,
    /// Device.
    pub device_id: &'a str,
    /// The gap.
    pub gap: Gap,
}

impl Emit for SequenceGap<'_> {
    fn emit(&self) {
        tracing::warn!(
            kind = kind_label(self.kind),
            device_id = self.device_id,
            expected = self.gap.expected,
            got = self.gap.got,
            "sequence gap"
        );
        metrics::counter!("vigil_ingest_gaps_total", "kind" => kind_label(self.kind)).increment(1);
    }
}

/// A record accepted after a higher seq of its stream (also counted as accepted).
pub struct LateRecord<'a> {
    /// Record kind.
    pub kind: StreamKind,
    /// Device.
    pub device_id: &'a str,
    /// Sequence number.
    pub seq: u64,
    /// How far below the stream's highest seq it was.
    pub behind: u64,
}

impl Emit for LateRecord<'_> {
    fn emit(&self) {
        tracing::info!(
            kind = kind_label(self.kind),
            device_id = self.device_id,
            seq = self.seq,
            behind = self.behind,
            "late record accepted"
        );
        metrics::counter!("vigil_ingest_late_total", "kind" => kind_label(self.kind)).increment(1);
    }
}

/// A record refused by its sequence number: a conflicting resend or one below the window.
/// Warned about because a correct device never sends either.
pub struct SeqRefused<'a> {
    /// Record kind.
    pub kind: StreamKind,
    /// Device.
    pub device_id: &'a str,
    /// Sequence number.
    pub seq: u64,
    /// `seq_conflict` or `seq_below_window` (`IngestError::reason`).
    pub reason: &'static str,
}

impl Emit for SeqRefused<'_> {
    fn emit(&self) {
        tracing::warn!(
            kind = kind_label(self.kind),
            device_id = self.device_id,
            seq = self.seq,
            reason = self.reason,
            "record refused by its sequence number"
        );
        metrics::counter!(
            "vigil_ingest_seq_refused_total",
            "kind" => kind_label(self.kind),
            "reason" => self.reason
        )
        .increment(1);
    }
}
