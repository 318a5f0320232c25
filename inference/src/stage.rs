//! `vigil infer`: the consumer-group stage from `vigil.eeg.raw` and `vigil.hr.raw` to
//! `vigil.eeg.prob`, `vigil.eeg.trace` and `vigil.alerts`.
//!
//! Per patient it keeps one [`ChannelStream`] per channel of the patient's current device
//! stream. Each chunk is pushed (DSP and model on a blocking thread, off the async runtime);
//! the points that became final are published as one `SeizureProbability` (per-channel values
//! and their NaN-aware max), and only then is the chunk acknowledged, so its offset is
//! committed after its outputs are durable.
//!
//! Stream rules: a chunk of another `stream_id`, channel set or rate starts new windows (the
//! old stream's remaining points are finished and published first); `seq` at or below the last
//! one is a duplicate and skipped; missing chunks up to `max_gap_s` are filled with NaN
//! samples (their points are "not evaluated"), longer gaps restart the windows. Records that
//! cannot be used (undecodable, or a rate the model cannot take) go to `vigil.dlq` with the
//! reason.
//!
//! Heart-rate batches feed the patient's alert state ([`PatientAlerts::on_heart_rate`]):
//! brady/tachycardia alerts and the ictal-tachycardia evidence of seizure alerts. Both topics
//! are consumed by one group with the same partition count and key, so a patient's EEG and
//! heart rate land on the same instance (Kafka's range assignor, Vigil's default, gives
//! partition `i` of both topics to one member; the memory bus does the same). A batch whose
//! `seq` is not above the last one of its stream, or whose points are older than the last
//! point seen, is skipped (at-least-once redelivery).
//!
//! Restart semantics (known limit): window state is in memory. After a restart a patient's
//! windows start again from the next chunk, so up to one window (300 s) of points after the
//! restart are reported as not evaluated (NaN), never as a made-up value. Exact resume needs
//! commits that lag the retained window and a persisted window-grid origin: not built yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_core::bus::{Bus, BusConsumer, BusMessage, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::config::AlertPolicies;
use vigil_core::record::{
    AlertEvent, DeadLetter, EegChunk, EegTrace, HrBatch, ModelRef, SeizureProbability,
};
use vigil_core::telemetry::Readiness;
use vigil_core::CancellationToken;

use crate::alerts::{run_ticks, PatientAlerts, TokioClock};
use crate::display::{DisplayFilter, Mains};
use crate::model::SeizureModel;
use crate::windowing::{fmax, model_sample_rate, ChannelStream, FinalizedPoints, WindowParams};
use crate::InferenceError;

/// Longest wait for the next alerts record while rebuilding alert state at start.
const ALERT_REBUILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Grid step of the model output, 0.5 s.
pub const STEP_NS: i64 = 500_000_000;

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
}

type AlertBook = Arc<Mutex<HashMap<String, PatientAlerts>>>;

/// Where a patient's heart-rate stream is: for skipping redelivered batches.
#[derive(Debug, Default)]
struct HeartStream {
    stream_id: Option<uuid::Uuid>,
    next_seq: u64,
    last_t_ns: Option<i64>,
}

fn lock(book: &AlertBook) -> std::sync::MutexGuard<'_, HashMap<String, PatientAlerts>> {
    book.lock().unwrap_or_else(|p| p.into_inner())
}

/// One patient's current device stream.
struct PatientStream {
    stream_id: uuid::Uuid,
    channels: Vec<String>,
    fs: f64,
    /// Time of the stream's first sample: grid point k is at origin + k * 0.5 s.
    origin_ns: i64,
    next_seq: u64,
    samples_seen: u64,
    per_channel: Vec<ChannelStream>,
    /// Display filters for the trace topic, one per channel.
    display: Vec<DisplayFilter>,
    /// Filter output samples produced so far (per channel).
    displayed: u64,
    /// Keep every `decimate`-th filtered sample: the trace keeps >= 200 samples/s, so its
    /// Nyquist (>= 100 Hz) stays above the 70 Hz band and nothing aliases.
    decimate: u64,
}

impl PatientStream {
    fn start(chunk: &EegChunk, params: WindowParams, mains: Mains) -> Result<Self, InferenceError> {
        let per_channel = chunk
            .channels
            .iter()
            .map(|_| ChannelStream::new(chunk.sample_rate_hz, params))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            stream_id: chunk.stream_id,
            channels: chunk.channels.clone(),
            fs: chunk.sample_rate_hz,
            origin_ns: chunk.start_ns,
            next_seq: chunk.seq,
            samples_seen: 0,
            per_channel,
            display: chunk
                .channels
                .iter()
                .map(|_| DisplayFilter::new(chunk.sample_rate_hz as usize, mains))
                .collect(),
            displayed: 0,
            decimate: ((chunk.sample_rate_hz / 200.0).floor() as u64).max(1),
        })
    }

    /// Filters the chunk (and gap filler) for display; returns a trace once the filter has
    /// produced samples that start at or after the stream origin.
    fn trace(
        &mut self,
        patient_id: &str,
        chunk: &EegChunk,
        gap_samples: usize,
    ) -> Option<EegTrace> {
        let filler = vec![f32::NAN; gap_samples];
        let filtered: Vec<Vec<f32>> = self
            .display
            .iter_mut()
            .zip(&chunk.samples)
            .map(|(filter, row)| {
                let mut out = filter.push(&filler);
                out.extend(filter.push(row));
                out
            })
            .collect();
        let delay = self.display.first()?.delay() as u64;
        let produced = filtered.first().map_or(0, Vec::len) as u64;
        let first = self.displayed;
        self.displayed += produced;
        // Output j shows input sample j - delay; keep inputs >= 0 on the decimation grid.
        let keep: Vec<usize> = (0..produced)
            .filter(|i| {
                let j = first + i;
                j >= delay && (j - delay) % self.decimate == 0
            })
            .map(|i| i as usize)
            .collect();
        let first_input = (first + *keep.first()? as u64) - delay;
        Some(EegTrace {
            patient_id: patient_id.to_owned(),
            stream_id: self.stream_id,
            start_ns: self.origin_ns + (first_input as f64 * 1e9 / self.fs).round() as i64,
            received_ns: chunk.received_ns,
            sample_rate_hz: self.fs / self.decimate as f64,
            channels: self.channels.clone(),
            samples: filtered
                .iter()
                .map(|row| keep.iter().map(|&i| row[i]).collect())
                .collect(),
        })
    }

    fn continues(&self, chunk: &EegChunk) -> bool {
        self.stream_id == chunk.stream_id
            && self.channels == chunk.channels
            && self.fs == chunk.sample_rate_hz
    }

    fn expected_start_ns(&self) -> i64 {
        self.origin_ns + (self.samples_seen as f64 * 1e9 / self.fs).round() as i64
    }

    /// Pushes one chunk (after NaN-filling a gap of `gap_samples`) through every channel.
    fn push(
        &mut self,
        model: &SeizureModel,
        chunk: &EegChunk,
        gap_samples: usize,
    ) -> Result<Vec<FinalizedPoints>, InferenceError> {
        let filler = vec![f32::NAN; gap_samples];
        let mut out = Vec::with_capacity(self.per_channel.len());
        for (stream, row) in self.per_channel.iter_mut().zip(&chunk.samples) {
            let mut points = stream.push(model, &filler)?;
            let more = stream.push(model, row)?;
            if points.values.is_empty() {
                points.first_index = more.first_index;
            }
            points.values.extend(more.values);
            out.push(points);
        }
        self.samples_seen += (gap_samples + chunk.samples_per_channel()) as u64;
        self.next_seq = chunk.seq + 1;
        Ok(out)
    }

    fn finish(&mut self, model: &SeizureModel) -> Result<Vec<FinalizedPoints>, InferenceError> {
        self.per_channel
            .iter_mut()
            .map(|s| s.finish(model))
            .collect()
    }

    /// One record for points finalized together on every channel.
    fn record(
        &self,
        patient_id: &str,
        points: Vec<FinalizedPoints>,
        model: &ModelRef,
    ) -> Option<SeizureProbability> {
        let first = points.first()?;
        let n = first.values.len();
        if n == 0 {
            return None;
        }
        let first_index = first.first_index;
        let channel_p: Vec<Vec<f32>> = points.into_iter().map(|p| p.values).collect();
        let aggregate_p = (0..n)
            .map(|k| channel_p.iter().map(|row| row[k]).fold(f32::NAN, fmax))
            .collect();
        Some(SeizureProbability {
            patient_id: patient_id.to_owned(),
            start_ns: self.origin_ns + first_index as i64 * STEP_NS,
            step_ns: STEP_NS,
            channels: self.channels.clone(),
            channel_p,
            aggregate_p,
            model: model.clone(),
            emitted_ns: vigil_core::time::now_ns(),
        })
    }
}

/// What the stage did with one input record (for logs, metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Processed; `points` probability points published.
    Processed {
        /// Points published for this record.
        points: usize,
    },
    /// A resend of a chunk already processed.
    Duplicate,
    /// Refused and sent to the dead-letter topic.
    DeadLettered,
}

impl InferenceStage {
    /// Consumes until `shutdown`, then leaves the group after committing.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), InferenceError> {
        // Alert state first: fold the whole alerts topic (a fresh group reads from the
        // beginning) before touching EEG, so a restart neither re-raises nor forgets an alert.
        let book: AlertBook = Arc::default();
        let alerts_topic = self.bus.topic(Topic::Alerts);
        let bus_err = |e: vigil_core::bus::BusError| InferenceError::Bus(e.to_string());
        // Everything written before now must be folded: read up to the end offsets taken
        // before subscribing (the reader's own group starts from the oldest record).
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
                    return Ok(());
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
            apply_alert(&book, &self.alert_policies, &msg);
            replayed += 1;
            if pending
                .get(&msg.partition)
                .is_some_and(|end| msg.offset + 1 >= *end)
            {
                pending.remove(&msg.partition);
            }
        }
        tracing::info!(replayed, "alert state rebuilt from the alerts topic");
        let follower = {
            let (book, policies, shutdown) =
                (book.clone(), self.alert_policies.clone(), shutdown.clone());
            tokio::spawn(async move {
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
            })
        };
        let (tick_tx, mut tick_rx) = tokio::sync::mpsc::channel::<AlertEvent>(256);
        let ticks = tokio::spawn(run_ticks(
            book.clone(),
            TokioClock::system(),
            Duration::from_secs(1),
            tick_tx,
            shutdown.clone(),
        ));
        let timed = {
            let bus = self.bus.clone();
            tokio::spawn(async move {
                while let Some(event) = tick_rx.recv().await {
                    publish_alert(&bus, &event).await;
                }
            })
        };

        let (eeg_topic, hr_topic) = (self.bus.topic(Topic::EegRaw), self.bus.topic(Topic::HrRaw));
        let mut consumer = self
            .bus
            .subscribe(&self.group, &[eeg_topic, hr_topic.clone()])
            .await
            .map_err(|e| InferenceError::Bus(e.to_string()))?;
        self.readiness.set("bus", true, "subscribed");
        let mut patients: HashMap<String, PatientStream> = HashMap::new();
        let mut heart: HashMap<String, HeartStream> = HashMap::new();
        let result = loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                msg = consumer.recv() => msg,
            };
            let msg = match msg {
                Ok(msg) => msg,
                Err(err) => {
                    self.readiness.set("bus", false, err.to_string());
                    tracing::warn!(%err, "consume failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            self.readiness.set("bus", true, "consuming");
            let (handled, kind) = if msg.topic == hr_topic {
                (self.handle_heart_rate(&mut heart, &book, &msg).await, "hr")
            } else {
                (self.handle(&mut patients, &book, &msg).await, "eeg")
            };
            match handled {
                Ok(outcome) => {
                    tracing::debug!(
                        ?outcome,
                        kind,
                        partition = msg.partition,
                        offset = msg.offset,
                        "input record"
                    );
                    // Literal names, so dashboards and alert rules can be checked against the code.
                    let outcome_label = outcome_label(outcome);
                    if kind == "hr" {
                        metrics::counter!("vigil_inference_hr_batches_total", "outcome" => outcome_label)
                            .increment(1);
                    } else {
                        metrics::counter!("vigil_inference_chunks_total", "outcome" => outcome_label)
                            .increment(1);
                    }
                    if let Err(err) = consumer.ack(&msg) {
                        tracing::warn!(%err, "ack after rebalance; the record will be redelivered");
                    }
                }
                // Outputs not published: do not ack; the record is redelivered after a restart.
                Err(err) => break Err(err),
            }
        };
        close(consumer).await;
        let _ = tokio::join!(follower, ticks, timed);
        result
    }

    /// Processes one record; returns once its outputs are on the bus.
    async fn handle(
        &self,
        patients: &mut HashMap<String, PatientStream>,
        book: &AlertBook,
        msg: &BusMessage,
    ) -> Result<Outcome, InferenceError> {
        let chunk: EegChunk = match codec::decode(&msg.payload, &DecodeLimits::default()) {
            Ok(chunk) => chunk,
            Err(err) => return self.dead_letter(msg, &err.to_string()).await,
        };
        if let Err(err) = model_sample_rate(chunk.sample_rate_hz) {
            return self.dead_letter(msg, &err.to_string()).await;
        }
        let patient_id = chunk.patient_id.clone();
        let mut outputs = Vec::new();
        let mut state = match patients.remove(&patient_id) {
            Some(state) if state.continues(&chunk) => state,
            previous => {
                if let Some(mut old) = previous {
                    // A new device session: the old stream ended; publish its last points.
                    let model = self.model.clone();
                    let (old, points) = blocking(move || {
                        let points = old.finish(&model);
                        (old, points)
                    })
                    .await?;
                    outputs.extend(old.record(&patient_id, points?, &self.model_ref));
                }
                PatientStream::start(&chunk, self.params, self.mains)?
            }
        };
        if chunk.seq < state.next_seq {
            patients.insert(patient_id, state);
            return Ok(Outcome::Duplicate);
        }
        let gap_ns = chunk.start_ns - state.expected_start_ns();
        let gap_samples = if chunk.seq > state.next_seq && gap_ns > 0 {
            (gap_ns as f64 * state.fs / 1e9).round() as usize
        } else {
            0
        };
        if gap_samples as f64 > self.max_gap_s * state.fs {
            tracing::info!(
                patient_id,
                gap_s = gap_ns as f64 / 1e9,
                "long gap: restarting windows"
            );
            state = PatientStream::start(&chunk, self.params, self.mains)?;
        }
        let gap_samples = if state.samples_seen == 0 {
            0
        } else {
            gap_samples
        };
        let model = self.model.clone();
        let id = patient_id.clone();
        let (state, points, trace) = blocking(move || {
            let mut state = state;
            let trace = state.trace(&id, &chunk, gap_samples);
            let points = state.push(&model, &chunk, gap_samples);
            (state, points, trace)
        })
        .await?;
        let points = points?;
        outputs.extend(state.record(&patient_id, points, &self.model_ref));
        patients.insert(patient_id.clone(), state);

        let mut published = 0;
        let now = vigil_core::time::now_ns();
        let mut alerts = {
            let mut book = lock(book);
            let state = book.entry(patient_id.clone()).or_insert_with(|| {
                PatientAlerts::new(&patient_id, self.alert_policies.for_patient(&patient_id))
            });
            state.on_samples(now)
        };
        for record in &outputs {
            self.bus
                .publish_record(Topic::EegProb, &patient_id, record)
                .await
                .map_err(|e| InferenceError::Bus(e.to_string()))?;
            published += record.aggregate_p.len();
            let mut book = lock(book);
            if let Some(state) = book.get_mut(&patient_id) {
                alerts.extend(state.on_probability(record, now));
            }
        }
        for event in &alerts {
            self.bus
                .publish_record(Topic::Alerts, &patient_id, event)
                .await
                .map_err(|e| InferenceError::Bus(e.to_string()))?;
        }
        if let Some(trace) = &trace {
            self.bus
                .publish_record(Topic::EegTrace, &patient_id, trace)
                .await
                .map_err(|e| InferenceError::Bus(e.to_string()))?;
        }
        Ok(Outcome::Processed { points: published })
    }

    /// Processes one heart-rate batch; returns once its alert events are on the bus.
    async fn handle_heart_rate(
        &self,
        heart: &mut HashMap<String, HeartStream>,
        book: &AlertBook,
        msg: &BusMessage,
    ) -> Result<Outcome, InferenceError> {
        let batch: HrBatch = match codec::decode(&msg.payload, &DecodeLimits::default()) {
            Ok(batch) => batch,
            Err(err) => return self.dead_letter(msg, &err.to_string()).await,
        };
        let patient_id = batch.patient_id.clone();
        let stream = heart.entry(patient_id.clone()).or_default();
        if stream.stream_id == Some(batch.stream_id) && batch.seq < stream.next_seq {
            return Ok(Outcome::Duplicate);
        }
        stream.stream_id = Some(batch.stream_id);
        stream.next_seq = batch.seq + 1;
        let fresh: Vec<_> = batch
            .points
            .iter()
            .filter(|p| stream.last_t_ns.is_none_or(|last| p.t_ns > last))
            .copied()
            .collect();
        let Some(last) = fresh.last() else {
            return Ok(Outcome::Duplicate);
        };
        stream.last_t_ns = Some(last.t_ns);
        let events = {
            let mut book = lock(book);
            book.entry(patient_id.clone())
                .or_insert_with(|| {
                    PatientAlerts::new(&patient_id, self.alert_policies.for_patient(&patient_id))
                })
                .on_heart_rate(&fresh, vigil_core::time::now_ns())
        };
        for event in &events {
            self.bus
                .publish_record(Topic::Alerts, &patient_id, event)
                .await
                .map_err(|e| InferenceError::Bus(e.to_string()))?;
        }
        Ok(Outcome::Processed { points: 0 })
    }

    async fn dead_letter(&self, msg: &BusMessage, reason: &str) -> Result<Outcome, InferenceError> {
        tracing::warn!(
            reason,
            topic = msg.topic,
            partition = msg.partition,
            offset = msg.offset,
            "input record refused"
        );
        let letter = DeadLetter::new(
            "inference",
            Some((&msg.topic, msg.partition, msg.offset)),
            &msg.key,
            &msg.payload,
            reason,
            vigil_core::time::now_ns(),
        );
        let key = String::from_utf8_lossy(&msg.key).into_owned();
        self.bus
            .publish_record(Topic::Dlq, &key, &letter)
            .await
            .map_err(|e| InferenceError::Bus(e.to_string()))?;
        Ok(Outcome::DeadLettered)
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

/// Publishes a timer-driven alert event; a failure is logged (the timer fires again).
async fn publish_alert(bus: &Bus, event: &AlertEvent) {
    tracing::info!(patient_id = %event.patient_id, kind = ?event.kind, transition = ?event.transition, "alert");
    if let Err(err) = bus
        .publish_record(Topic::Alerts, &event.patient_id, event)
        .await
    {
        tracing::error!(%err, "alert event not published");
    }
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Processed { .. } => "processed",
        Outcome::Duplicate => "duplicate",
        Outcome::DeadLettered => "dead_lettered",
    }
}

/// DSP and the model are CPU-heavy: run them on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, InferenceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| InferenceError::Bus(format!("inference worker failed: {e}")))
}

async fn close(consumer: Box<dyn BusConsumer>) {
    if let Err(err) = consumer.close().await {
        tracing::warn!(%err, "closing the consumer");
    }
}
