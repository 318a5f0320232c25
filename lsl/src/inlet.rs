//! One LSL inlet on its own OS thread. liblsl's calls block (resolve, pull, time correction)
//! and its handles are not `Send`, so everything that touches liblsl for a stream lives on
//! that stream's thread; finished records go to the async forwarder through a bounded
//! channel, whose back-pressure leaves samples in liblsl's buffer while the gateway is slow.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lsl::Pullable;
use tokio::sync::mpsc;
use vigil_core::config::{LslKind, LslStreamConfig};
use vigil_core::record::{EegChunk, HrBatch};
use vigil_core::CancellationToken;

use crate::chunker::{ChunkerCounts, EegChunker, HrBatcher, StreamRules};
use crate::clock::{Correction, TimeMap, UtcMap};
use crate::error::LslError;
use crate::meta::{ChannelDesc, StreamDesc};
use crate::StreamStats;

/// How one configured stream is read.
#[derive(Debug, Clone)]
pub(crate) struct InletSpec {
    pub key: String,
    pub stream: LslStreamConfig,
    pub chunk_ms: u64,
    pub resolve_wait: Duration,
    pub buffer_s: i32,
    pub tolerance_ns: i64,
    pub max_gap_ns: i64,
    pub correction_interval: Duration,
}

/// A record for the gateway.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    Eeg(EegChunk),
    Hr(HrBatch),
}

/// A record and, when its last sample is a real one, that sample's time on this host's LSL
/// clock (to time push -> acknowledgement).
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub record: Record,
    pub pushed_local_s: Option<f64>,
}

/// What the inlet thread tells the forwarder.
#[derive(Debug)]
pub(crate) enum Event {
    Send(Outgoing),
    Fatal(LslError),
}

pub(crate) type SharedStats = Arc<Mutex<StreamStats>>;

pub(crate) fn lock(stats: &SharedStats) -> MutexGuard<'_, StreamStats> {
    stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

enum Sink {
    Eeg(EegChunker),
    Hr(HrBatcher),
}

impl Sink {
    fn build(spec: &InletSpec, desc: &StreamDesc) -> Result<Self, LslError> {
        let rules = StreamRules {
            patient_id: spec.stream.patient_id.clone(),
            device_id: spec.stream.device_id.clone(),
            tolerance_ns: spec.tolerance_ns,
            max_gap_ns: spec.max_gap_ns,
        };
        Ok(match spec.stream.kind {
            LslKind::Eeg => Self::Eeg(EegChunker::new(
                rules,
                desc.eeg_layout(&spec.stream.default_unit)?,
                spec.chunk_ms,
            )),
            LslKind::Hr => Self::Hr(HrBatcher::new(
                rules,
                desc.hr_layout()?,
                spec.stream.hr_source,
            )),
        })
    }

    fn push(&mut self, t_ns: i64, values: &[f64], out: &mut Vec<Record>) {
        match self {
            Self::Eeg(c) => {
                let mut chunks = Vec::new();
                c.push(t_ns, values, &mut chunks);
                out.extend(chunks.into_iter().map(Record::Eeg));
            }
            Self::Hr(b) => {
                let mut batches = Vec::new();
                b.push(t_ns, values, &mut batches);
                out.extend(batches.into_iter().map(Record::Hr));
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<Record>) {
        match self {
            Self::Eeg(c) => {
                let mut chunks = Vec::new();
                c.flush(&mut chunks);
                out.extend(chunks.into_iter().map(Record::Eeg));
            }
            Self::Hr(b) => {
                let mut batches = Vec::new();
                b.flush(&mut batches);
                out.extend(batches.into_iter().map(Record::Hr));
            }
        }
    }

    fn counts(&self) -> ChunkerCounts {
        match self {
            Self::Eeg(c) => c.counts,
            Self::Hr(b) => b.counts,
        }
    }
}

/// The parts of liblsl's info the bridge reads.
pub(crate) fn describe(info: &mut lsl::StreamInfo) -> StreamDesc {
    let mut channels = Vec::new();
    let mut channel = info.desc().child("channels").child("channel");
    while channel.is_valid() {
        channels.push(ChannelDesc {
            label: channel.child_value_named("label"),
            unit: channel.child_value_named("unit"),
        });
        channel = channel.next_sibling_named("channel");
    }
    StreamDesc {
        name: info.stream_name(),
        lsl_type: info.stream_type(),
        source_id: info.source_id(),
        nominal_rate_hz: info.nominal_srate(),
        channel_count: usize::try_from(info.channel_count()).unwrap_or(0),
        string_format: info.channel_format() == lsl::ChannelFormat::String,
        channels,
    }
}

/// The XPath predicate that selects the configured stream.
pub(crate) fn predicate(stream: &LslStreamConfig) -> Result<String, LslError> {
    let mut parts = vec![format!("type='{}'", stream.kind.lsl_type())];
    for (field, value) in [("name", &stream.name), ("source_id", &stream.source_id)] {
        if value.contains('\'') {
            return Err(LslError::Config(format!(
                "{field} {value:?} contains a single quote, which an LSL query cannot express"
            )));
        }
        if !value.is_empty() {
            parts.push(format!("{field}='{value}'"));
        }
    }
    Ok(parts.join(" and "))
}

/// The thread's body: reports a fatal error to the forwarder instead of returning it.
pub(crate) fn run(
    spec: InletSpec,
    tx: mpsc::Sender<Event>,
    stats: SharedStats,
    stop: CancellationToken,
) {
    if let Err(err) = Inlet::new(spec, tx.clone(), stats, stop).run() {
        let _ = tx.blocking_send(Event::Fatal(err));
    }
}

enum PullEnd {
    Stopped,
    Lost,
}

struct Inlet {
    spec: InletSpec,
    tx: mpsc::Sender<Event>,
    stats: SharedStats,
    stop: CancellationToken,
    sink: Option<(StreamDesc, Sink)>,
}

impl Inlet {
    fn new(
        spec: InletSpec,
        tx: mpsc::Sender<Event>,
        stats: SharedStats,
        stop: CancellationToken,
    ) -> Self {
        Self {
            spec,
            tx,
            stats,
            stop,
            sink: None,
        }
    }

    fn run(mut self) -> Result<(), LslError> {
        let query = predicate(&self.spec.stream)?;
        loop {
            let Some(info) = self.resolve(&query)? else {
                return Ok(());
            };
            // recover = true: an outlet with a source_id that restarts is re-attached.
            let inlet = lsl::StreamInlet::new(&info, self.spec.buffer_s, 0, true)?;
            let mut full = inlet.info(5.0)?;
            let desc = describe(&mut full);
            let reuse = self.sink.as_ref().is_some_and(|(known, _)| {
                known.channels == desc.channels
                    && known.nominal_rate_hz == desc.nominal_rate_hz
                    && known.channel_count == desc.channel_count
            });
            if !reuse {
                let mut out = Vec::new();
                if let Some((_, mut old)) = self.sink.take() {
                    old.flush(&mut out);
                }
                if !self.send_all(&mut out, None) {
                    return Ok(());
                }
                self.sink = Some((desc.clone(), Sink::build(&self.spec, &desc)?));
            }
            inlet.open_stream(5.0)?;
            let correction = correct(&inlet, 5.0).unwrap_or_default();
            let time = TimeMap {
                utc: UtcMap::measure(),
                correction,
            };
            tracing::info!(
                stream = %self.spec.key, name = %desc.name, source_id = %desc.source_id,
                channels = desc.channel_count, rate_hz = desc.nominal_rate_hz,
                correction_s = correction.offset_s, error_ns = time.error_ns(),
                "LSL inlet open"
            );
            {
                let mut stats = lock(&self.stats);
                stats.stream = Some(desc);
                stats.time_error_ns = stats.time_error_ns.max(time.error_ns());
                stats.correction_s = correction.offset_s;
                stats.inlets_opened += 1;
            }
            match self.pull(&inlet, time)? {
                PullEnd::Stopped => return Ok(()),
                PullEnd::Lost => {
                    tracing::warn!(stream = %self.spec.key, "LSL stream lost; resolving again")
                }
            }
        }
    }

    /// Resolves until the stream is found (`None` when stopped first).
    fn resolve(&self, query: &str) -> Result<Option<lsl::StreamInfo>, LslError> {
        let wait = self.spec.resolve_wait.as_secs_f64();
        let mut warned = false;
        while !self.stop.is_cancelled() {
            let found = lsl::resolve_bypred(query, 1, wait)?;
            if let Some(info) = found.into_iter().next() {
                return Ok(Some(info));
            }
            if !warned {
                tracing::info!(stream = %self.spec.key, %query, "waiting for the LSL stream");
                warned = true;
            }
        }
        Ok(None)
    }

    /// Pulls samples into records until stopped or the stream is lost.
    fn pull(&mut self, inlet: &lsl::StreamInlet, mut time: TimeMap) -> Result<PullEnd, LslError> {
        let Some((_, sink)) = self.sink.as_mut() else {
            return Ok(PullEnd::Stopped);
        };
        let chunk = Duration::from_millis(self.spec.chunk_ms);
        let mut values: Vec<f64> = Vec::new();
        let mut out = Vec::new();
        let mut last_sample = Instant::now();
        let mut batch_started: Option<Instant> = None;
        let mut last_correction = Instant::now();
        let mut samples = 0u64;
        let end = loop {
            if self.stop.is_cancelled() {
                sink.flush(&mut out);
                break PullEnd::Stopped;
            }
            let mut pushed_local_s = None;
            match inlet.pull_sample_buf(&mut values, 0.05) {
                Ok(ts) if ts != 0.0 => {
                    sink.push(time.utc_ns(ts), &values, &mut out);
                    pushed_local_s = Some(ts + time.correction.offset_s);
                    samples += 1;
                    last_sample = Instant::now();
                    batch_started.get_or_insert(last_sample);
                }
                Ok(_) => {}
                Err(lsl::Error::StreamLost) => {
                    sink.flush(&mut out);
                    break PullEnd::Lost;
                }
                Err(err) => return Err(err.into()),
            }
            // A partial chunk goes out when the outlet pauses (or, for heart rate, when the
            // batch is chunk_ms old), so what was pulled is never held back.
            let stale = last_sample.elapsed() >= chunk;
            if stale
                || batch_started
                    .is_some_and(|t| matches!(sink, Sink::Hr(_)) && t.elapsed() >= chunk)
            {
                sink.flush(&mut out);
            }
            if !out.is_empty() {
                batch_started = None;
                let counts = sink.counts();
                let mut stats = lock(&self.stats);
                stats.samples += std::mem::take(&mut samples);
                stats.counts = counts;
            }
            if !send_all(&self.tx, &mut out, pushed_local_s) {
                return Ok(PullEnd::Stopped);
            }
            if last_correction.elapsed() >= self.spec.correction_interval {
                last_correction = Instant::now();
                if let Ok(correction) = correct(inlet, 0.5) {
                    time.correction = correction;
                    time.utc = UtcMap::measure();
                    let mut stats = lock(&self.stats);
                    stats.time_error_ns = stats.time_error_ns.max(time.error_ns());
                    stats.correction_s = correction.offset_s;
                }
            }
        };
        let counts = sink.counts();
        {
            let mut stats = lock(&self.stats);
            stats.samples += samples;
            stats.counts = counts;
        }
        if !send_all(&self.tx, &mut out, None) {
            return Ok(PullEnd::Stopped);
        }
        Ok(end)
    }

    fn send_all(&self, out: &mut Vec<Record>, pushed_local_s: Option<f64>) -> bool {
        send_all(&self.tx, out, pushed_local_s)
    }
}

/// Hands the records to the forwarder (blocking while it is behind); `false` once it is gone.
fn send_all(tx: &mpsc::Sender<Event>, out: &mut Vec<Record>, pushed_local_s: Option<f64>) -> bool {
    for record in out.drain(..) {
        let real_end = match &record {
            Record::Eeg(chunk) => chunk
                .samples
                .first()
                .and_then(|row| row.last())
                .is_some_and(|v| !v.is_nan()),
            Record::Hr(_) => true,
        };
        let event = Event::Send(Outgoing {
            record,
            pushed_local_s: pushed_local_s.filter(|_| real_end),
        });
        if tx.blocking_send(event).is_err() {
            return false;
        }
    }
    true
}

fn correct(inlet: &lsl::StreamInlet, timeout_s: f64) -> Result<Correction, lsl::Error> {
    let (offset_s, _remote, uncertainty_s) = inlet.time_correction_ex(timeout_s)?;
    Ok(Correction {
        offset_s,
        uncertainty_s,
    })
}
