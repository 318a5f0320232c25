//! Taking patients over: when this instance starts consuming a partition of `vigil.eeg.raw`
//! (at start-up, or after the group moved the partition here), it first replays, without
//! publishing, the records before its start offset that the partition's patients' windows
//! still need. Their windows then continue where the previous owner's stopped, so a seizure
//! that began before the move is still evaluated and alerted (docs/RELIABILITY.md).
//!
//! How far back: a point is final once every window covering it has run. At the start offset
//! the newest window ended there, so points up to `window - edge` seconds old are not final,
//! and the oldest window covering them started `2 * (window - edge)` seconds before the start
//! ([`WindowParams::handover_lookback_s`]). The scan reads back in blocks until each patient
//! seen has that much signal of its current stream (or the stream's first chunk, or the oldest
//! record kept), then the records from the oldest needed one are replayed in order.
//!
//! The replayed windows start at the first replayed chunk, not at the stream's first one, so
//! unless the replay reaches back to the stream's start their 20 s grid may be shifted from the
//! previous owner's: each point is still the maximum over every window of the new grid that
//! covers it. Points the previous owner finalized are not published again.

use std::collections::HashMap;

use vigil_core::bus::{Bus, BusError, BusMessage};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::record::EegChunk;
use vigil_core::telemetry::events::Emit;

use crate::windowing::model_sample_rate;
use crate::InferenceError;

/// Records per backward read; doubles up to [`MAX_BLOCK`].
const FIRST_BLOCK: i64 = 256;
/// Records per read at most (about 24 MB of 23-channel chunks at 256 Hz).
const MAX_BLOCK: i64 = 1024;
/// Records the backward scan reads at most (about 86 patients per partition of needed
/// signal); past it the replay starts where the scan stopped and says so.
const MAX_SCANNED: i64 = 50_000;

/// What one patient needs replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PatientNeed {
    /// The current stream (of the newest chunk before the start offset).
    stream_id: uuid::Uuid,
    /// End of the newest chunk of that stream.
    newest_end_ns: i64,
    /// Offset of the oldest chunk needed so far.
    from_offset: Option<i64>,
    /// Nothing older is needed.
    done: bool,
}

/// The replay of one partition: which records, from where.
#[derive(Debug, Default)]
pub(crate) struct ReplayPlan {
    lookback_ns: i64,
    patients: HashMap<String, PatientNeed>,
    /// End of the newest chunk on the partition before the start offset.
    newest_end_ns: i64,
    /// Records read by the scan.
    scanned: i64,
}

impl ReplayPlan {
    fn new(lookback_s: f64) -> Self {
        Self {
            lookback_ns: (lookback_s * 1e9) as i64,
            ..Self::default()
        }
    }

    /// A patient whose newest chunk is a lookback older than the partition's newest has no
    /// window left to continue (its device stopped): nothing of it is replayed.
    fn is_active(&self, need: &PatientNeed) -> bool {
        need.newest_end_ns > self.newest_end_ns - self.lookback_ns
    }

    /// Takes one chunk, walking back from the start offset.
    fn observe(&mut self, offset: i64, chunk: &EegChunk) {
        let end_ns = chunk.start_ns + chunk.duration_ns();
        self.newest_end_ns = self.newest_end_ns.max(end_ns);
        let need = self
            .patients
            .entry(chunk.patient_id.clone())
            .or_insert(PatientNeed {
                stream_id: chunk.stream_id,
                newest_end_ns: end_ns,
                from_offset: None,
                done: false,
            });
        if need.done {
            return;
        }
        let needed_from_ns = need.newest_end_ns - self.lookback_ns;
        if chunk.stream_id != need.stream_id || end_ns <= needed_from_ns {
            need.done = true;
            return;
        }
        need.from_offset = Some(offset);
        if chunk.seq == 0 || chunk.start_ns <= needed_from_ns {
            need.done = true;
        }
    }

    /// Every patient that still needs windows has all of it.
    fn complete(&self) -> bool {
        self.patients
            .values()
            .all(|need| need.done || !self.is_active(need))
    }

    /// The offset the replay starts from, None when nothing needs replaying.
    pub(crate) fn replay_start(&self) -> Option<i64> {
        self.patients
            .values()
            .filter(|need| self.is_active(need))
            .filter_map(|need| need.from_offset)
            .min()
    }

    /// Patients whose windows the replay continues.
    pub(crate) fn patients(&self) -> usize {
        self.patients
            .values()
            .filter(|need| self.is_active(need) && need.from_offset.is_some())
            .count()
    }

    /// Whether the replay feeds `chunk` (read at `offset`) to its patient's windows.
    pub(crate) fn wants(&self, offset: i64, chunk: &EegChunk) -> bool {
        self.patients.get(&chunk.patient_id).is_some_and(|need| {
            self.is_active(need)
                && need.stream_id == chunk.stream_id
                && need.from_offset.is_some_and(|from| offset >= from)
        })
    }
}

/// An EEG record as the stage takes it: decoded, at a rate the model accepts; the error is
/// why the stage dead-letters it (a replay skips it, as its first owner did).
pub(crate) fn decode_chunk(msg: &BusMessage, limits: &DecodeLimits) -> Result<EegChunk, String> {
    let chunk: EegChunk = codec::decode(&msg.payload, limits).map_err(|e| e.to_string())?;
    model_sample_rate(chunk.sample_rate_hz).map_err(|e| e.to_string())?;
    Ok(chunk)
}

/// Scans partition `partition` of `topic` back from `until` (the first offset this instance
/// consumes) and plans the replay that `lookback_s` of signal per patient needs.
pub(crate) async fn plan(
    bus: &Bus,
    limits: &DecodeLimits,
    topic: &str,
    partition: i32,
    until: i64,
    lookback_s: f64,
) -> Result<ReplayPlan, BusError> {
    let low = bus
        .watermarks(topic)
        .await?
        .into_iter()
        .find(|w| w.partition == partition)
        .map_or(0, |w| w.low);
    let mut plan = ReplayPlan::new(lookback_s);
    let mut hi = until;
    let mut block = FIRST_BLOCK;
    while hi > low {
        let lo = (hi - block).max(low);
        let records = bus.read_range(topic, partition, lo, hi).await?;
        for msg in records.iter().rev() {
            if let Ok(chunk) = decode_chunk(msg, limits) {
                plan.observe(msg.offset, &chunk);
            }
        }
        plan.scanned += hi - lo;
        hi = lo;
        if plan.complete() {
            break;
        }
        if plan.scanned >= MAX_SCANNED {
            tracing::warn!(
                topic,
                partition,
                scanned = plan.scanned,
                "handover scan stopped at its record limit: windows of some patients start later"
            );
            break;
        }
        block = (block * 2).min(MAX_BLOCK);
    }
    Ok(plan)
}

/// Records per forward read of the replay.
pub(crate) const REPLAY_BLOCK: i64 = 512;

/// A partition this instance started consuming, and what its replay rebuilt.
pub(crate) struct PartitionTakenOver<'a> {
    pub partition: i32,
    /// The first offset consumed; the replay ends before it.
    pub until: i64,
    /// Outcome: the patients and chunks replayed, or why there was no replay (the partition's
    /// patients' windows then start afresh: points up to a window after the start are not
    /// evaluated, NaN, never made up).
    pub replayed: Result<(usize, usize), &'a InferenceError>,
    pub elapsed: std::time::Duration,
}

impl Emit for PartitionTakenOver<'_> {
    fn emit(&self) {
        let seconds = self.elapsed.as_secs_f64();
        match self.replayed {
            Ok((patients, chunks)) => {
                tracing::info!(
                    partition = self.partition,
                    until = self.until,
                    patients,
                    chunks,
                    seconds,
                    "partition taken over: windows rebuilt from its earlier records"
                );
                metrics::counter!("vigil_inference_handovers_total", "outcome" => "replayed")
                    .increment(1);
                metrics::counter!("vigil_inference_replayed_chunks_total").increment(chunks as u64);
            }
            Err(err) => {
                tracing::warn!(partition = self.partition, %err, "partition taken over without replay");
                metrics::counter!("vigil_inference_handovers_total", "outcome" => "failed")
                    .increment(1);
            }
        }
        metrics::histogram!("vigil_inference_handover_seconds").record(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(patient: &str, stream: u128, seq: u64) -> EegChunk {
        EegChunk {
            patient_id: patient.into(),
            device_id: "d".into(),
            stream_id: uuid::Uuid::from_u128(stream),
            seq,
            start_ns: seq as i64 * 1_000_000_000,
            received_ns: 0,
            sample_rate_hz: 256.0,
            channels: vec!["Cz".into()],
            unit: vigil_core::record::SignalUnit::Microvolt,
            samples: vec![vec![0.0; 256]],
        }
    }

    /// Walks `chunks` (offset order) back from the end, as the scan does.
    fn scan(lookback_s: f64, chunks: &[EegChunk]) -> ReplayPlan {
        let mut plan = ReplayPlan::new(lookback_s);
        for (offset, c) in chunks.iter().enumerate().rev() {
            plan.observe(offset as i64, c);
        }
        plan
    }

    #[test]
    fn a_patient_needs_the_lookback_of_its_current_stream() {
        // Patient a: 100 chunks of an old stream, then 50 of the current one.
        let mut chunks: Vec<EegChunk> = (0..100).map(|s| chunk("a", 1, s)).collect();
        chunks.extend((0..50).map(|s| {
            let mut c = chunk("a", 2, s);
            c.start_ns += 100_000_000_000;
            c
        }));
        let plan = scan(30.0, &chunks);
        assert!(plan.complete());
        // The current stream's newest chunk ends at 150 s: from 120 s on, i.e. seq 20 of it.
        assert_eq!(plan.replay_start(), Some(100 + 20));
        assert!(plan.wants(149, &chunks[149]));
        assert!(!plan.wants(119, &chunks[119]), "older than the lookback");
        assert!(!plan.wants(99, &chunks[99]), "another stream");
    }

    #[test]
    fn a_short_stream_is_replayed_from_its_first_chunk() {
        let chunks: Vec<EegChunk> = (0..10).map(|s| chunk("a", 1, s)).collect();
        let plan = scan(580.0, &chunks);
        assert!(plan.complete(), "seq 0 ends the scan");
        assert_eq!(plan.replay_start(), Some(0));
        assert_eq!(plan.patients(), 1);
    }

    #[test]
    fn a_scan_short_of_the_lookback_is_incomplete() {
        let chunks: Vec<EegChunk> = (100..110).map(|s| chunk("a", 1, s)).collect();
        let plan = scan(580.0, &chunks);
        assert!(!plan.complete(), "older records may be needed");
        assert_eq!(plan.replay_start(), Some(0));
    }

    #[test]
    fn a_patient_that_stopped_long_before_the_others_is_not_replayed() {
        // b stopped at 20 s; a streams on to 700 s.
        let mut chunks: Vec<EegChunk> = (0..20).map(|s| chunk("b", 2, s)).collect();
        chunks.extend((0..700).map(|s| chunk("a", 1, s)));
        let plan = scan(580.0, &chunks);
        assert!(plan.complete());
        assert_eq!(plan.patients(), 1);
        assert_eq!(
            plan.replay_start(),
            Some(20 + 120),
            "a from 120 s; b not at all"
        );
        assert!(!plan.wants(5, &chunks[5]));
    }
}
