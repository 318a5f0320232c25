//! `vigil store`: the consumer-group stage that makes the raw, probability, alert and
//! dead-letter topics durable.
//!
//! Loop: collect up to `batch_max_records` records (or whatever arrived `batch_max_wait_ms`
//! after the first one), decode them, write them in one transaction, write the batch's
//! archive parts, and only then acknowledge every record of the batch, in order. Effects are
//! idempotent on natural keys, so a record redelivered after a crash changes nothing.
//!
//! - Database down (transient errors): the stage stops consuming, keeps the batch, retries
//!   with exponential backoff (`retry_initial_ms` doubling up to `retry_max_ms`) and reports
//!   the `database` readiness check failing; when the database is back the same batch is
//!   written and consumption resumes. Nothing is acknowledged in between, so nothing is lost.
//! - Poison records (undecodable, invalid, or not storable) are published to `vigil.dlq` with
//!   the reason and acknowledged with their batch; a record the database refuses for good is
//!   isolated by writing the batch record by record, and only that record is dead-lettered.
//!   Undecodable records on `vigil.dlq` itself are stored as dead letters directly (no loop).
//! - Shutdown: the current batch is flushed (for at most `shutdown_flush_ms` if the database
//!   is down; unflushed records stay unacknowledged and are redelivered after a restart), the
//!   consumer commits and leaves the group.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vigil_core::bus::{Bus, BusConsumer, BusError, BusMessage, Topic};
use vigil_core::codec::{self, CodecError, DecodeLimits};
use vigil_core::config::StorageConfig;
use vigil_core::record::{
    AlertEvent, DeadLetter, EegChunk, EegTrends, HrBatch, SeizureProbability,
};
use vigil_core::telemetry::events::Emit;
use vigil_core::telemetry::Readiness;
use vigil_core::CancellationToken;

use crate::archive::Archive;
use crate::error::StorageError;
use crate::events::{BatchStored, RecordDeadLettered, WriteRetry};
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
enum Decoded {
    Eeg(EegChunk),
    Hr(HrBatch),
    Prob(SeizureProbability),
    Trends(EegTrends),
    Alert(AlertEvent),
    Letter(StoredDeadLetter),
}

/// What became of one message.
enum Outcome {
    Store(Decoded),
    Poison(String),
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

/// Exponential backoff between retries.
struct Backoff {
    next: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn new(config: &StorageConfig) -> Self {
        Self {
            next: Duration::from_millis(config.retry_initial_ms),
            max: Duration::from_millis(config.retry_max_ms),
            attempt: 0,
        }
    }

    fn step(&mut self) -> Duration {
        let wait = self.next;
        self.attempt += 1;
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

/// Result of trying to make a batch durable.
enum Flush {
    /// Durable: acknowledge the batch.
    Durable,
    /// Shutdown came while the database was down: leave the batch unacknowledged.
    Abandoned,
}

impl StoreStage {
    fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_record_bytes: self.bus.max_record_bytes(),
            ..DecodeLimits::default()
        }
    }

    fn archive(&self) -> Option<Archive> {
        (!self.config.archive_dir.as_os_str().is_empty())
            .then(|| Archive::new(self.config.archive_dir.clone()))
    }

    /// Runs until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StageError> {
        let topics: Vec<String> = CONSUMED_TOPICS.iter().map(|t| self.bus.topic(*t)).collect();
        let by_name: HashMap<String, Topic> = CONSUMED_TOPICS
            .iter()
            .map(|t| (self.bus.topic(*t), *t))
            .collect();
        self.readiness.set("database", true, "connected");
        let mut consumer = self.bus.subscribe(&self.config.group, &topics).await?;
        self.readiness.set("bus", true, "subscribed");
        tracing::info!(group = %self.config.group, ?topics, "storage stage consuming");

        if let Some(archive) = self.archive() {
            // Parts a crash left pending are rewritten before new work.
            self.retry_until_done(&shutdown, || archive.write_pending(&self.store))
                .await;
        }

        let max_wait = Duration::from_millis(self.config.batch_max_wait_ms);
        let mut bus_backoff = Backoff::new(&self.config);
        loop {
            let (messages, recv_error) = collect_batch(
                consumer.as_mut(),
                self.config.batch_max_records,
                max_wait,
                &shutdown,
            )
            .await;
            if !messages.is_empty() {
                let started = Instant::now();
                match self.flush(&messages, &by_name, &shutdown).await {
                    Flush::Durable => {
                        for msg in &messages {
                            if let Err(err) = consumer.ack(msg) {
                                // Rebalanced away: the new owner re-reads it; writes are
                                // idempotent, so that is harmless.
                                tracing::info!(%err, topic = %msg.topic, offset = msg.offset, "ack refused");
                            }
                        }
                        tracing::trace!(
                            records = messages.len(),
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "batch acknowledged"
                        );
                    }
                    Flush::Abandoned => {
                        tracing::warn!(
                            records = messages.len(),
                            "shutdown while the database is unavailable: batch left \
                             unacknowledged, it is redelivered after a restart"
                        );
                        break;
                    }
                }
            }
            if let Some(err) = recv_error {
                if matches!(err, BusError::Closed) {
                    break;
                }
                self.readiness.set("bus", false, err.to_string());
                let wait = bus_backoff.step();
                tracing::warn!(%err, retry_in_ms = wait.as_millis() as u64, "bus receive failed");
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            } else {
                if bus_backoff.attempt > 0 {
                    self.readiness.set("bus", true, "subscribed");
                }
                bus_backoff = Backoff::new(&self.config);
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        tracing::info!("storage stage stopping: committing offsets and leaving the group");
        consumer.close().await?;
        Ok(())
    }

    /// Decodes one message; refusals name the reason.
    fn decode(&self, msg: &BusMessage, topic: Option<Topic>, limits: &DecodeLimits) -> Outcome {
        fn refuse(err: CodecError) -> Outcome {
            Outcome::Poison(err.to_string())
        }
        match topic {
            Some(Topic::EegRaw) => match codec::decode::<EegChunk>(&msg.payload, limits) {
                Ok(c) if i64::try_from(c.seq).is_err() => {
                    Outcome::Poison(format!("seq {} exceeds the stored range", c.seq))
                }
                Ok(c) => Outcome::Store(Decoded::Eeg(c)),
                Err(e) => refuse(e),
            },
            Some(Topic::HrRaw) => match codec::decode::<HrBatch>(&msg.payload, limits) {
                Ok(b) if i64::try_from(b.seq).is_err() => {
                    Outcome::Poison(format!("seq {} exceeds the stored range", b.seq))
                }
                Ok(b) => Outcome::Store(Decoded::Hr(b)),
                Err(e) => refuse(e),
            },
            Some(Topic::EegProb) => {
                match codec::decode::<SeizureProbability>(&msg.payload, limits) {
                    Ok(p) => Outcome::Store(Decoded::Prob(p)),
                    Err(e) => refuse(e),
                }
            }
            Some(Topic::EegTrends) => match codec::decode::<EegTrends>(&msg.payload, limits) {
                Ok(t) => Outcome::Store(Decoded::Trends(t)),
                Err(e) => refuse(e),
            },
            Some(Topic::Alerts) => match codec::decode::<AlertEvent>(&msg.payload, limits) {
                Ok(a) => Outcome::Store(Decoded::Alert(a)),
                Err(e) => refuse(e),
            },
            Some(Topic::Dlq) => {
                // Never dead-letter a dead letter (loop): keep undecodable ones as they are.
                let letter =
                    codec::decode::<DeadLetter>(&msg.payload, limits).unwrap_or_else(|err| {
                        DeadLetter::new(
                            "unknown",
                            Some((msg.topic.as_str(), msg.partition, msg.offset)),
                            &msg.key,
                            &msg.payload,
                            &format!("undecodable dead letter: {err}"),
                            vigil_core::time::now_ns(),
                        )
                    });
                Outcome::Store(Decoded::Letter(StoredDeadLetter {
                    dlq_topic: msg.topic.clone(),
                    dlq_partition: msg.partition,
                    dlq_offset: msg.offset,
                    letter,
                }))
            }
            _ => Outcome::Poison(format!("unexpected topic {}", msg.topic)),
        }
    }

    /// Makes every message of the batch durable (stored or dead-lettered).
    async fn flush(
        &self,
        messages: &[BusMessage],
        by_name: &HashMap<String, Topic>,
        shutdown: &CancellationToken,
    ) -> Flush {
        let started = Instant::now();
        let limits = self.limits();
        let mut records: Vec<(usize, Decoded)> = Vec::with_capacity(messages.len());
        let mut poison: Vec<(usize, String)> = Vec::new();
        for (i, msg) in messages.iter().enumerate() {
            match self.decode(msg, by_name.get(&msg.topic).copied(), &limits) {
                Outcome::Store(d) => records.push((i, d)),
                Outcome::Poison(reason) => poison.push((i, reason)),
            }
        }
        let deadline = CancellationDeadline::new(shutdown, self.config.shutdown_flush_ms);

        let batch = self.write_batch_of(records.iter().map(|(_, d)| d));
        let summary = match self.write_with_retry(&batch, &deadline).await {
            Some(Ok(summary)) => summary,
            None => return Flush::Abandoned,
            Some(Err(err)) => {
                // The database refused the batch for good: isolate the record(s) at fault.
                tracing::error!(%err, records = records.len(), "batch refused; writing record by record");
                let mut summary = WriteSummary::default();
                for (i, d) in &records {
                    let single = self.write_batch_of(std::iter::once(d));
                    match self.write_with_retry(&single, &deadline).await {
                        Some(Ok(s)) => merge(&mut summary, s),
                        Some(Err(err)) => poison.push((*i, format!("database refused: {err}"))),
                        None => return Flush::Abandoned,
                    }
                }
                summary
            }
        };
        if let Some(archive) = self.archive() {
            for part in &summary.archive_parts {
                let done = self
                    .retry_until_done(shutdown, || archive.write_part(&self.store, part))
                    .await;
                if !done {
                    // Rows are durable and the part stays pending: it is written at the
                    // next start, so acknowledging loses nothing.
                    tracing::warn!(part = %part.part_id, "archive part left pending");
                }
            }
        }
        poison.sort_by_key(|(i, _)| *i);
        for (i, reason) in &poison {
            if !self.dead_letter(&messages[*i], reason, &deadline).await {
                return Flush::Abandoned;
            }
        }
        BatchStored {
            records: messages.len(),
            summary: &summary,
            latency: started.elapsed(),
        }
        .emit();
        Flush::Durable
    }

    fn write_batch_of<'a>(&self, records: impl Iterator<Item = &'a Decoded>) -> WriteBatch {
        let mut batch = WriteBatch {
            archive: self.archive().is_some(),
            ..WriteBatch::default()
        };
        for d in records {
            match d {
                Decoded::Eeg(c) => batch.eeg.push(c.clone()),
                Decoded::Hr(h) => batch.hr.push(h.clone()),
                Decoded::Prob(p) => batch.probabilities.push(p.clone()),
                Decoded::Trends(t) => batch.trends.push(t.clone()),
                Decoded::Alert(a) => batch.alerts.push(a.clone()),
                Decoded::Letter(l) => batch.dead_letters.push(l.clone()),
            }
        }
        batch
    }

    /// Writes with retries on transient errors. `None` when shutdown's flush deadline passed
    /// while the database was still unavailable; `Some(Err)` for a permanent refusal.
    async fn write_with_retry(
        &self,
        batch: &WriteBatch,
        deadline: &CancellationDeadline<'_>,
    ) -> Option<Result<WriteSummary, StorageError>> {
        let mut backoff = Backoff::new(&self.config);
        loop {
            match self.store.write_batch(batch).await {
                Ok(summary) => {
                    if backoff.attempt > 0 {
                        tracing::info!(
                            attempts = backoff.attempt + 1,
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
                        attempt: backoff.attempt,
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
    async fn retry_until_done<F, Fut, T>(&self, shutdown: &CancellationToken, op: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StorageError>>,
    {
        let mut backoff = Backoff::new(&self.config);
        loop {
            match op().await {
                Ok(_) => return true,
                Err(err) if err.is_transient() => {
                    let wait = backoff.step();
                    WriteRetry {
                        error: &err,
                        attempt: backoff.attempt,
                        retry_in: wait,
                    }
                    .emit();
                    tokio::select! {
                        () = shutdown.cancelled() => return false,
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

    /// Publishes a dead letter for `msg`, retrying while the bus refuses. False when the
    /// flush deadline passed first.
    async fn dead_letter(
        &self,
        msg: &BusMessage,
        reason: &str,
        deadline: &CancellationDeadline<'_>,
    ) -> bool {
        let letter = DeadLetter::new(
            "storage",
            Some((msg.topic.as_str(), msg.partition, msg.offset)),
            &msg.key,
            &msg.payload,
            reason,
            vigil_core::time::now_ns(),
        );
        let payload = match codec::encode(&letter) {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(%err, "cannot encode a dead letter; dropping the poison record");
                return true;
            }
        };
        let dlq = self.bus.topic(Topic::Dlq);
        let mut backoff = Backoff::new(&self.config);
        loop {
            match self.bus.publish(&dlq, &msg.key, &payload).await {
                Ok(_) => {
                    RecordDeadLettered {
                        topic: &msg.topic,
                        reason,
                    }
                    .emit();
                    return true;
                }
                Err(err) => {
                    let wait = backoff.step();
                    tracing::warn!(%err, retry_in_ms = wait.as_millis() as u64, "dead-letter publish failed");
                    if !deadline.sleep(wait).await {
                        return false;
                    }
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

/// Retries go on until shutdown, then for at most the flush budget.
struct CancellationDeadline<'a> {
    shutdown: &'a CancellationToken,
    budget: Duration,
    cancelled_at: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl<'a> CancellationDeadline<'a> {
    fn new(shutdown: &'a CancellationToken, budget_ms: u64) -> Self {
        Self {
            shutdown,
            budget: Duration::from_millis(budget_ms),
            cancelled_at: std::sync::Mutex::new(None),
        }
    }

    /// Sleeps `wait`; false when the flush budget after shutdown is used up.
    async fn sleep(&self, wait: Duration) -> bool {
        if self.shutdown.is_cancelled() {
            let now = tokio::time::Instant::now();
            let since = *self
                .cancelled_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(now);
            if now.duration_since(since) >= self.budget {
                return false;
            }
            tokio::time::sleep(wait.min(self.budget - now.duration_since(since))).await;
            return true;
        }
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            () = tokio::time::sleep(wait) => {}
        }
        true
    }
}

/// Receives up to `max` records: waits for the first, then takes what arrives within
/// `max_wait`. Stops early on shutdown. A receive error ends the batch and is returned with
/// the records already received (which must still be flushed: dropping them would let a
/// later acknowledgement commit past them).
pub async fn collect_batch(
    consumer: &mut dyn BusConsumer,
    max: usize,
    max_wait: Duration,
    shutdown: &CancellationToken,
) -> (Vec<BusMessage>, Option<BusError>) {
    let mut batch = Vec::new();
    tokio::select! {
        biased;
        () = shutdown.cancelled() => return (batch, None),
        msg = consumer.recv() => match msg {
            Ok(msg) => batch.push(msg),
            Err(err) => return (batch, Some(err)),
        },
    }
    let deadline = tokio::time::Instant::now() + max_wait;
    while batch.len() < max {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(deadline) => break,
            msg = consumer.recv() => match msg {
                Ok(msg) => batch.push(msg),
                Err(err) => return (batch, Some(err)),
            },
        }
    }
    (batch, None)
}
