//! `vigil infer`: the consumer-group stage from `vigil.eeg.raw` and `vigil.hr.raw` to
//! `vigil.eeg.prob`, `vigil.eeg.trace` and `vigil.alerts`.
//!
//! - The shared stage runner ([`vigil_core::stage`]) receives every record and decodes it with
//!   the bus's record limits (refused records go to `vigil.dlq` with the reason); the
//!   dispatcher routes it by patient to one of `inference.workers` shards ([`crate::shard`]).
//!   A shard is a worker thread that owns its patients' state; DSP and model work never run
//!   on the async runtime.
//! - Shards batch model windows across channels and patients, send each display trace as soon
//!   as its chunk is filtered, and hand outputs to publishing lanes ([`crate::output`]) without
//!   waiting for the broker. An input record is acknowledged once all of its outputs are
//!   delivered (its ticket is then complete), and the runner advances a partition's offset only
//!   over its contiguous done prefix.
//! - Seizure alerts are raised as soon as provisional values make them certain
//!   ([`PatientAlerts::on_provisional`], docs/ALERTS.md), minutes before points are final.
//! - A patient without EEG for `inference.idle_evict_s` (measured against how far the
//!   instance has read its partitions, so a paused consumer finishes nobody:
//!   [`crate::catch_up`]), or whose stream ends (new session, other channels or rate, a gap
//!   over `max_gap_s`), is finished: its remaining points are published and its state freed.
//!
//! Heart-rate batches feed the patient's alert state ([`PatientAlerts::on_heart_rate`]). Both
//! topics are consumed by one group with the same partition count and key, so a patient's EEG
//! and heart rate land on the same instance (Kafka's range assignor gives partition `i` of both
//! topics to one member; the memory bus does the same), and on the same shard.
//!
//! Window state is in memory, so an instance that starts consuming a partition (at start-up,
//! or when the group moves it here) first replays, publishing nothing, the earlier records its
//! patients' windows still need ([`crate::handover`]); one that loses a partition drops its
//! patients' state and alert timers without publishing ([`StageHandler::revoked`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use vigil_core::bus::{Bus, BusConsumer, BusMessage, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::config::{AlertPolicies, TrendsConfig};
use vigil_core::record::{AlertEvent, EegChunk, HrBatch, ModelRef};
use vigil_core::stage::{Decoded, Delivery, Refusals, StageHandler, StageOptions, StageRunner};
use vigil_core::telemetry::events::Emit;
use vigil_core::telemetry::Readiness;
use vigil_core::CancellationToken;

use crate::alerts::{run_ticks, PatientAlerts, TokioClock};
use crate::catch_up::{self, CatchUp, Snapshot};
use crate::display::Mains;
use crate::handover;
use crate::model::SeizureModel;
use crate::output::{encode, route, Lanes, OutputBatch};
use crate::shard::{lock, AlertBook, Shard, ShardConfig, ShardInput, ShardReport};
use crate::windowing::WindowParams;
use crate::InferenceError;

pub use crate::patient::STEP_NS;

/// Longest wait for the next alerts record while rebuilding alert state at start.
const ALERT_REBUILD_TIMEOUT: Duration = Duration::from_secs(60);
/// Records a shard may have queued before the dispatcher waits.
const SHARD_DEPTH: usize = 256;
/// Publishing lanes: enough that one patient's broker round trip never holds up many others.
const LANES: usize = 16;

/// Everything the stage needs.
pub struct InferenceStage {
    /// The bus (topics must exist).
    pub bus: Bus,
    /// The loaded model.
    pub model: Arc<SeizureModel>,
    /// Model id and weights checksum, stamped on every output.
    pub model_ref: ModelRef,
    /// Window configuration.
    pub params: WindowParams,
    /// Consumer group.
    pub group: String,
    /// Longest gap filled with NaN, in seconds.
    pub max_gap_s: f64,
    /// Readiness checks to update.
    pub readiness: Readiness,
    /// Alert thresholds and timers, per patient.
    pub alert_policies: AlertPolicies,
    /// Mains frequency notched in the display traces.
    pub mains: Mains,
    /// Shards (worker threads); 0 = the available cores.
    pub workers: usize,
    /// Model windows per batch.
    pub batch_windows: usize,
    /// Queued model windows at which a shard stops taking records.
    pub max_queued_windows: usize,
    /// Seconds without EEG after which a patient is finished and freed.
    pub idle_evict_s: f64,
    /// qEEG trends (`enabled = false` publishes none).
    pub trends: TrendsConfig,
}

/// A running set of shards.
struct Shards {
    inboxes: Vec<mpsc::Sender<ShardInput>>,
    threads: Vec<std::thread::JoinHandle<Result<ShardReport, InferenceError>>>,
}

impl Shards {
    fn start(
        n: usize,
        config: &ShardConfig,
        book: &AlertBook,
        lanes: &Lanes,
        shutdown: &CancellationToken,
    ) -> Result<Self, InferenceError> {
        let mut shards = Self {
            inboxes: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::channel(SHARD_DEPTH);
            let shard = Shard::new(i, config.clone(), book.clone(), lanes.clone());
            let shutdown = shutdown.clone();
            let thread = std::thread::Builder::new()
                .name(format!("vigil-shard-{i}"))
                .spawn(move || shard.run(rx, shutdown))
                .map_err(|e| InferenceError::Bus(format!("starting a shard thread: {e}")))?;
            shards.inboxes.push(tx);
            shards.threads.push(thread);
        }
        Ok(shards)
    }

    async fn send(&self, patient_id: &str, input: ShardInput) -> Result<(), InferenceError> {
        self.inboxes[route(patient_id, self.inboxes.len())]
            .send(input)
            .await
            .map_err(|_| InferenceError::Bus("a shard stopped".into()))
    }

    /// Drops the state of `patients` in their shards (their partition moved away).
    async fn release(&self, patients: Vec<String>) -> Result<(), InferenceError> {
        let mut per_shard: Vec<Vec<String>> = vec![Vec::new(); self.inboxes.len()];
        for patient_id in patients {
            per_shard[route(&patient_id, self.inboxes.len())].push(patient_id);
        }
        for (inbox, patients) in self.inboxes.iter().zip(per_shard) {
            if !patients.is_empty() {
                inbox
                    .send(ShardInput::Release(patients))
                    .await
                    .map_err(|_| InferenceError::Bus("a shard stopped".into()))?;
            }
        }
        Ok(())
    }

    fn tick(&self, read_horizon: Option<std::time::Instant>) {
        for inbox in &self.inboxes {
            // A full inbox is busy anyway; the next tick comes in a second.
            let _ = inbox.try_send(ShardInput::Tick(read_horizon));
        }
    }

    /// Closes the inboxes and waits for every shard to finish its queued windows.
    async fn stop(self) -> Result<(), InferenceError> {
        drop(self.inboxes);
        let mut result = Ok(());
        for thread in self.threads {
            let joined = tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| InferenceError::Bus(format!("joining a shard: {e}")))?;
            match joined {
                Ok(Ok(report)) => tracing::info!(
                    peak_queued_windows = report.peak_queued_windows,
                    "shard stopped"
                ),
                Ok(Err(err)) => result = Err(err),
                Err(_) => result = Err(InferenceError::Bus("a shard panicked".into())),
            }
        }
        result
    }
}

/// A decoded input record, routed by patient.
enum Input {
    Eeg(Box<EegChunk>),
    Hr(Box<HrBatch>),
}

impl InferenceStage {
    /// Consumes until `shutdown`, then leaves the group after committing.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), InferenceError> {
        // Alert state first: fold the whole alerts topic before touching EEG, so a restart
        // neither re-raises nor forgets an alert.
        let book: AlertBook = AlertBook::default();
        let Some(alert_feed) = self.rebuild_alerts(&book, &shutdown).await? else {
            return Ok(());
        };
        let follower = tokio::spawn(follow_alerts(
            alert_feed,
            book.clone(),
            self.alert_policies.clone(),
            shutdown.clone(),
        ));
        let options = StageOptions {
            tick: Some(Duration::from_secs(1)),
            ..StageOptions::one_at_a_time(Refusals::DeadLetter)
        };
        let runner = StageRunner::subscribe(
            &self.bus,
            "inference",
            &self.group,
            &[Topic::EegRaw, Topic::HrRaw],
            self.readiness.clone(),
            options,
        )
        .await?;
        let (lanes, lane_tasks) = Lanes::spawn(&self.bus, LANES, runner.completions(), &shutdown);
        let (tick_tx, tick_rx) = mpsc::channel::<AlertEvent>(256);
        let ticks = tokio::spawn(run_ticks(
            book.clone(),
            TokioClock::system(),
            Duration::from_secs(1),
            tick_tx,
            shutdown.clone(),
        ));
        let timed = tokio::spawn(publish_timed_alerts(tick_rx, lanes.clone()));
        let (watermarks_tx, watermarks) = mpsc::channel::<Snapshot>(16);
        let poller = tokio::spawn(catch_up::poll_watermarks(
            self.bus.clone(),
            self.bus.topic(Topic::EegRaw),
            catch_up::poll_interval(self.idle_evict_s),
            watermarks_tx,
            shutdown.clone(),
        ));
        let workers = if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        };
        let shards = Shards::start(workers, &self.shard_config(), &book, &lanes, &shutdown)?;
        tracing::info!(
            workers,
            batch_windows = self.batch_windows,
            "inference shards started"
        );
        let dispatcher = Dispatcher {
            hr_topic: self.bus.topic(Topic::HrRaw),
            eeg_topic: self.bus.topic(Topic::EegRaw),
            handover: Handover {
                bus: self.bus.clone(),
                limits: DecodeLimits {
                    max_record_bytes: self.bus.max_record_bytes(),
                    ..DecodeLimits::default()
                },
                lookback_s: self.params.handover_lookback_s(),
                positions: HashMap::new(),
                partition_of: HashMap::new(),
                catch_up: CatchUp::default(),
            },
            watermarks,
            running: Some(Running {
                shards,
                lanes,
                tasks: vec![follower, ticks, timed, poller],
                lane_tasks,
            }),
            shutdown: shutdown.clone(),
        };
        runner.run(dispatcher, &shutdown).await
    }

    fn shard_config(&self) -> ShardConfig {
        ShardConfig {
            model: self.model.clone(),
            model_ref: self.model_ref.clone(),
            params: self.params,
            max_gap_s: self.max_gap_s,
            mains: self.mains,
            alert_policies: self.alert_policies.clone(),
            batch_windows: self.batch_windows,
            max_queued_windows: self.max_queued_windows,
            idle_evict_s: self.idle_evict_s,
            trends: self.trends.enabled.then(|| Arc::new(self.trends.clone())),
        }
    }

    /// Folds the whole alerts topic into `book`: everything written before now, i.e. up to
    /// the end offsets taken before subscribing (the reader's own fresh group starts from the
    /// oldest record). Returns the feed, positioned to follow new events, or None on shutdown.
    async fn rebuild_alerts(
        &self,
        book: &AlertBook,
        shutdown: &CancellationToken,
    ) -> Result<Option<Box<dyn BusConsumer>>, InferenceError> {
        let alerts_topic = self.bus.topic(Topic::Alerts);
        let bus_err = |e: vigil_core::bus::BusError| InferenceError::Bus(e.to_string());
        let mut pending: HashMap<i32, i64> = self
            .bus
            .watermarks(&alerts_topic)
            .await
            .map_err(bus_err)?
            .into_iter()
            .filter(|w| w.high > w.low)
            .map(|w| (w.partition, w.high))
            .collect();
        let mut alert_feed = self
            .bus
            .subscribe(
                &format!("{}-alerts-{}", self.group, uuid::Uuid::new_v4().simple()),
                &[alerts_topic],
            )
            .await
            .map_err(bus_err)?;
        let mut replayed = 0usize;
        while !pending.is_empty() {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => {
                    close(alert_feed).await;
                    return Ok(None);
                }
                msg = tokio::time::timeout(ALERT_REBUILD_TIMEOUT, alert_feed.recv()) => msg,
            };
            let msg = match msg {
                Ok(Ok(msg)) => msg,
                Ok(Err(err)) => {
                    tracing::warn!(%err, "alerts feed during rebuild; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => {
                    close(alert_feed).await;
                    return Err(InferenceError::Bus(format!(
                        "alert state rebuild: no record for {ALERT_REBUILD_TIMEOUT:?} with partitions {pending:?} still short of their end offsets"
                    )));
                }
            };
            apply_alert(book, &self.alert_policies, &msg);
            replayed += 1;
            if pending
                .get(&msg.partition)
                .is_some_and(|end| msg.offset + 1 >= *end)
            {
                pending.remove(&msg.partition);
            }
        }
        tracing::info!(replayed, "alert state rebuilt from the alerts topic");
        Ok(Some(alert_feed))
    }
}

/// What the stage's runner feeds: the shards, and what publishes their outputs.
struct Running {
    shards: Shards,
    lanes: Lanes,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    lane_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Routes every decoded record to its patient's shard; the shards and lanes complete the
/// record's ticket once its outputs are delivered.
struct Dispatcher {
    hr_topic: String,
    eeg_topic: String,
    handover: Handover,
    /// High-watermark snapshots of the EEG topic, for the read horizon ([`crate::catch_up`]).
    watermarks: mpsc::Receiver<Snapshot>,
    running: Option<Running>,
    shutdown: CancellationToken,
}

/// Which EEG partitions this instance consumes and which patients' state came from each, so
/// that a partition that arrives is replayed first ([`crate::handover`]) and one that leaves
/// takes its patients' state along.
struct Handover {
    bus: Bus,
    limits: DecodeLimits,
    lookback_s: f64,
    /// EEG partition -> the last offset handed to the shards since it was assigned here.
    positions: HashMap<i32, i64>,
    /// Patient -> the EEG partition their records came from.
    partition_of: HashMap<String, i32>,
    /// How far `positions` have read, in wall time: idle eviction's clock.
    catch_up: CatchUp,
}

impl Handover {
    /// Called with every EEG record before it goes to a shard. A partition not consumed here
    /// yet, or read again from an older offset (the group moved it away and back, so the
    /// state held here is not the committed one), is first replayed up to the record.
    async fn before(
        &mut self,
        shards: &Shards,
        msg: &BusMessage,
        patient_id: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), InferenceError> {
        let partition = msg.partition;
        let last = self.positions.insert(partition, msg.offset);
        if !self.partition_of.contains_key(patient_id) {
            self.partition_of.insert(patient_id.to_owned(), partition);
        }
        match last {
            Some(last) if msg.offset > last => return Ok(()),
            Some(_) => shards.release(self.take_patients(partition)).await?,
            None => {}
        }
        let started = std::time::Instant::now();
        let replayed = self
            .replay(shards, &msg.topic, partition, msg.offset, shutdown)
            .await;
        handover::PartitionTakenOver {
            partition,
            until: msg.offset,
            replayed: replayed.as_ref().copied(),
            elapsed: started.elapsed(),
        }
        .emit();
        Ok(())
    }

    /// Replays what the partition's patients' windows need before `until`; returns how many
    /// patients and chunks.
    async fn replay(
        &mut self,
        shards: &Shards,
        topic: &str,
        partition: i32,
        until: i64,
        shutdown: &CancellationToken,
    ) -> Result<(usize, usize), InferenceError> {
        let bus_err = |e: vigil_core::bus::BusError| InferenceError::Bus(e.to_string());
        let plan = handover::plan(
            &self.bus,
            &self.limits,
            topic,
            partition,
            until,
            self.lookback_s,
        )
        .await
        .map_err(bus_err)?;
        let Some(mut at) = plan.replay_start() else {
            return Ok((0, 0));
        };
        let mut chunks = 0;
        while at < until {
            let records = self
                .bus
                .read_range(
                    topic,
                    partition,
                    at,
                    (at + handover::REPLAY_BLOCK).min(until),
                )
                .await
                .map_err(bus_err)?;
            let Some(last) = records.last() else { break };
            at = last.offset + 1;
            for msg in &records {
                let Ok(chunk) = handover::decode_chunk(msg, &self.limits) else {
                    continue;
                };
                if !plan.wants(msg.offset, &chunk) {
                    continue;
                }
                let patient_id = chunk.patient_id.clone();
                self.partition_of.insert(patient_id.clone(), partition);
                chunks += 1;
                tokio::select! {
                    () = shutdown.cancelled() => return Ok((plan.patients(), chunks)),
                    sent = shards.send(&patient_id, ShardInput::Replayed(Box::new(chunk))) => sent?,
                }
            }
        }
        Ok((plan.patients(), chunks))
    }

    /// Forgets the partition's patients, returning them, and how far it had been read (its
    /// state here no longer counts).
    fn take_patients(&mut self, partition: i32) -> Vec<String> {
        self.catch_up.forget(partition);
        let mut patients = Vec::new();
        self.partition_of.retain(|patient_id, p| {
            let keep = *p != partition;
            if !keep {
                patients.push(patient_id.clone());
            }
            keep
        });
        patients
    }
}

#[async_trait]
impl StageHandler for Dispatcher {
    type Record = Input;
    type Error = InferenceError;

    fn decode(&self, msg: &BusMessage, limits: &DecodeLimits) -> Decoded<Input> {
        if msg.topic == self.hr_topic {
            return Decoded::from_result(
                codec::decode::<HrBatch>(&msg.payload, limits).map(|b| Input::Hr(Box::new(b))),
            );
        }
        Decoded::from_result(
            handover::decode_chunk(msg, limits).map(|chunk| Input::Eeg(Box::new(chunk))),
        )
    }

    async fn handle(&mut self, batch: Vec<Delivery<Input>>) -> Result<(), InferenceError> {
        let Some(running) = &self.running else {
            return Err(InferenceError::Bus("the stage has stopped".into()));
        };
        for delivery in batch {
            let (patient_id, input) = match delivery.record {
                Input::Eeg(chunk) => {
                    self.handover
                        .before(
                            &running.shards,
                            &delivery.msg,
                            &chunk.patient_id,
                            &self.shutdown,
                        )
                        .await?;
                    (
                        chunk.patient_id.clone(),
                        ShardInput::Eeg(delivery.ticket, chunk),
                    )
                }
                Input::Hr(hr) => (hr.patient_id.clone(), ShardInput::Hr(delivery.ticket, hr)),
            };
            // A full shard holds the runner back (backpressure), but never a stop.
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                sent = running.shards.send(&patient_id, input) => sent?,
            }
        }
        Ok(())
    }

    async fn revoked(&mut self, partitions: Vec<(String, i32)>) -> Result<(), InferenceError> {
        let Some(running) = &self.running else {
            return Ok(());
        };
        for (topic, partition) in partitions {
            if topic == self.eeg_topic {
                self.handover.positions.remove(&partition);
                let patients = self.handover.take_patients(partition);
                running.shards.release(patients).await?;
            }
        }
        Ok(())
    }

    fn tick(&mut self, in_flight: usize) {
        while let Ok(snapshot) = self.watermarks.try_recv() {
            self.handover.catch_up.observe(snapshot);
        }
        let read_horizon = self.handover.catch_up.horizon(&self.handover.positions);
        if let Some(running) = &self.running {
            running.shards.tick(read_horizon);
        }
        metrics::gauge!("vigil_inference_records_in_flight").set(in_flight as f64);
    }

    /// Stops taking records; lets the shards finish their queued windows and the lanes
    /// deliver, so the runner acknowledges everything delivered before leaving the group.
    async fn stop(&mut self) -> Result<(), InferenceError> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        let stopped = running.shards.stop().await;
        drop(running.lanes);
        for task in running.tasks.into_iter().chain(running.lane_tasks) {
            let _ = task.await;
        }
        stopped
    }
}

/// Folds new alert events (clinicians' acknowledgements, other instances' transitions) into
/// `book` until shutdown, then closes the feed.
async fn follow_alerts(
    mut alert_feed: Box<dyn BusConsumer>,
    book: AlertBook,
    policies: AlertPolicies,
    shutdown: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = alert_feed.recv() => msg,
        };
        match msg {
            Ok(msg) => apply_alert(&book, &policies, &msg),
            Err(err) => {
                tracing::warn!(%err, "alerts feed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    close(alert_feed).await;
}

/// Timer-driven alerts (signal loss, escalation) go through the lanes, which retry until the
/// broker holds them: the state already says they happened.
async fn publish_timed_alerts(mut tick_rx: mpsc::Receiver<AlertEvent>, lanes: Lanes) {
    while let Some(event) = tick_rx.recv().await {
        tracing::info!(patient_id = %event.patient_id, kind = ?event.kind, transition = ?event.transition, "alert");
        let batch = OutputBatch {
            patient_id: event.patient_id.clone(),
            records: encode(Topic::Alerts, &event).into_iter().collect(),
            ticket: None,
        };
        if !lanes.send(batch).await {
            break;
        }
    }
}

/// Folds one record of the alerts topic into the book (events of every producer: this stage,
/// other instances, and clinicians' acknowledgements from the dashboard).
fn apply_alert(book: &AlertBook, policies: &AlertPolicies, msg: &BusMessage) {
    match codec::decode::<AlertEvent>(&msg.payload, &DecodeLimits::default()) {
        Ok(event) => {
            let mut book = lock(book);
            book.entry(event.patient_id.clone())
                .or_insert_with(|| {
                    PatientAlerts::new(&event.patient_id, policies.for_patient(&event.patient_id))
                })
                .apply(&event);
        }
        Err(err) => tracing::warn!(%err, offset = msg.offset, "unreadable alert event skipped"),
    }
}

async fn close(consumer: Box<dyn BusConsumer>) {
    if let Err(err) = consumer.close().await {
        tracing::warn!(%err, "closing the consumer");
    }
}
