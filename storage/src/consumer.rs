//! `vigil store`: the consumer-group stage that makes the raw, probability, alert and
//! dead-letter topics durable.
//!
//! It runs on the shared stage runner ([`vigil_core::stage`]), which collects up to
//! `batch_max_records` records (or whatever arrived `batch_max_wait_ms` after the first one)
//! and decodes them; the stage writes them in one transaction, writes the batch's archive
//! parts, and only then completes every record of the batch, which the runner acknowledges. Effects are
//! idempotent on natural keys, so a record redelivered after a crash changes nothing.
//!
//! - Database down (transient errors): the stage stops consuming, keeps the batch, retries
//!   with exponential backoff (`retry_initial_ms` doubling up to `retry_max_ms`) and reports
//!   the `database` readiness check failing; when the database is back the same batch is
//!   written and consumption resumes. Nothing is acknowledged in between, so nothing is lost.
//! - Poison records (undecodable, invalid, or not storable) are published to `vigil.dlq` with
//!   the reason by the runner and acknowledged; a record the database refuses for good is
//!   isolated by writing the batch record by record, and only that record is dead-lettered.
//!   Undecodable records on `vigil.dlq` itself are stored as dead letters directly (no loop).
//! - Shutdown: the current batch is flushed (for at most `shutdown_flush_ms` if the database
//!   is down; unflushed records stay unacknowledged and are redelivered after a restart), the
//!   consumer commits and leaves the group.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use vigil_core::bus::{Bus, BusError, BusMessage, Topic};
use vigil_core::codec::{self, DecodeLimits, RecordKind};
use vigil_core::config::StorageConfig;
use vigil_core::record::{
    AlertEvent, DeadLetter, EegChunk, EegTrends, HrBatch, SeizureProbability,
};
use vigil_core::stage::{
    Backoff, Completions, DeadLetters, Decoded, Delivery, FlushDeadline, Refusals, RetryPolicy,
    StageHandler, StageOptions, StageRunner,
};
use vigil_core::telemetry::events::Emit;
use vigil_core::telemetry::Readiness;
use vigil_core::CancellationToken;

use crate::archive::Archive;
use crate::error::StorageError;
use crate::events::{BatchStored, WriteRetry};
use crate::store::Store;
use crate::types::{StoredDeadLetter, WriteBatch, WriteSummary};

/// Topics the stage consumes.
pub const CONSUMED_TOPICS: [Topic; 6] = [
    Topic::EegRaw,
    Topic::HrRaw,
    Topic::EegProb,
    Topic::EegTrends,
    Topic::Alerts,
    Topic::Dlq,
];

/// Why the stage stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The bus failed in a way retrying cannot fix (subscription refused, closed).
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The store failed for good.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A decoded record, ready for a write batch.
#[derive(Debug, Clone)]
enum StoredRecord {
    Eeg(EegChunk),
    Hr(HrBatch),
    Prob(SeizureProbability),
    Trends(EegTrends),
    Alert(AlertEvent),
    Letter(StoredDeadLetter),
}

/// The storage stage.
pub struct StoreStage {
    /// The database.
    pub store: Store,
    /// The bus (topics must exist).
    pub bus: Bus,
    /// Batch sizes, retry timing, archive directory.
    pub config: StorageConfig,
    /// Readiness checks to update (`bus`, `database`).
    pub readiness: Readiness,
}

impl StoreStage {
    /// Runs until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StageError> {
        self.readiness.set("database", true, "connected");
        let retry = RetryPolicy {
            initial: Duration::from_millis(self.config.retry_initial_ms),
            max: Duration::from_millis(self.config.retry_max_ms),
            shutdown_budget: Duration::from_millis(self.config.shutdown_flush_ms),
        };
        let options = StageOptions {
            batch_max_records: self.config.batch_max_records,
            batch_max_wait: Duration::from_millis(self.config.batch_max_wait_ms),
            refusals: Refusals::DeadLetter,
            tick: None,
            retry,
        };
        let runner = StageRunner::subscribe(
            &self.bus,
            "storage",
            &self.config.group,
            &CONSUMED_TOPICS,
            self.readiness.clone(),
            options,
        )
        .await?;
        let writer = BatchWriter {
            by_name: CONSUMED_TOPICS
                .iter()
                .map(|t| (self.bus.topic(*t), *t))
                .collect(),
            archive: (!self.config.archive_dir.as_os_str().is_empty())
                .then(|| Archive::new(self.config.archive_dir.clone())),
            completions: runner.completions(),
            dead_letters: runner.dead_letters(),
            store: self.store,
            readiness: self.readiness,
            retry,
            shutdown: shutdown.clone(),
        };
        if let Some(archive) = &writer.archive {
            // Parts a crash left pending are rewritten before new work.
            writer
                .retry_until_done(|| archive.write_pending(&writer.store))
                .await;
        }
        runner.run(writer, &shutdown).await?;
        tracing::info!("storage stage stopped: offsets committed, group left");
        Ok(())
    }
}

/// Writes each batch in one transaction (then its archive parts) and completes its records.
struct BatchWriter {
    store: Store,
    by_name: HashMap<String, Topic>,
    archive: Option<Archive>,
    completions: Completions,
    dead_letters: DeadLetters,
    readiness: Readiness,
    retry: RetryPolicy,
    shutdown: CancellationToken,
}

/// Result of trying to make a batch durable.
enum Flush {
    /// Durable: acknowledge the batch.
    Durable,
    /// Shutdown came while the database was down: leave the batch unacknowledged.
    Abandoned,
}

#[async_trait]
impl StageHandler for BatchWriter {
    type Record = StoredRecord;
    type Error = StageError;

    fn decode(&self, msg: &BusMessage, limits: &DecodeLimits) -> Decoded<StoredRecord> {
        decode(msg, self.by_name.get(&msg.topic).copied(), limits)
    }

    async fn handle(&mut self, batch: Vec<Delivery<StoredRecord>>) -> Result<(), StageError> {
        match self.flush(&batch).await {
            Flush::Durable => {
                for delivery in &batch {
                    self.completions.complete(delivery.ticket);
                }
            }
            Flush::Abandoned => tracing::warn!(
                records = batch.len(),
                "shutdown while the database is unavailable: batch left unacknowledged, it \
                 is redelivered after a restart"
            ),
        }
        Ok(())
    }
}

/// Decodes one message; refusals name the reason.
fn decode(msg: &BusMessage, topic: Option<Topic>, limits: &DecodeLimits) -> Decoded<StoredRecord> {
    fn stored<T>(
        decoded: Result<T, codec::CodecError>,
        wrap: impl FnOnce(T) -> StoredRecord,
    ) -> Decoded<StoredRecord> {
        Decoded::from_result(decoded.map(wrap))
    }
    match topic {
        Some(Topic::EegRaw) => match codec::decode::<EegChunk>(&msg.payload, limits) {
            Ok(c) if i64::try_from(c.seq).is_err() => {
                Decoded::Refuse(format!("seq {} exceeds the stored range", c.seq))
            }
            decoded => stored(decoded, StoredRecord::Eeg),
        },
        Some(Topic::HrRaw) => match codec::decode::<HrBatch>(&msg.payload, limits) {
            Ok(b) if i64::try_from(b.seq).is_err() => {
                Decoded::Refuse(format!("seq {} exceeds the stored range", b.seq))
            }
            decoded => stored(decoded, StoredRecord::Hr),
        },
        // Provisional lower bounds share the topic; final values are the record.
        Some(Topic::EegProb)
            if codec::peek_kind(&msg.payload, limits)
                .is_ok_and(|kind| kind == RecordKind::ProvisionalProbability) =>
        {
            Decoded::Skip
        }
        Some(Topic::EegProb) => stored(codec::decode(&msg.payload, limits), StoredRecord::Prob),
        Some(Topic::EegTrends) => stored(codec::decode(&msg.payload, limits), StoredRecord::Trends),
        Some(Topic::Alerts) => stored(codec::decode(&msg.payload, limits), StoredRecord::Alert),
        Some(Topic::Dlq) => {
            // Never dead-letter a dead letter (loop): keep undecodable ones as they are.
            let letter = codec::decode::<DeadLetter>(&msg.payload, limits).unwrap_or_else(|err| {
                DeadLetter::new(
                    "unknown",
                    Some((msg.topic.as_str(), msg.partition, msg.offset)),
                    &msg.key,
                    &msg.payload,
                    &format!("undecodable dead letter: {err}"),
                    vigil_core::time::now_ns(),
                )
            });
            Decoded::Record(StoredRecord::Letter(StoredDeadLetter {
                dlq_topic: msg.topic.clone(),
                dlq_partition: msg.partition,
                dlq_offset: msg.offset,
                letter,
            }))
        }
        _ => Decoded::Refuse(format!("unexpected topic {}", msg.topic)),
    }
}

impl BatchWriter {
    /// Makes every record of the batch durable (stored, or dead-lettered if the database
    /// refuses it for good).
    async fn flush(&self, batch: &[Delivery<StoredRecord>]) -> Flush {
        let started = Instant::now();
        let deadline = FlushDeadline::new(&self.shutdown, self.retry.shutdown_budget);
        let whole = self.write_batch_of(batch.iter().map(|d| &d.record));
        let mut refused: Vec<(&BusMessage, String)> = Vec::new();
        let summary = match self.write_with_retry(&whole, &deadline).await {
            Some(Ok(summary)) => summary,
            None => return Flush::Abandoned,
            Some(Err(err)) => {
                // The database refused the batch for good: isolate the record(s) at fault.
                tracing::error!(%err, records = batch.len(), "batch refused; writing record by record");
                let mut summary = WriteSummary::default();
                for delivery in batch {
                    let single = self.write_batch_of(std::iter::once(&delivery.record));
                    match self.write_with_retry(&single, &deadline).await {
                        Some(Ok(s)) => merge(&mut summary, s),
                        Some(Err(err)) => {
                            refused.push((&delivery.msg, format!("database refused: {err}")));
                        }
                        None => return Flush::Abandoned,
                    }
                }
                summary
            }
        };
        if let Some(archive) = &self.archive {
            for part in &summary.archive_parts {
                let done = self
                    .retry_until_done(|| archive.write_part(&self.store, part))
                    .await;
                if !done {
                    // Rows are durable and the part stays pending: it is written at the
                    // next start, so acknowledging loses nothing.
                    tracing::warn!(part = %part.part_id, "archive part left pending");
                }
            }
        }
        for (msg, reason) in &refused {
            if !self.dead_letters.publish(msg, reason, &deadline).await {
                return Flush::Abandoned;
            }
        }
        BatchStored {
            records: batch.len(),
            summary: &summary,
            latency: started.elapsed(),
        }
        .emit();
        Flush::Durable
    }

    fn write_batch_of<'a>(&self, records: impl Iterator<Item = &'a StoredRecord>) -> WriteBatch {
        let mut batch = WriteBatch {
            archive: self.archive.is_some(),
            ..WriteBatch::default()
        };
        for record in records {
            match record {
                StoredRecord::Eeg(c) => batch.eeg.push(c.clone()),
                StoredRecord::Hr(h) => batch.hr.push(h.clone()),
                StoredRecord::Prob(p) => batch.probabilities.push(p.clone()),
                StoredRecord::Trends(t) => batch.trends.push(t.clone()),
                StoredRecord::Alert(a) => batch.alerts.push(a.clone()),
                StoredRecord::Letter(l) => batch.dead_letters.push(l.clone()),
            }
        }
        batch
    }

    /// Writes with retries on transient errors. `None` when shutdown's flush deadline passed
    /// while the database was still unavailable; `Some(Err)` for a permanent refusal.
    async fn write_with_retry(
        &self,
        batch: &WriteBatch,
        deadline: &FlushDeadline<'_>,
    ) -> Option<Result<WriteSummary, StorageError>> {
        let mut backoff = Backoff::new(&self.retry);
        loop {
            match self.store.write_batch(batch).await {
                Ok(summary) => {
                    if backoff.attempts() > 0 {
                        tracing::info!(
                            attempts = backoff.attempts() + 1,
                            "database write succeeded again; resuming"
                        );
                    }
                    self.readiness.set("database", true, "writes succeed");
                    return Some(Ok(summary));
                }
                Err(err) if err.is_transient() => {
                    self.readiness.set("database", false, err.to_string());
                    let wait = backoff.step();
                    WriteRetry {
                        error: &err,
                        attempt: backoff.attempts(),
                        retry_in: wait,
                    }
                    .emit();
                    if !deadline.sleep(wait).await {
                        return None;
                    }
                }
                Err(err) => return Some(Err(err)),
            }
        }
    }

    /// Retries `op` on transient errors until it succeeds (true), fails for good, or
    /// shutdown fires (false).
    async fn retry_until_done<F, Fut, T>(&self, op: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StorageError>>,
    {
        let mut backoff = Backoff::new(&self.retry);
        loop {
            match op().await {
                Ok(_) => return true,
                Err(err) if err.is_transient() => {
                    let wait = backoff.step();
                    WriteRetry {
                        error: &err,
                        attempt: backoff.attempts(),
                        retry_in: wait,
                    }
                    .emit();
                    tokio::select! {
                        () = self.shutdown.cancelled() => return false,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Err(err) => {
                    tracing::error!(%err, "archive write failed");
                    return false;
                }
            }
        }
    }
}

fn merge(total: &mut WriteSummary, s: WriteSummary) {
    total.eeg_chunks += s.eeg_chunks;
    total.hr_points += s.hr_points;
    total.prob_points += s.prob_points;
    total.alert_events += s.alert_events;
    total.dead_letters += s.dead_letters;
    total.eeg_raw_bytes += s.eeg_raw_bytes;
    total.eeg_stored_bytes += s.eeg_stored_bytes;
    total.archive_parts.extend(s.archive_parts);
}
