//! The one loop of every consumer-group stage (storage, inference, the dashboard feed):
//! consume, decode with the bus's record limits, refuse what cannot be used (to `vigil.dlq`
//! with the reason, or logged and skipped), hand the rest to the stage, and acknowledge each
//! record once the stage says its effect is durable. A failed receive backs off and retries
//! while the `bus` readiness check fails; typed events log and count both.
//!
//! Acknowledgement is by ticket. Every record gets one; the stage completes it (at once, after
//! its database transaction, or once its outputs are on the broker), and a partition's offset
//! advances only over its contiguous prefix of completed records ([`OffsetTracker`]), so records
//! may finish in any order and a commit never skips one still in progress. A ticket never
//! completed (say, a shutdown while the database is down) leaves its record to be redelivered
//! after a restart: docs/RELIABILITY.md.

mod offsets;
mod retry;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use offsets::{OffsetTracker, Ticket};
pub use retry::{Backoff, FlushDeadline, RetryPolicy};

use crate::bus::{Bus, BusConsumer, BusError, BusMessage, Topic};
use crate::codec::{self, DecodeLimits};
use crate::record::DeadLetter;
use crate::telemetry::events::{Emit, ReceiveFailed, RecordConsumed, RecordRefused};
use crate::telemetry::Readiness;
use crate::CancellationToken;

/// What a stage made of one consumed record.
#[derive(Debug)]
pub enum Decoded<R> {
    /// Hand it to the stage.
    Record(R),
    /// Nothing to do with it (e.g. too old to show): acknowledged as it is.
    Skip,
    /// Not usable, with the reason.
    Refuse(String),
}

impl<R> Decoded<R> {
    /// A decoder's result: the record, or refused with the decoder's message.
    pub fn from_result<E: std::fmt::Display>(result: Result<R, E>) -> Self {
        match result {
            Ok(record) => Self::Record(record),
            Err(err) => Self::Refuse(err.to_string()),
        }
    }
}

/// A decoded record handed to the stage, with the ticket to complete once its effect is
/// durable.
#[derive(Debug)]
pub struct Delivery<R> {
    /// Complete it through [`Completions`].
    pub ticket: Ticket,
    /// The record as consumed.
    pub msg: BusMessage,
    /// The decoded record.
    pub record: R,
}

/// Where a stage reports done tickets; cheap to clone, usable from any task or thread.
#[derive(Debug, Clone)]
pub struct Completions(mpsc::UnboundedSender<Ticket>);

impl Completions {
    /// A completions sender and the receiver of its tickets (what the runner holds; for tests
    /// of a stage's parts without a runner).
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Ticket>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Says the record of `ticket` has had its effect.
    pub fn complete(&self, ticket: Ticket) {
        // The runner is gone only at the very end of a shutdown: nothing is acknowledged then,
        // and the record is redelivered after a restart.
        let _ = self.0.send(ticket);
    }
}

/// What a stage does with the records it consumes.
#[async_trait]
pub trait StageHandler: Send {
    /// A decoded record.
    type Record: Send;
    /// Why the stage stopped.
    type Error: From<BusError> + Send;
    /// Decodes one record (with the bus's record limits).
    fn decode(&self, msg: &BusMessage, limits: &DecodeLimits) -> Decoded<Self::Record>;
    /// Takes a batch of decoded records, in consumption order. Each ticket is completed
    /// through the stage's [`Completions`] once that record's effect is durable, now or later.
    async fn handle(&mut self, batch: Vec<Delivery<Self::Record>>) -> Result<(), Self::Error>;
    /// Called every [`StageOptions::tick`], with the records not yet completed.
    fn tick(&mut self, in_flight: usize) {
        let _ = in_flight;
    }
    /// Partitions `(topic, partition)` this member held at the previous tick and no longer
    /// holds (the group rebalanced): state kept for their keys belongs to their new owner now.
    /// Checked every [`StageOptions::tick`], before [`StageHandler::tick`].
    async fn revoked(&mut self, partitions: Vec<(String, i32)>) -> Result<(), Self::Error> {
        let _ = partitions;
        Ok(())
    }
    /// Called once after the last batch, at shutdown: finish what was handed over. Tickets
    /// completed before it returns are acknowledged before the consumer leaves.
    async fn stop(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// What becomes of records a stage refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusals {
    /// Published to `vigil.dlq` with the reason, then acknowledged (a stage that owns the
    /// record's fate: storage, inference).
    DeadLetter,
    /// Logged, counted and acknowledged (a reader that another stage already dead-letters
    /// for: the dashboard).
    Skip,
}

/// How the runner feeds a stage.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Most records per [`StageHandler::handle`] call.
    pub batch_max_records: usize,
    /// After the first record of a batch, how long to wait for more.
    pub batch_max_wait: Duration,
    /// Refused records.
    pub refusals: Refusals,
    /// Period of [`StageHandler::tick`] (none when `None`).
    pub tick: Option<Duration>,
    /// Receive and dead-letter retries.
    pub retry: RetryPolicy,
}

impl StageOptions {
    /// One record per call, no tick, default retries.
    pub fn one_at_a_time(refusals: Refusals) -> Self {
        Self {
            batch_max_records: 1,
            batch_max_wait: Duration::ZERO,
            refusals,
            tick: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// Publishes a stage's dead letters, retrying while the bus refuses.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    bus: Bus,
    stage: &'static str,
    retry: RetryPolicy,
}

impl DeadLetters {
    /// Publishes a dead letter for `msg`. False when `deadline` passed first (the record must
    /// then stay unacknowledged). A record of `vigil.dlq` itself is never dead-lettered again
    /// (that would loop): it is logged and skipped.
    pub async fn publish(
        &self,
        msg: &BusMessage,
        reason: &str,
        deadline: &FlushDeadline<'_>,
    ) -> bool {
        let dlq = self.bus.topic(Topic::Dlq);
        let refused = |dead_lettered| RecordRefused {
            stage: self.stage,
            topic: &msg.topic,
            reason,
            dead_lettered,
        };
        if msg.topic == dlq {
            refused(false).emit();
            return true;
        }
        let letter = DeadLetter::new(
            self.stage,
            Some((msg.topic.as_str(), msg.partition, msg.offset)),
            &msg.key,
            &msg.payload,
            reason,
            crate::time::now_ns(),
        );
        let payload = match codec::encode(&letter) {
            Ok(payload) => payload,
            Err(err) => {
                // DeadLetter::new cuts every field to fit, so this is a bug, not the data.
                tracing::error!(%err, "cannot encode a dead letter; the refused record is skipped");
                refused(false).emit();
                return true;
            }
        };
        let mut backoff = Backoff::new(&self.retry);
        loop {
            match self.bus.publish(&dlq, &msg.key, &payload).await {
                Ok(_) => {
                    refused(true).emit();
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

/// A subscribed stage, ready to run a [`StageHandler`].
pub struct StageRunner {
    stage: &'static str,
    group: String,
    consumer: Box<dyn BusConsumer>,
    readiness: Readiness,
    options: StageOptions,
    /// The bus's record limits, for every decode.
    limits: DecodeLimits,
    /// Built once: refusals are published from the loop without cloning the bus per batch.
    dead_letters: DeadLetters,
    tracker: OffsetTracker,
    /// The assignment seen at the last tick.
    assigned: HashSet<(String, i32)>,
    done_tx: mpsc::UnboundedSender<Ticket>,
    done_rx: mpsc::UnboundedReceiver<Ticket>,
}

/// What woke the runner.
enum Wake {
    Stop,
    Done(Ticket),
    Tick,
    Received(Result<BusMessage, BusError>),
}

impl StageRunner {
    /// Joins `group` on `topics` (the consumer is live when this returns) and sets the `bus`
    /// readiness check.
    pub async fn subscribe(
        bus: &Bus,
        stage: &'static str,
        group: &str,
        topics: &[Topic],
        readiness: Readiness,
        options: StageOptions,
    ) -> Result<Self, BusError> {
        let names: Vec<String> = topics.iter().map(|t| bus.topic(*t)).collect();
        let consumer = bus.subscribe(group, &names).await?;
        readiness.set("bus", true, format!("consuming as {group}"));
        tracing::info!(stage, group, topics = ?names, "stage consuming");
        let (Completions(done_tx), done_rx) = Completions::channel();
        Ok(Self {
            stage,
            group: group.to_owned(),
            consumer,
            readiness,
            limits: DecodeLimits {
                max_record_bytes: bus.max_record_bytes(),
                ..DecodeLimits::default()
            },
            dead_letters: DeadLetters {
                bus: bus.clone(),
                stage,
                retry: options.retry,
            },
            options,
            tracker: OffsetTracker::default(),
            assigned: HashSet::new(),
            done_tx,
            done_rx,
        })
    }

    /// Where the stage completes tickets.
    pub fn completions(&self) -> Completions {
        Completions(self.done_tx.clone())
    }

    /// The stage's dead-letter publisher (for records refused after decoding, e.g. by the
    /// database).
    pub fn dead_letters(&self) -> DeadLetters {
        self.dead_letters.clone()
    }

    /// Feeds `handler` until `shutdown` (or the bus closes), then stops it, acknowledges what
    /// it completed, commits and leaves the group.
    pub async fn run<H: StageHandler>(
        mut self,
        mut handler: H,
        shutdown: &CancellationToken,
    ) -> Result<(), H::Error> {
        let mut ticker =
            tokio::time::interval(self.options.tick.unwrap_or(Duration::from_secs(3600)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Backoff::new(&self.options.retry);
        let mut result = Ok(());
        // What is assigned already (memory:// assigns on subscribing; Kafka once the group
        // formed, seen at a later tick).
        self.assigned = self
            .consumer
            .assignment()
            .unwrap_or_default()
            .into_iter()
            .collect();
        loop {
            let wake = tokio::select! {
                biased;
                () = shutdown.cancelled() => Wake::Stop,
                Some(ticket) = self.done_rx.recv() => Wake::Done(ticket),
                _ = ticker.tick(), if self.options.tick.is_some() => Wake::Tick,
                received = self.consumer.recv() => Wake::Received(received),
            };
            let first = match wake {
                Wake::Stop | Wake::Received(Err(BusError::Closed)) => break,
                Wake::Done(ticket) => {
                    self.ack(ticket);
                    continue;
                }
                Wake::Tick => {
                    if let Err(err) = self.notice_revocations(&mut handler).await {
                        result = Err(err);
                        break;
                    }
                    handler.tick(self.tracker.in_flight());
                    continue;
                }
                Wake::Received(Err(error)) => {
                    self.receive_failed(&mut backoff, &error, shutdown).await;
                    continue;
                }
                Wake::Received(Ok(msg)) => msg,
            };
            if backoff.attempts() > 0 {
                self.readiness
                    .set("bus", true, format!("consuming as {}", self.group));
                backoff = Backoff::new(&self.options.retry);
            }
            let (messages, error) = self.collect_more(first, shutdown).await;
            let deliveries = self.intake(&handler, messages, shutdown).await;
            if !deliveries.is_empty() {
                if let Err(err) = handler.handle(deliveries).await {
                    result = Err(err);
                    break;
                }
            }
            self.ack_completed();
            match error {
                Some(BusError::Closed) => break,
                Some(error) => self.receive_failed(&mut backoff, &error, shutdown).await,
                None => {}
            }
        }
        let stopped = handler.stop().await;
        self.ack_completed();
        if let Err(err) = self.consumer.close().await {
            tracing::warn!(stage = self.stage, %err, "closing the consumer");
        }
        result.and(stopped)
    }

    /// After the first record of a batch, takes what arrives within the batch wait. A receive
    /// error ends the batch and is returned with the records already received (which must still
    /// be handled: dropping them would let a later acknowledgement commit past them).
    async fn collect_more(
        &mut self,
        first: BusMessage,
        shutdown: &CancellationToken,
    ) -> (Vec<BusMessage>, Option<BusError>) {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.options.batch_max_wait;
        while batch.len() < self.options.batch_max_records {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(deadline) => break,
                msg = self.consumer.recv() => match msg {
                    Ok(msg) => batch.push(msg),
                    Err(err) => return (batch, Some(err)),
                },
            }
        }
        (batch, None)
    }

    /// Registers and decodes the records; refused ones are dead-lettered (or skipped) and
    /// acknowledged here, the rest are returned for the stage.
    async fn intake<H: StageHandler>(
        &mut self,
        handler: &H,
        messages: Vec<BusMessage>,
        shutdown: &CancellationToken,
    ) -> Vec<Delivery<H::Record>> {
        let deadline = FlushDeadline::new(shutdown, self.options.retry.shutdown_budget);
        let mut deliveries = Vec::with_capacity(messages.len());
        let now_ms = crate::time::now_ns() / 1_000_000;
        for msg in messages {
            if let Some(produced_ms) = msg.timestamp_ms {
                RecordConsumed {
                    stage: self.stage,
                    topic: &msg.topic,
                    delay: Duration::from_millis(now_ms.saturating_sub(produced_ms).max(0) as u64),
                }
                .emit();
            }
            let ticket = self.tracker.register(&msg);
            match handler.decode(&msg, &self.limits) {
                Decoded::Record(record) => deliveries.push(Delivery {
                    ticket,
                    msg,
                    record,
                }),
                Decoded::Skip => self.ack(ticket),
                Decoded::Refuse(reason) => match self.options.refusals {
                    Refusals::Skip => {
                        RecordRefused {
                            stage: self.stage,
                            topic: &msg.topic,
                            reason: &reason,
                            dead_lettered: false,
                        }
                        .emit();
                        self.ack(ticket);
                    }
                    Refusals::DeadLetter => {
                        if self.dead_letters.publish(&msg, &reason, &deadline).await {
                            self.ack(ticket);
                        }
                    }
                },
            }
        }
        deliveries
    }

    async fn receive_failed(
        &mut self,
        backoff: &mut Backoff,
        error: &BusError,
        shutdown: &CancellationToken,
    ) {
        self.readiness.set("bus", false, error.to_string());
        let wait = backoff.step();
        ReceiveFailed {
            stage: self.stage,
            error,
            retry_in: wait,
        }
        .emit();
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }

    /// Tells the handler which partitions it lost since the last tick.
    async fn notice_revocations<H: StageHandler>(
        &mut self,
        handler: &mut H,
    ) -> Result<(), H::Error> {
        let Ok(now) = self.consumer.assignment() else {
            // Unknown for now (e.g. the broker is away): compare again at the next tick.
            return Ok(());
        };
        let now: HashSet<(String, i32)> = now.into_iter().collect();
        let mut revoked: Vec<(String, i32)> = self.assigned.difference(&now).cloned().collect();
        self.assigned = now;
        if revoked.is_empty() {
            return Ok(());
        }
        revoked.sort();
        tracing::info!(stage = self.stage, ?revoked, "partitions revoked");
        for (topic, partition) in &revoked {
            self.tracker.forget(topic, *partition);
        }
        handler.revoked(revoked).await
    }

    fn ack_completed(&mut self) {
        while let Ok(ticket) = self.done_rx.try_recv() {
            self.ack(ticket);
        }
    }

    fn ack(&mut self, ticket: Ticket) {
        if let Some(msg) = self.tracker.complete(ticket) {
            if let Err(err) = self.consumer.ack(&msg) {
                // Rebalanced away: the new owner re-reads it, and every stage's effects are
                // idempotent, so that is harmless.
                tracing::info!(stage = self.stage, %err, topic = %msg.topic, offset = msg.offset, "ack refused");
            }
        }
    }
}
