//! One patient's current EEG device stream: per-channel windows, display filters, and the
//! records made from them.

use std::collections::VecDeque;
use vigil_core::config::TrendsConfig;

use vigil_core::record::{
    EegChunk, EegTrace, EegTrends, ModelRef, ProvisionalProbability, SeizureProbability,
};

use crate::display::{DisplayFilter, Mains};
use crate::model::SeizureModel;
use crate::spectrogram::SpectrogramPlan;
use crate::trends::TrendEngine;
use crate::windowing::{
    fmax, ChannelStream, FinalizedPoints, PushedChunk, WindowGeometry, WindowInput, WindowParams,
};
use crate::InferenceError;

/// Grid step of the model output, 0.5 s.
pub const STEP_NS: i64 = 500_000_000;

/// NaN-aware max over channels, point by point: the patient's aggregate probability.
pub fn aggregate(channel_p: &[Vec<f32>]) -> Vec<f32> {
    let n = channel_p.first().map_or(0, Vec::len);
    (0..n)
        .map(|k| channel_p.iter().map(|row| row[k]).fold(f32::NAN, fmax))
        .collect()
}

/// One patient's current device stream: everything inference keeps per patient between
/// chunks (a shard owns it; its size is tested in `tests/memory.rs`).
pub struct PatientStream {
    /// The device session.
    pub stream_id: uuid::Uuid,
    /// Channel labels, in sample order.
    pub channels: Vec<String>,
    /// Sampling rate, Hz.
    pub fs: f64,
    /// Time of the stream's first sample: grid point k is at origin + k * 0.5 s.
    pub origin_ns: i64,
    /// The next chunk expected.
    pub next_seq: u64,
    /// Samples per channel pushed so far, gaps included.
    pub samples_seen: u64,
    per_channel: Vec<ChannelStream>,
    /// Display filters for the trace topic, one per channel.
    display: Vec<DisplayFilter>,
    /// Filter output samples produced so far (per channel).
    displayed: u64,
    /// Keep every `decimate`-th filtered sample: the trace keeps >= 200 samples/s, so its
    /// Nyquist (>= 100 Hz) stays above the 70 Hz band and nothing aliases.
    decimate: u64,
    /// qEEG trends (None when disabled).
    trends: Option<TrendEngine>,
    /// `(end of the points covered, wall time)` of each provisional record that covered new
    /// points, oldest first, until final values pass them: for the provisional-to-final delay.
    provisional_published: VecDeque<(i64, i64)>,
}

impl PatientStream {
    /// A stream starting with `chunk` (not pushed yet).
    pub fn start(
        chunk: &EegChunk,
        params: WindowParams,
        mains: Mains,
        trends: Option<&TrendsConfig>,
    ) -> Result<Self, InferenceError> {
        let trends = match trends {
            Some(config) => Some(
                TrendEngine::new(
                    &chunk.channels,
                    chunk.sample_rate_hz,
                    chunk.start_ns,
                    config.params.clone(),
                    config.regions_for(&chunk.patient_id),
                )
                .map_err(|e| InferenceError::Params(e.to_string()))?,
            ),
            None => None,
        };
        let geometry = WindowGeometry::new(chunk.sample_rate_hz, params)?;
        let plan = SpectrogramPlan::new(geometry.fs);
        let per_channel = chunk
            .channels
            .iter()
            .map(|_| ChannelStream::with_plan(geometry, plan.clone()))
            .collect();
        let display = DisplayFilter::new(chunk.sample_rate_hz as usize, mains);
        Ok(Self {
            stream_id: chunk.stream_id,
            channels: chunk.channels.clone(),
            fs: chunk.sample_rate_hz,
            origin_ns: chunk.start_ns,
            next_seq: chunk.seq,
            samples_seen: 0,
            per_channel,
            display: vec![display; chunk.channels.len()],
            displayed: 0,
            decimate: ((chunk.sample_rate_hz / 200.0).floor() as u64).max(1),
            trends,
            provisional_published: VecDeque::new(),
        })
    }

    /// Filters the chunk (and gap filler) for display; returns a trace once the filter has
    /// produced samples that start at or after the stream origin.
    pub fn trace(
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
                j >= delay && (j - delay).is_multiple_of(self.decimate)
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

    /// Feeds the chunk (after NaN for a gap of `gap_samples`) to the trends; returns the
    /// intervals it completed.
    pub fn trends(
        &mut self,
        patient_id: &str,
        chunk: &EegChunk,
        gap_samples: usize,
    ) -> Vec<EegTrends> {
        let Some(engine) = self.trends.as_mut() else {
            return Vec::new();
        };
        let mut points = Vec::new();
        let mut fed = Ok(());
        if gap_samples > 0 {
            let filler = vec![vec![f32::NAN; gap_samples]; chunk.channels.len()];
            fed = engine.push(&filler, &mut points);
        }
        if let Err(err) = fed.and_then(|()| engine.push(&chunk.samples, &mut points)) {
            // The chunk continues this stream, so its shape matches; a failure is a bug.
            tracing::error!(patient_id, %err, "trends skipped for a chunk");
        }
        let now = vigil_core::time::now_ns();
        points
            .iter()
            .map(|p| engine.record(p, patient_id, self.stream_id, now))
            .collect()
    }

    /// The chunk belongs to this stream (same session, channels and rate).
    pub fn continues(&self, chunk: &EegChunk) -> bool {
        self.stream_id == chunk.stream_id
            && self.channels == chunk.channels
            && self.fs == chunk.sample_rate_hz
    }

    /// When the next chunk should start if nothing is missing.
    pub fn expected_start_ns(&self) -> i64 {
        self.origin_ns + (self.samples_seen as f64 * 1e9 / self.fs).round() as i64
    }

    /// Pushes one chunk (after NaN-filling a gap of `gap_samples`) into every channel's
    /// windows; returns each channel's window jobs, for the model pool.
    pub fn push_samples(&mut self, chunk: &EegChunk, gap_samples: usize) -> Vec<PushedChunk> {
        let filler = vec![f32::NAN; gap_samples];
        let out = self
            .per_channel
            .iter_mut()
            .zip(&chunk.samples)
            .map(|(stream, row)| {
                let mut pushed = stream.push_samples(&filler);
                let more = stream.push_samples(row);
                pushed.jobs.extend(more.jobs);
                pushed.final_end = more.final_end;
                pushed
            })
            .collect();
        self.samples_seen += (gap_samples + chunk.samples_per_channel()) as u64;
        self.next_seq = chunk.seq + 1;
        out
    }

    /// The model input of channel `channel`'s window at block `start`, a job of
    /// [`PatientStream::push_samples`] to evaluate (see [`ChannelStream::take_input`]).
    pub fn take_input(&mut self, channel: usize, start: usize) -> Option<WindowInput> {
        self.per_channel.get_mut(channel)?.take_input(start)
    }

    /// Merges one chunk's model outputs (per channel: `(window start, output)` in job order).
    pub fn complete(
        &mut self,
        results: Vec<Vec<(usize, Option<Vec<f32>>)>>,
        final_ends: &[usize],
    ) -> Vec<FinalizedPoints> {
        self.per_channel
            .iter_mut()
            .zip(results)
            .zip(final_ends)
            .map(|((stream, results), &end)| stream.complete(results, end))
            .collect()
    }

    /// Ends the stream: every remaining point, by the reference's end-of-recording rules.
    /// Only call once every pushed chunk is complete.
    pub fn finish(&mut self, model: &SeizureModel) -> Result<Vec<FinalizedPoints>, InferenceError> {
        self.per_channel
            .iter_mut()
            .map(|s| s.finish(model))
            .collect()
    }

    /// The aggregate lower bound of points not final yet: `(time of the first, values)`.
    /// Each value can only grow until final (see docs/ALERTS.md, early alerting).
    pub fn provisional(&self) -> Option<(i64, Vec<f32>)> {
        let parts: Vec<(usize, Vec<f32>)> = self
            .per_channel
            .iter()
            .map(ChannelStream::provisional)
            .collect();
        let first = parts.iter().map(|(i, _)| *i).max()?;
        let end = parts.iter().map(|(i, v)| i + v.len()).min()?;
        if end <= first {
            return None;
        }
        let rows: Vec<Vec<f32>> = parts
            .iter()
            .map(|(i, v)| v[first - i..end - i].to_vec())
            .collect();
        Some((self.origin_ns + first as i64 * STEP_NS, aggregate(&rows)))
    }

    /// The provisional record of `values` (from [`Self::provisional`]) published at
    /// `now_ns`: trailing points no window has covered yet are left out (they are not
    /// evaluated *yet*, which the next record shows); None when no point is left.
    pub fn provisional_record(
        &mut self,
        patient_id: &str,
        start_ns: i64,
        values: &[f32],
        model: &ModelRef,
        now_ns: i64,
    ) -> Option<ProvisionalProbability> {
        let covered = values.iter().rposition(|p| !p.is_nan())? + 1;
        let end_ns = start_ns + covered as i64 * STEP_NS;
        if self
            .provisional_published
            .back()
            .is_none_or(|&(end, _)| end_ns > end)
        {
            self.provisional_published.push_back((end_ns, now_ns));
        }
        Some(ProvisionalProbability {
            patient_id: patient_id.to_owned(),
            start_ns,
            step_ns: STEP_NS,
            aggregate_p: values[..covered].to_vec(),
            model: model.clone(),
            emitted_ns: now_ns,
        })
    }

    /// How long before `now_ns` a provisional value of `record`'s first point was first
    /// published: the time a screen showed a lower bound before the final value. None when no
    /// provisional record covered it (e.g. the stream's end).
    pub fn provisional_to_final(
        &mut self,
        record: &SeizureProbability,
        now_ns: i64,
    ) -> Option<i64> {
        let first_published = self
            .provisional_published
            .iter()
            .find(|&&(end, _)| end > record.start_ns)
            .map(|&(_, at)| now_ns - at);
        let final_end = record.start_ns + record.aggregate_p.len() as i64 * record.step_ns;
        while self
            .provisional_published
            .front()
            .is_some_and(|&(end, _)| end <= final_end)
        {
            self.provisional_published.pop_front();
        }
        first_published
    }

    /// One record for points finalized together on every channel.
    pub fn record(
        &self,
        patient_id: &str,
        points: Vec<FinalizedPoints>,
        model: &ModelRef,
    ) -> Option<SeizureProbability> {
        let first = points.first()?;
        if first.values.is_empty() {
            return None;
        }
        let first_index = first.first_index;
        let channel_p: Vec<Vec<f32>> = points.into_iter().map(|p| p.values).collect();
        Some(SeizureProbability {
            patient_id: patient_id.to_owned(),
            start_ns: self.origin_ns + first_index as i64 * STEP_NS,
            step_ns: STEP_NS,
            channels: self.channels.clone(),
            aggregate_p: aggregate(&channel_p),
            channel_p,
            model: model.clone(),
            emitted_ns: vigil_core::time::now_ns(),
        })
    }
}
