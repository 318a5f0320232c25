//! A shard: one worker thread that owns the EEG and heart-rate state of the patients routed
//! to it, so no lock guards a patient's windows and evicting one is a single drop.
//!
//! The loop takes whatever records are queued, filters and windows each EEG chunk at once (its
//! display trace is sent before any model work), queues the windows that became ready as model
//! jobs, and sends them in batches across channels and patients to the shard's model thread
//! ([`crate::model_thread`]). Results are merged back chunk by chunk in arrival order, so each
//! patient's points stay in window order. While the model works the shard keeps taking
//! records, so a trace never waits for a batch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use vigil_core::bus::Topic;
use vigil_core::config::{AlertPolicies, TrendsConfig};
use vigil_core::record::{AlertEvent, EegChunk, HrBatch, ModelRef};
use vigil_core::CancellationToken;

use crate::alerts::PatientAlerts;
use crate::display::Mains;
use crate::model::SeizureModel;
use crate::model_thread::ModelThread;
use crate::output::{encode, Lanes, OutputBatch, Ticket};
use crate::patient::PatientStream;
use crate::windowing::{PushedChunk, WindowParams};
use crate::InferenceError;

/// Alert state of every patient this instance has seen, shared with the alert follower
/// (clinicians' acknowledgements) and the wall-clock ticks.
pub(crate) type AlertBook = Arc<Mutex<HashMap<String, PatientAlerts>>>;

pub(crate) fn lock(book: &AlertBook) -> std::sync::MutexGuard<'_, HashMap<String, PatientAlerts>> {
    book.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a stopping shard keeps finishing queued work.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Model batches sent and not yet merged: two, so the model thread starts the next batch
/// while the shard merges the last one.
const BATCHES_IN_FLIGHT: usize = 2;

/// Where a batched window's output goes: `(chunk id, channel, job)`.
type Place = (u64, usize, usize);

/// Work for a shard.
#[derive(Debug)]
pub(crate) enum ShardInput {
    /// A decoded EEG chunk at a rate the model accepts.
    Eeg(Ticket, Box<EegChunk>),
    /// A chunk consumed before by another owner of its partition, replayed to rebuild the
    /// patient's windows ([`crate::handover`]): processed like a live one, but nothing is
    /// published for it (its owner did that) and it has no record to acknowledge.
    Replayed(Box<EegChunk>),
    /// Patients whose partition this instance no longer holds: their state is dropped
    /// without publishing (the new owner rebuilds and continues it).
    Release(Vec<String>),
    /// A decoded heart-rate batch.
    Hr(Ticket, Box<HrBatch>),
    /// About once a second: evict patients idle before the read horizon, the instant up to
    /// which every record of this instance's EEG partitions has reached the shards
    /// ([`crate::catch_up`]); None = unknown (nobody is evicted).
    Tick(Option<Instant>),
}

/// What a shard needs, shared by all shards.
#[derive(Clone)]
pub(crate) struct ShardConfig {
    pub model: Arc<SeizureModel>,
    pub model_ref: ModelRef,
    pub params: WindowParams,
    pub max_gap_s: f64,
    pub mains: Mains,
    pub alert_policies: AlertPolicies,
    /// Windows per model call.
    pub batch_windows: usize,
    /// Queued windows at which the shard stops taking records.
    pub max_queued_windows: usize,
    /// A patient without EEG for this long is finished and freed.
    pub idle_evict_s: f64,
    /// qEEG trends, None when disabled.
    pub trends: Option<Arc<TrendsConfig>>,
}

/// A model job's state; its input is built from the patient's windows when it is batched.
enum Slot {
    Queued,
    Running,
    Done(Option<Vec<f32>>),
}

/// A chunk whose windows are queued or running.
struct PendingChunk {
    /// Consecutive per shard, in arrival order.
    id: u64,
    patient_id: String,
    /// None for a replayed chunk, whose outputs are not published.
    ticket: Option<Ticket>,
    /// Per channel: job slots with their window starts.
    slots: Vec<Vec<(usize, Slot)>>,
    final_ends: Vec<usize>,
    waiting: usize,
    /// Its patient was released: the chunk completes without touching the patient's state
    /// (a stream started since, by the partition coming back, is not this chunk's).
    released: bool,
}

impl PendingChunk {
    fn new(id: u64, patient_id: String, ticket: Option<Ticket>, pushed: Vec<PushedChunk>) -> Self {
        let mut waiting = 0;
        let final_ends = pushed.iter().map(|p| p.final_end).collect();
        let slots = pushed
            .into_iter()
            .map(|p| {
                p.jobs
                    .into_iter()
                    .map(|job| {
                        let slot = if job.evaluate {
                            waiting += 1;
                            Slot::Queued
                        } else {
                            Slot::Done(None)
                        };
                        (job.start, slot)
                    })
                    .collect()
            })
            .collect();
        Self {
            id,
            patient_id,
            ticket,
            slots,
            final_ends,
            waiting,
            released: false,
        }
    }
}

/// Where a patient's heart-rate stream is: for skipping redelivered batches.
#[derive(Debug, Default)]
struct HeartStream {
    stream_id: Option<uuid::Uuid>,
    next_seq: u64,
    last_t_ns: Option<i64>,
}

struct Patient {
    stream: PatientStream,
    last_seen: Instant,
}

pub(crate) struct Shard {
    /// `vigil_inference_patients` and `vigil_inference_queued_windows` of this shard, labelled
    /// with its index (each shard reports its own share, so a sum over shards is the
    /// instance's total). Registered once: the batch loop only sets them.
    patients_gauge: metrics::Gauge,
    queued_gauge: metrics::Gauge,
    index: usize,
    config: ShardConfig,
    book: AlertBook,
    lanes: Lanes,
    patients: HashMap<String, Patient>,
    heart: HashMap<String, (HeartStream, Instant)>,
    pending: VecDeque<PendingChunk>,
    /// Id of the next chunk pushed to `pending`.
    next_chunk_id: u64,
    /// Windows of `pending` not yet evaluated (the sum of their `waiting`).
    queued: usize,
    peak_queued_windows: usize,
    /// Started with the first batch.
    model_thread: Option<ModelThread>,
    /// Places of the batches sent to the model thread, oldest first.
    in_flight: VecDeque<Vec<Place>>,
}

/// What woke a shard waiting on its model thread.
enum Woke {
    Batch(Result<Vec<Vec<f32>>, InferenceError>),
    Input(Option<ShardInput>),
}

/// What a shard did, when it stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShardReport {
    /// Most model windows queued at once: at most `max_queued_windows` plus one record's.
    pub peak_queued_windows: usize,
}

impl Shard {
    pub(crate) fn new(index: usize, config: ShardConfig, book: AlertBook, lanes: Lanes) -> Self {
        Self {
            patients_gauge: metrics::gauge!("vigil_inference_patients", "shard" => index.to_string()),
            queued_gauge: metrics::gauge!("vigil_inference_queued_windows", "shard" => index.to_string()),
            index,
            config,
            book,
            lanes,
            patients: HashMap::new(),
            heart: HashMap::new(),
            pending: VecDeque::new(),
            next_chunk_id: 0,
            queued: 0,
            peak_queued_windows: 0,
            model_thread: None,
            in_flight: VecDeque::new(),
        }
    }

    /// Runs until `inbox` closes, then completes what it holds and returns. Once `shutdown`
    /// is cancelled it keeps working for at most [`STOP_GRACE`], then stops after the current
    /// batch: records not finished by then are not acknowledged and are redelivered after a
    /// restart, so a stop never waits for a whole backlog.
    pub(crate) fn run(
        mut self,
        mut inbox: mpsc::Receiver<ShardInput>,
        shutdown: CancellationToken,
    ) -> Result<ShardReport, InferenceError> {
        // Only waits on channels: the shard's work runs on this thread, outside any runtime.
        let waiter = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| InferenceError::ModelThread(e.to_string()))?;
        let mut stopping: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                let since = *stopping.get_or_insert_with(Instant::now);
                if since.elapsed() >= STOP_GRACE {
                    tracing::info!(
                        queued_windows = self.queued_windows(),
                        "stop grace over: unfinished records are left for redelivery"
                    );
                    return Ok(ShardReport {
                        peak_queued_windows: self.peak_queued_windows,
                    });
                }
            }
            if self.pending.is_empty() {
                match inbox.blocking_recv() {
                    Some(input) => self.take(input)?,
                    None => break,
                }
            }
            // At the bound, records wait in the inbox (and then in the broker): a backlog
            // costs lag, not memory.
            while self.queued_windows() < self.config.max_queued_windows {
                let Ok(input) = inbox.try_recv() else { break };
                self.take(input)?;
            }
            self.peak_queued_windows = self.peak_queued_windows.max(self.queued_windows());
            let busy = self.fill_model_thread()?;
            self.queued_gauge.set(self.queued_windows() as f64);
            // A record that arrives while the model works is taken at once (its trace is
            // sent), unless the queue is at its bound.
            let room = self.queued < self.config.max_queued_windows;
            let Some(model) = self.model_thread.as_mut().filter(|_| busy) else {
                continue;
            };
            let woke = waiter.block_on(async {
                tokio::select! {
                    biased;
                    outputs = model.next() => Woke::Batch(outputs),
                    input = inbox.recv(), if room => Woke::Input(input),
                }
            });
            match woke {
                Woke::Batch(outputs) => self.merge_batch(outputs?),
                Woke::Input(Some(input)) => self.take(input)?,
                Woke::Input(None) => break,
            }
        }
        self.drain()?;
        Ok(ShardReport {
            peak_queued_windows: self.peak_queued_windows,
        })
    }

    fn queued_windows(&self) -> usize {
        self.queued
    }

    fn send(&self, patient_id: &str, records: Vec<(Topic, Vec<u8>)>, ticket: Option<Ticket>) {
        if records.is_empty() && ticket.is_none() {
            return;
        }
        let batch = OutputBatch {
            patient_id: patient_id.to_owned(),
            records,
            ticket,
        };
        if !self.lanes.send_blocking(batch) {
            tracing::warn!(
                patient_id,
                "publishing lanes closed; outputs dropped at shutdown"
            );
        }
    }

    fn take(&mut self, input: ShardInput) -> Result<(), InferenceError> {
        match input {
            ShardInput::Eeg(ticket, chunk) => self.on_chunk(Some(ticket), *chunk),
            ShardInput::Replayed(chunk) => self.on_chunk(None, *chunk),
            ShardInput::Release(patients) => {
                self.release(&patients);
                Ok(())
            }
            ShardInput::Hr(ticket, batch) => {
                self.on_heart_rate(ticket, &batch);
                Ok(())
            }
            ShardInput::Tick(read_horizon) => self.evict_idle(read_horizon),
        }
    }

    fn alerts<T>(&self, patient_id: &str, f: impl FnOnce(&mut PatientAlerts) -> T) -> T {
        let mut book = lock(&self.book);
        let state = book.entry(patient_id.to_owned()).or_insert_with(|| {
            PatientAlerts::new(
                patient_id,
                self.config.alert_policies.for_patient(patient_id),
            )
        });
        f(state)
    }

    /// Takes one chunk; `ticket` None = replayed (state only, nothing published).
    fn on_chunk(&mut self, ticket: Option<Ticket>, chunk: EegChunk) -> Result<(), InferenceError> {
        let patient_id = chunk.patient_id.clone();
        let publish = ticket.is_some();
        let now = vigil_core::time::now_ns();
        let fresh = match self.patients.get(&patient_id) {
            Some(p) if p.stream.continues(&chunk) => {
                if chunk.seq < p.stream.next_seq {
                    // A redelivery, or a late chunk behind a gap already filled with NaN:
                    // that span stays "not evaluated" (docs/INGEST.md); storage keeps it.
                    metrics::counter!("vigil_inference_chunks_total", "outcome" => "duplicate_or_late").increment(1);
                    self.send(&patient_id, Vec::new(), ticket);
                    return Ok(());
                }
                let gap_ns = chunk.start_ns - p.stream.expected_start_ns();
                let gap_samples = if chunk.seq > p.stream.next_seq && gap_ns > 0 {
                    (gap_ns as f64 * p.stream.fs / 1e9).round() as usize
                } else {
                    0
                };
                if gap_samples as f64 > self.config.max_gap_s * p.stream.fs {
                    tracing::info!(
                        patient_id,
                        gap_s = gap_ns as f64 / 1e9,
                        "long gap: restarting windows"
                    );
                    None
                } else {
                    Some(gap_samples)
                }
            }
            _ => None,
        };
        let gap_samples = match fresh {
            Some(gap) => gap,
            None => {
                // A new device session, another channel set or rate, or a long gap: the old
                // stream ended, so its remaining points are published before new windows start.
                self.end_stream(&patient_id, publish)?;
                let stream = PatientStream::start(
                    &chunk,
                    self.config.params,
                    self.config.mains,
                    self.config.trends.as_deref(),
                )?;
                self.patients.insert(
                    patient_id.clone(),
                    Patient {
                        stream,
                        last_seen: Instant::now(),
                    },
                );
                0
            }
        };
        let Some(patient) = self.patients.get_mut(&patient_id) else {
            return Ok(());
        };
        patient.last_seen = Instant::now();
        let trace = patient.stream.trace(&patient_id, &chunk, gap_samples);
        if publish {
            // Sent before the trends and windows are computed: a trace waits for nothing.
            let trace = trace.iter().filter_map(|t| encode(Topic::EegTrace, t));
            self.send(&patient_id, trace.collect(), None);
        }
        let Some(patient) = self.patients.get_mut(&patient_id) else {
            return Ok(());
        };
        let trends = patient.stream.trends(&patient_id, &chunk, gap_samples);
        let pushed = patient.stream.push_samples(&chunk, gap_samples);
        let pending = PendingChunk::new(self.next_chunk_id, patient_id.clone(), ticket, pushed);
        self.next_chunk_id += 1;
        self.queued += pending.waiting;
        if publish {
            // The trends are stored: they go out on the patient's lane ahead of the batch
            // that completes this record's ticket, so the record is acknowledged after them.
            let mut records: Vec<(Topic, Vec<u8>)> = trends
                .iter()
                .filter_map(|t| encode(Topic::EegTrends, t))
                .collect();
            let resolved = self.alerts(&patient_id, |a| a.on_samples(now));
            records.extend(resolved.iter().filter_map(|e| encode(Topic::Alerts, e)));
            self.send(&patient_id, records, None);
            metrics::counter!("vigil_inference_chunks_total", "outcome" => "processed")
                .increment(1);
        } else {
            // Replayed: the filters and trends advanced as they did for the chunk's first
            // owner, which published their outputs.
            metrics::counter!("vigil_inference_chunks_total", "outcome" => "replayed").increment(1);
        }
        self.pending.push_back(pending);
        self.complete_ready();
        Ok(())
    }

    fn on_heart_rate(&mut self, ticket: Ticket, batch: &HrBatch) {
        let patient_id = batch.patient_id.clone();
        let (stream, seen) = self
            .heart
            .entry(patient_id.clone())
            .or_insert_with(|| (HeartStream::default(), Instant::now()));
        *seen = Instant::now();
        let duplicate = stream.stream_id == Some(batch.stream_id) && batch.seq < stream.next_seq;
        let fresh: Vec<_> = if duplicate {
            Vec::new()
        } else {
            stream.stream_id = Some(batch.stream_id);
            stream.next_seq = batch.seq + 1;
            batch
                .points
                .iter()
                .filter(|p| stream.last_t_ns.is_none_or(|last| p.t_ns > last))
                .copied()
                .collect()
        };
        let outcome = if let Some(last) = fresh.last() {
            stream.last_t_ns = Some(last.t_ns);
            "processed"
        } else {
            "duplicate"
        };
        metrics::counter!("vigil_inference_hr_batches_total", "outcome" => outcome).increment(1);
        let events: Vec<AlertEvent> = if fresh.is_empty() {
            Vec::new()
        } else {
            self.alerts(&patient_id, |a| {
                a.on_heart_rate(&fresh, vigil_core::time::now_ns())
            })
        };
        let records = events
            .iter()
            .filter_map(|e| encode(Topic::Alerts, e))
            .collect();
        self.send(&patient_id, records, Some(ticket));
    }

    /// Sends batches of queued windows to the model thread up to [`BATCHES_IN_FLIGHT`];
    /// true when a batch is in flight afterwards (so the model thread is running).
    fn fill_model_thread(&mut self) -> Result<bool, InferenceError> {
        while self.in_flight.len() < BATCHES_IN_FLIGHT && self.submit_batch()? {}
        Ok(!self.in_flight.is_empty())
    }

    /// Sends one batch of queued windows to the model thread; false when none is queued.
    fn submit_batch(&mut self) -> Result<bool, InferenceError> {
        let limit = self.config.batch_windows.max(1);
        let mut inputs = Vec::new();
        let mut places = Vec::new();
        'fill: for chunk in self.pending.iter_mut() {
            let mut stream = self
                .patients
                .get_mut(&chunk.patient_id)
                .map(|p| &mut p.stream);
            for (ch, slots) in chunk.slots.iter_mut().enumerate() {
                for (j, (start, slot)) in slots.iter_mut().enumerate() {
                    if inputs.len() == limit {
                        break 'fill;
                    }
                    if !matches!(slot, Slot::Queued) {
                        continue;
                    }
                    // A stream is only dropped after its queued windows ran (end_stream) or
                    // were skipped (release).
                    match stream.as_mut().and_then(|s| s.take_input(ch, *start)) {
                        Some(input) => {
                            *slot = Slot::Running;
                            inputs.push(input);
                            places.push((chunk.id, ch, j));
                        }
                        None => {
                            *slot = Slot::Done(None);
                            chunk.waiting -= 1;
                            self.queued -= 1;
                        }
                    }
                }
            }
        }
        // Windows whose input was gone are done.
        self.complete_ready();
        if inputs.is_empty() {
            return Ok(false);
        }
        let model = match self.model_thread.take() {
            Some(model) => model,
            None => ModelThread::spawn(self.config.model.clone(), self.index)?,
        };
        let model = self.model_thread.insert(model);
        model.submit(inputs)?;
        self.in_flight.push_back(places);
        Ok(true)
    }

    /// Stores the outputs of the oldest batch in flight, then merges every chunk that became
    /// complete.
    fn merge_batch(&mut self, outputs: Vec<Vec<f32>>) {
        let places = self.in_flight.pop_front().unwrap_or_default();
        // A chunk with a window in flight is still waiting, so it is still queued: ids are
        // consecutive from the front.
        let first = self.pending.front().map_or(0, |c| c.id);
        for ((id, ch, j), output) in places.into_iter().zip(outputs) {
            let Some(chunk) = usize::try_from(id - first)
                .ok()
                .and_then(|c| self.pending.get_mut(c))
            else {
                continue;
            };
            chunk.slots[ch][j].1 = Slot::Done(Some(output));
            chunk.waiting -= 1;
            self.queued -= 1;
        }
        self.complete_ready();
    }

    /// Merges finished chunks from the front of the queue: their points, alerts and ack.
    fn complete_ready(&mut self) {
        while self.pending.front().is_some_and(|c| c.waiting == 0) {
            let Some(chunk) = self.pending.pop_front() else {
                break;
            };
            let results: Vec<Vec<(usize, Option<Vec<f32>>)>> = chunk
                .slots
                .into_iter()
                .map(|slots| {
                    slots
                        .into_iter()
                        .map(|(start, slot)| match slot {
                            Slot::Done(output) => (start, output),
                            Slot::Queued | Slot::Running => (start, None),
                        })
                        .collect()
                })
                .collect();
            let patient = match self.patients.get_mut(&chunk.patient_id) {
                Some(patient) if !chunk.released => patient,
                _ => {
                    self.send(&chunk.patient_id, Vec::new(), chunk.ticket);
                    continue;
                }
            };
            let ran_windows = results.iter().flatten().any(|(_, output)| output.is_some());
            let points = patient.stream.complete(results, &chunk.final_ends);
            if chunk.ticket.is_none() {
                // Replayed: the points' first owner published them and their alerts.
                continue;
            }
            let record = patient
                .stream
                .record(&chunk.patient_id, points, &self.config.model_ref);
            let provisional = patient.stream.provisional();
            let now = vigil_core::time::now_ns();
            let provisional_record =
                provisional
                    .as_ref()
                    .filter(|_| ran_windows)
                    .and_then(|(start_ns, values)| {
                        patient.stream.provisional_record(
                            &chunk.patient_id,
                            *start_ns,
                            values,
                            &self.config.model_ref,
                            now,
                        )
                    });
            if let Some(delay_ns) = record
                .as_ref()
                .and_then(|r| patient.stream.provisional_to_final(r, now))
            {
                metrics::histogram!("vigil_inference_provisional_to_final_seconds")
                    .record(delay_ns as f64 / 1e9);
            }
            let mut records: Vec<(Topic, Vec<u8>)> = Vec::new();
            let events = self.alerts(&chunk.patient_id, |alerts| {
                let mut events = Vec::new();
                if let Some(record) = &record {
                    events.extend(alerts.on_probability(record, now));
                }
                if let Some((start_ns, values)) = &provisional {
                    events.extend(alerts.on_provisional(
                        *start_ns,
                        crate::patient::STEP_NS,
                        values,
                        now,
                    ));
                }
                events
            });
            records.extend(record.iter().filter_map(|r| encode(Topic::EegProb, r)));
            records.extend(
                provisional_record
                    .iter()
                    .filter_map(|r| encode(Topic::EegProb, r)),
            );
            records.extend(events.iter().filter_map(|e| encode(Topic::Alerts, e)));
            self.send(&chunk.patient_id, records, chunk.ticket);
        }
    }

    /// Runs every queued window and merges every pending chunk.
    fn drain(&mut self) -> Result<(), InferenceError> {
        while !self.pending.is_empty() {
            let busy = self.fill_model_thread()?;
            let Some(model) = self.model_thread.as_mut().filter(|_| busy) else {
                // Nothing queued nor running: every pending chunk has completed.
                break;
            };
            let outputs = model.next_blocking()?;
            self.merge_batch(outputs);
        }
        Ok(())
    }

    /// Finishes a patient's stream (after its queued windows) and, when `publish`, publishes
    /// the remaining points, then frees it.
    fn end_stream(&mut self, patient_id: &str, publish: bool) -> Result<(), InferenceError> {
        if !self.patients.contains_key(patient_id) {
            return Ok(());
        }
        if self.pending.iter().any(|c| c.patient_id == patient_id) {
            self.drain()?;
        }
        let Some(mut patient) = self.patients.remove(patient_id) else {
            return Ok(());
        };
        if !publish {
            return Ok(());
        }
        let points = patient.stream.finish(&self.config.model)?;
        let Some(record) = patient
            .stream
            .record(patient_id, points, &self.config.model_ref)
        else {
            return Ok(());
        };
        let now = vigil_core::time::now_ns();
        let events = self.alerts(patient_id, |a| a.on_probability(&record, now));
        let mut records: Vec<(Topic, Vec<u8>)> =
            encode(Topic::EegProb, &record).into_iter().collect();
        records.extend(events.iter().filter_map(|e| encode(Topic::Alerts, e)));
        tracing::info!(
            patient_id,
            points = record.aggregate_p.len(),
            "stream ended: remaining points published"
        );
        self.send(patient_id, records, None);
        Ok(())
    }

    /// Drops the state of patients whose partition moved to another instance, without
    /// publishing anything: their queued windows are skipped (their records are not
    /// acknowledged here any more) and their wall-clock alert checks stop.
    fn release(&mut self, patients: &[String]) {
        for chunk in self
            .pending
            .iter_mut()
            .filter(|c| patients.contains(&c.patient_id))
        {
            chunk.released = true;
            for (_, slot) in chunk.slots.iter_mut().flatten() {
                if matches!(slot, Slot::Queued) {
                    *slot = Slot::Done(None);
                    chunk.waiting -= 1;
                    self.queued -= 1;
                }
            }
        }
        let mut book = lock(&self.book);
        for patient_id in patients {
            let had_stream = self.patients.remove(patient_id).is_some();
            self.heart.remove(patient_id);
            if let Some(alerts) = book.get_mut(patient_id) {
                alerts.release();
            }
            if had_stream {
                tracing::info!(patient_id, "partition moved: patient released");
            }
        }
        self.patients_gauge.set(self.patients.len() as f64);
    }

    /// Finishes patients without EEG for `idle_evict_s` before `read_horizon`: every record
    /// the broker held then has reached this shard (inputs are taken in order), so none of
    /// theirs is waiting. Measured on the wall clock alone, a paused consumer or a backlog
    /// would look like stopped devices, and finishing their streams would cut their windows
    /// mid-recording ([`crate::catch_up`]).
    fn evict_idle(&mut self, read_horizon: Option<Instant>) -> Result<(), InferenceError> {
        let idle = std::time::Duration::from_secs_f64(self.config.idle_evict_s.max(0.0));
        let stale: Vec<String> = match read_horizon {
            None => Vec::new(),
            Some(horizon) => self
                .patients
                .iter()
                .filter(|(_, p)| horizon.saturating_duration_since(p.last_seen) >= idle)
                .map(|(id, _)| id.clone())
                .collect(),
        };
        for patient_id in stale {
            tracing::info!(
                patient_id,
                "no EEG for the idle timeout: finishing and freeing the patient"
            );
            self.end_stream(&patient_id, true)?;
        }
        self.heart.retain(|_, (_, seen)| seen.elapsed() < idle);
        self.patients_gauge.set(self.patients.len() as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
