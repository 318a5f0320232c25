//! Samples with UTC times into records, with the gateway's stream rules:
//!
//! - a record stream (`stream_id`, seqs from 0) lasts as long as the samples are continuous;
//! - a jump between consecutive EEG timestamps of more than one period plus the tolerance is
//!   a gap: up to `max_gap_s` (the value inference uses, `inference.max_gap_s`) it is filled
//!   with NaN samples ("missing"), so the chunks stay gapless in time and seq; a longer gap,
//!   or time running backwards, starts a new stream, exactly where inference would restart
//!   its windows anyway;
//! - heart-rate points start a new stream after a pause longer than `max_gap_s`; a point not
//!   later than the previous one, or with an implausible bpm, is dropped (and counted),
//!   because the gateway would refuse the whole batch.

use uuid::Uuid;
use vigil_core::record::{EegChunk, HrBatch, HrPoint, HrSource, RecordLimits};

use crate::meta::{EegLayout, HrLayout};

/// Identity and timing rules shared by both chunkers.
#[derive(Debug, Clone)]
pub struct StreamRules {
    /// Patient id of the records.
    pub patient_id: String,
    /// Device id of the records.
    pub device_id: String,
    /// Jitter below this is not a gap, in ns.
    pub tolerance_ns: i64,
    /// Longest gap filled with NaN (EEG) or kept in one stream (HR), in ns.
    pub max_gap_ns: i64,
}

/// What the chunkers did besides producing records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkerCounts {
    /// NaN samples (per channel) inserted for gaps.
    pub nan_filled: u64,
    /// Streams started after the first (long gaps, time running backwards).
    pub new_streams: u64,
    /// Heart-rate points dropped (not increasing in time, or bpm outside (0, 400)).
    pub dropped_points: u64,
}

/// EEG samples into [`EegChunk`]s of a fixed length.
#[derive(Debug)]
pub struct EegChunker {
    rules: StreamRules,
    layout: EegLayout,
    chunk_len: usize,
    period_ns: f64,
    stream_id: Uuid,
    next_seq: u64,
    started: bool,
    buf: Vec<Vec<f32>>,
    buf_start_ns: i64,
    last_ns: Option<i64>,
    /// Counters.
    pub counts: ChunkerCounts,
}

impl EegChunker {
    /// `chunk_ms` long chunks, shortened so one chunk stays within the record limits.
    pub fn new(rules: StreamRules, layout: EegLayout, chunk_ms: u64) -> Self {
        let channels = layout.labels.len().max(1);
        let wanted = (layout.rate_hz * chunk_ms as f64 / 1e3).round().max(1.0) as usize;
        // 200k f32 values stay well inside a 1 MiB record with its header.
        let cap = (RecordLimits::default().max_samples.min(200_000) / channels).max(1);
        Self {
            period_ns: 1e9 / layout.rate_hz,
            chunk_len: wanted.min(cap),
            buf: vec![Vec::new(); channels],
            rules,
            layout,
            stream_id: Uuid::new_v4(),
            next_seq: 0,
            started: false,
            buf_start_ns: 0,
            last_ns: None,
            counts: ChunkerCounts::default(),
        }
    }

    /// Samples per channel of a full chunk.
    pub fn chunk_len(&self) -> usize {
        self.chunk_len
    }

    /// The current record stream.
    pub fn stream_id(&self) -> Uuid {
        self.stream_id
    }

    /// Adds one sample (one value per channel, in the stream's units) taken at `t_ns` (UTC);
    /// finished chunks are appended to `out`.
    pub fn push(&mut self, t_ns: i64, values: &[f64], out: &mut Vec<EegChunk>) {
        if let Some(last) = self.last_ns {
            let excess = (t_ns - last) as f64 - self.period_ns;
            if excess < -(self.period_ns + self.rules.tolerance_ns as f64) {
                self.new_stream(out);
            } else if excess > self.rules.tolerance_ns as f64 {
                if excess <= self.rules.max_gap_ns as f64 {
                    let missing = (excess / self.period_ns).round() as usize;
                    for k in 1..=missing {
                        let t = last + (k as f64 * self.period_ns).round() as i64;
                        self.append(t, None, out);
                    }
                    self.counts.nan_filled += missing as u64;
                } else {
                    self.new_stream(out);
                }
            }
        }
        self.append(t_ns, Some(values), out);
    }

    fn new_stream(&mut self, out: &mut Vec<EegChunk>) {
        self.flush(out);
        self.stream_id = Uuid::new_v4();
        self.next_seq = 0;
        self.last_ns = None;
        self.counts.new_streams += 1;
    }

    fn append(&mut self, t_ns: i64, values: Option<&[f64]>, out: &mut Vec<EegChunk>) {
        if self.buf[0].is_empty() {
            self.buf_start_ns = t_ns;
        }
        for (c, row) in self.buf.iter_mut().enumerate() {
            let value = match values {
                Some(values) => {
                    (values.get(c).copied().unwrap_or(f64::NAN) * self.layout.scales[c]) as f32
                }
                None => f32::NAN,
            };
            row.push(value);
        }
        self.last_ns = Some(t_ns);
        self.started = true;
        if self.buf[0].len() >= self.chunk_len {
            self.flush(out);
        }
    }

    /// Sends the samples collected so far as a (possibly short) chunk.
    pub fn flush(&mut self, out: &mut Vec<EegChunk>) {
        if self.buf[0].is_empty() {
            return;
        }
        let samples = self
            .buf
            .iter_mut()
            .map(|row| std::mem::replace(row, Vec::with_capacity(self.chunk_len)))
            .collect();
        out.push(EegChunk {
            patient_id: self.rules.patient_id.clone(),
            device_id: self.rules.device_id.clone(),
            stream_id: self.stream_id,
            seq: self.next_seq,
            start_ns: self.buf_start_ns,
            received_ns: 0,
            sample_rate_hz: self.layout.rate_hz,
            channels: self.layout.labels.clone(),
            unit: Default::default(),
            samples,
        });
        self.next_seq += 1;
    }
}

/// Heart-rate points into [`HrBatch`]es.
#[derive(Debug)]
pub struct HrBatcher {
    rules: StreamRules,
    layout: HrLayout,
    source: HrSource,
    stream_id: Uuid,
    next_seq: u64,
    points: Vec<HrPoint>,
    last_ns: Option<i64>,
    /// Counters.
    pub counts: ChunkerCounts,
}

impl HrBatcher {
    /// A batcher for a stream laid out as `layout`.
    pub fn new(rules: StreamRules, layout: HrLayout, source: HrSource) -> Self {
        Self {
            rules,
            layout,
            source,
            stream_id: Uuid::new_v4(),
            next_seq: 0,
            points: Vec::new(),
            last_ns: None,
            counts: ChunkerCounts::default(),
        }
    }

    /// Points waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.points.len()
    }

    /// Adds one sample (bpm and maybe RR, as the stream's channels) taken at `t_ns`.
    pub fn push(&mut self, t_ns: i64, values: &[f64], out: &mut Vec<HrBatch>) {
        let bpm = values.get(self.layout.bpm).copied().unwrap_or(f64::NAN) as f32;
        let rr_ms = self
            .layout
            .rr
            .and_then(|(i, scale)| values.get(i).map(|v| (v * scale) as f32))
            .filter(|rr| rr.is_finite() && *rr > 0.0);
        if !(bpm.is_finite() && bpm > 0.0 && bpm < 400.0) {
            self.counts.dropped_points += 1;
            return;
        }
        if let Some(last) = self.last_ns {
            if t_ns <= last {
                self.counts.dropped_points += 1;
                return;
            }
            if t_ns - last > self.rules.max_gap_ns {
                self.flush(out);
                self.stream_id = Uuid::new_v4();
                self.next_seq = 0;
                self.counts.new_streams += 1;
            }
        }
        self.last_ns = Some(t_ns);
        self.points.push(HrPoint { t_ns, bpm, rr_ms });
        if self.points.len() >= RecordLimits::default().max_points {
            self.flush(out);
        }
    }

    /// Sends the points collected so far.
    pub fn flush(&mut self, out: &mut Vec<HrBatch>) {
        if self.points.is_empty() {
            return;
        }
        out.push(HrBatch {
            patient_id: self.rules.patient_id.clone(),
            device_id: self.rules.device_id.clone(),
            stream_id: self.stream_id,
            seq: self.next_seq,
            points: std::mem::take(&mut self.points),
            source: self.source,
        });
        self.next_seq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> StreamRules {
        StreamRules {
            patient_id: "p".into(),
            device_id: "d".into(),
            tolerance_ns: 20_000_000,
            max_gap_ns: 30_000_000_000,
        }
    }

    fn chunker() -> EegChunker {
        let layout = EegLayout {
            rate_hz: 100.0,
            labels: vec!["A".into(), "B".into()],
            scales: vec![1.0, 1e3],
        };
        EegChunker::new(rules(), layout, 100)
    }

    const T0: i64 = 1_700_000_000_000_000_000;
    const PERIOD: i64 = 10_000_000;

    fn feed(c: &mut EegChunker, from: usize, to: usize, t0: i64, out: &mut Vec<EegChunk>) {
        for i in from..to {
            c.push(t0 + (i - from) as i64 * PERIOD, &[i as f64, 0.5], out);
        }
    }

    #[test]
    fn continuous_samples_become_gapless_chunks_scaled_to_microvolts() {
        let mut c = chunker();
        let mut out = Vec::new();
        // 3 ms of jitter is not a gap.
        for i in 0..25 {
            let jitter = if i % 2 == 0 { 3_000_000 } else { 0 };
            c.push(T0 + i * PERIOD + jitter, &[i as f64, 0.5], &mut out);
        }
        c.flush(&mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(out[1].start_ns, T0 + 10 * PERIOD + 3_000_000);
        assert_eq!(out[2].samples[0], vec![20.0, 21.0, 22.0, 23.0, 24.0]);
        assert_eq!(out[0].samples[1][0], 500.0, "mV scaled to uV");
        assert_eq!(c.counts, ChunkerCounts::default());
    }

    #[test]
    fn a_short_gap_is_filled_with_nan_in_the_same_stream() {
        let mut c = chunker();
        let mut out = Vec::new();
        feed(&mut c, 0, 15, T0, &mut out);
        // The outlet went away for 0.5 s (50 samples' worth) and came back.
        let resume = T0 + 14 * PERIOD + 51 * PERIOD;
        feed(&mut c, 15, 40, resume, &mut out);
        c.flush(&mut out);
        let stream = out[0].stream_id;
        assert!(out.iter().all(|c| c.stream_id == stream));
        let a: Vec<f32> = out.iter().flat_map(|c| c.samples[0].clone()).collect();
        assert_eq!(a.len(), 40 + 50);
        assert!(a[15..65].iter().all(|v| v.is_nan()));
        assert_eq!(a[65], 15.0);
        assert_eq!(c.counts.nan_filled, 50);
        let seqs: Vec<u64> = out.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_long_gap_or_time_going_back_starts_a_new_stream() {
        let mut c = chunker();
        let mut out = Vec::new();
        feed(&mut c, 0, 15, T0, &mut out);
        let first = c.stream_id();
        feed(&mut c, 15, 20, T0 + 31_000_000_000, &mut out);
        let second = c.stream_id();
        assert_ne!(first, second);
        feed(&mut c, 20, 25, T0, &mut out);
        c.flush(&mut out);
        assert_ne!(c.stream_id(), second);
        assert_eq!(c.counts.new_streams, 2);
        assert_eq!(c.counts.nan_filled, 0);
        // Each stream starts at seq 0 and carries its own samples only.
        let streams: Vec<(Uuid, u64, usize)> = out
            .iter()
            .map(|c| (c.stream_id, c.seq, c.samples_per_channel()))
            .collect();
        assert_eq!(
            streams,
            vec![
                (first, 0, 10),
                (first, 1, 5),
                (second, 0, 5),
                (c.stream_id(), 0, 5)
            ]
        );
    }

    #[test]
    fn heart_rate_drops_implausible_and_unordered_points() {
        let layout = HrLayout {
            bpm: 0,
            rr: Some((1, 1.0)),
        };
        let mut b = HrBatcher::new(rules(), layout, HrSource::ChestStrap);
        let mut out = Vec::new();
        b.push(T0, &[60.0, 1000.0], &mut out);
        b.push(T0, &[61.0, 990.0], &mut out); // same time
        b.push(T0 + 1_000_000_000, &[0.0, 0.0], &mut out); // no contact
        b.push(T0 + 2_000_000_000, &[62.0, f64::NAN], &mut out);
        b.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].points.len(), 2);
        assert_eq!(out[0].points[1].rr_ms, None);
        assert_eq!(b.counts.dropped_points, 2);
        b.push(T0 + 40_000_000_000, &[63.0, 950.0], &mut out);
        b.flush(&mut out);
        assert_ne!(out[1].stream_id, out[0].stream_id, "long pause: new stream");
        assert_eq!(out[1].seq, 0);
    }
}
