//! Typed telemetry events of the storage stage: each `emit()` writes the log line and updates
//! the metric together (see `vigil_core::telemetry::events`).

use std::time::Duration;

use vigil_core::telemetry::events::Emit;

use crate::error::StorageError;
use crate::types::WriteSummary;

/// A batch committed (and archived) and its records acknowledged.
pub struct BatchStored<'a> {
    /// Records in the batch.
    pub records: usize,
    /// Rows per table.
    pub summary: &'a WriteSummary,
    /// Time from the first record of the batch to the commit.
    pub latency: Duration,
}

impl Emit for BatchStored<'_> {
    fn emit(&self) {
        let s = self.summary;
        tracing::debug!(
            records = self.records,
            eeg_chunks = s.eeg_chunks,
            hr_points = s.hr_points,
            prob_points = s.prob_points,
            alert_events = s.alert_events,
            dead_letters = s.dead_letters,
            latency_ms = self.latency.as_secs_f64() * 1e3,
            "batch stored"
        );
        metrics::counter!("vigil_storage_records_total").increment(self.records as u64);
        for (table, rows) in [
            ("eeg_chunks", s.eeg_chunks),
            ("hr_points", s.hr_points),
            ("seizure_prob", s.prob_points),
            ("alert_events", s.alert_events),
            ("dead_letters", s.dead_letters),
        ] {
            if rows > 0 {
                metrics::counter!("vigil_storage_rows_total", "table" => table)
                    .increment(rows as u64);
            }
        }
        metrics::counter!("vigil_storage_eeg_bytes_total", "form" => "raw")
            .increment(s.eeg_raw_bytes as u64);
        metrics::counter!("vigil_storage_eeg_bytes_total", "form" => "stored")
            .increment(s.eeg_stored_bytes as u64);
        metrics::histogram!("vigil_storage_batch_latency_seconds")
            .record(self.latency.as_secs_f64());
    }
}

/// A database write failed; the batch will be retried after `retry_in`.
pub struct WriteRetry<'a> {
    /// Why.
    pub error: &'a StorageError,
    /// Consecutive failures so far.
    pub attempt: u32,
    /// Wait before the next attempt.
    pub retry_in: Duration,
}

impl Emit for WriteRetry<'_> {
    fn emit(&self) {
        tracing::warn!(
            error = %self.error,
            attempt = self.attempt,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "storage write failed; consumption paused, retrying"
        );
        metrics::counter!("vigil_storage_write_retries_total", "reason" => self.error.reason())
            .increment(1);
    }
}

/// The retention job deleted old rows.
pub struct RetentionApplied<'a> {
    /// Table.
    pub table: &'a str,
    /// Rows deleted.
    pub rows: u64,
}

impl Emit for RetentionApplied<'_> {
    fn emit(&self) {
        if self.rows > 0 {
            tracing::info!(
                table = self.table,
                rows = self.rows,
                "retention deleted old rows"
            );
        }
        metrics::counter!("vigil_storage_retention_deleted_total", "table" => self.table.to_owned())
            .increment(self.rows);
    }
}
