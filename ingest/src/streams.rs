//! Per-stream state: the last accepted sequence number and the clock offset estimator.
//!
//! Sequence semantics (per record kind, device and `stream_id`):
//! - `seq <= last accepted`: a **duplicate** (a device resending after a lost ack). It is
//!   answered 202 `"duplicate"` and **not** produced again.
//! - `seq == last + 1` (or the first record seen for the stream): accepted.
//! - `seq > last + 1`: accepted and reported as a **gap** (`gap: {expected, got}` in the ack,
//!   metric `vigil_ingest_gaps_total`); the missing records are lost or still to come from a
//!   device that reordered, and would then be treated as duplicates.
//!
//! State lives in memory, for at most `max_streams` streams (least recently used forgotten).
//! After a gateway restart or an eviction a resend is not recognised here; it is produced
//! again and dropped downstream, where storage and inference are idempotent on the
//! `(stream_id, seq)` key (design.md section 3).
//!
//! Each stream's state sits behind its own async mutex, held from the duplicate check until
//! the broker acknowledged the record: records of one stream are produced one at a time, in
//! order, and two concurrent resends of one record cannot both be produced.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use uuid::Uuid;

use crate::clock::ClockOffsetEstimator;

/// Which record kind a stream carries (EEG and HR sequence spaces are separate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `EegChunk`s.
    Eeg,
    /// `HrBatch`es.
    Hr,
}

/// Identity of a stream: kind, device, stream id. Keying on the device means one device can
/// never make another's records look like duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// Record kind.
    pub kind: StreamKind,
    /// Authenticated device.
    pub device_id: String,
    /// Device session.
    pub stream_id: Uuid,
}

/// A missing run of sequence numbers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct Gap {
    /// The sequence number that should have come next.
    pub expected: u64,
    /// The one that came.
    pub got: u64,
}

/// How a sequence number relates to the stream so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// Already accepted: do not produce again.
    Duplicate,
    /// New; `Some(gap)` when records were skipped.
    New(Option<Gap>),
}

/// State of one stream.
#[derive(Debug)]
pub struct StreamState {
    last_seq: Option<u64>,
    /// Device clock offset estimator of this stream.
    pub clock: ClockOffsetEstimator,
}

impl StreamState {
    fn new(clock_window_ns: i64) -> Self {
        Self {
            last_seq: None,
            clock: ClockOffsetEstimator::new(clock_window_ns),
        }
    }

    /// Classifies `seq` without changing anything.
    pub fn check(&self, seq: u64) -> SeqCheck {
        match self.last_seq {
            None => SeqCheck::New(None),
            Some(last) if seq <= last => SeqCheck::Duplicate,
            Some(last) => {
                let expected = last.saturating_add(1);
                SeqCheck::New((seq != expected).then_some(Gap { expected, got: seq }))
            }
        }
    }

    /// Records that `seq` was produced (call only after the broker acknowledged it).
    pub fn accepted(&mut self, seq: u64) {
        self.last_seq = Some(self.last_seq.map_or(seq, |last| last.max(seq)));
    }

    /// Last accepted sequence number.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }
}

/// Bounded map of stream states, least recently used evicted.
pub struct StreamTable {
    clock_window_ns: i64,
    streams: Mutex<LruCache<StreamKey, Arc<tokio::sync::Mutex<StreamState>>>>,
}

impl StreamTable {
    /// A table of at most `max_streams` streams.
    pub fn new(max_streams: usize, clock_window_ns: i64) -> Self {
        let cap = NonZeroUsize::new(max_streams).unwrap_or(NonZeroUsize::MIN);
        Self {
            clock_window_ns,
            streams: Mutex::new(LruCache::new(cap)),
        }
    }

    /// The state of `key`, created if new (possibly evicting the least recently used).
    pub fn get(&self, key: &StreamKey) -> Arc<tokio::sync::Mutex<StreamState>> {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = streams.get(key) {
            return state.clone();
        }
        let state = Arc::new(tokio::sync::Mutex::new(StreamState::new(
            self.clock_window_ns,
        )));
        streams.put(key.clone(), state.clone());
        state
    }

    /// Streams currently tracked.
    pub fn len(&self) -> usize {
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no stream is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u128) -> StreamKey {
        StreamKey {
            kind: StreamKind::Eeg,
            device_id: "dev".into(),
            stream_id: Uuid::from_u128(n),
        }
    }

    #[test]
    fn duplicates_and_gaps_are_classified() {
        let mut s = StreamState::new(1);
        assert_eq!(
            s.check(5),
            SeqCheck::New(None),
            "first record starts anywhere"
        );
        s.accepted(5);
        assert_eq!(s.check(5), SeqCheck::Duplicate);
        assert_eq!(s.check(4), SeqCheck::Duplicate);
        assert_eq!(s.check(6), SeqCheck::New(None));
        assert_eq!(
            s.check(9),
            SeqCheck::New(Some(Gap {
                expected: 6,
                got: 9
            }))
        );
        s.accepted(9);
        assert_eq!(s.check(7), SeqCheck::Duplicate, "late record behind a gap");
        s.accepted(u64::MAX);
        assert_eq!(s.check(u64::MAX), SeqCheck::Duplicate, "no overflow");
    }

    #[tokio::test]
    async fn table_is_bounded_and_evicts_least_recently_used() {
        let table = StreamTable::new(2, 1);
        table.get(&key(1)).lock().await.accepted(1);
        table.get(&key(2)).lock().await.accepted(2);
        table.get(&key(1)); // touch 1, so 2 is the oldest
        table.get(&key(3));
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(&key(1)).lock().await.last_seq(), Some(1));
        assert_eq!(
            table.get(&key(2)).lock().await.last_seq(),
            None,
            "stream 2 was evicted and starts afresh"
        );
    }
}
