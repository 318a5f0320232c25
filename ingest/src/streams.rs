//! Per-stream state: which recent sequence numbers were received (with a hash of each one's
//! content) and the clock offset estimator.
//!
//! Sequence semantics (per record kind, device and `stream_id`), with `high` the highest
//! `seq` received and N = `ingest.seq_window`:
//! - `seq > high`: **new**, produced and answered `accepted`; when `seq > high + 1` the ack
//!   also reports the **gap** (`gap: {expected, got}`, metric `vigil_ingest_gaps_total`).
//! - `high - N < seq < high`, never received: a **late** arrival (e.g. the earlier of two
//!   requests in flight at once). Produced and answered `accepted` with `late: true`.
//! - `seq` received before, same content: a **duplicate** (a resend after a lost ack),
//!   answered `duplicate` and **not** produced again.
//! - `seq` received before, different content: a **conflict**, refused with 409.
//! - `seq <= high - N`: **below the window**; the gateway no longer knows whether it was
//!   received, so it is refused with 422 rather than guessed at.
//!
//! "Same content" is [`crate::pipeline::IngestRecord::content_hash`]: a 64-bit hash of the
//! fields the device sets, taken before the gateway corrects clocks or stamps receipt.
//!
//! State lives in memory, for at most `max_streams` streams (least recently used forgotten),
//! each with a fixed ring of N content hashes and an N-bit received bitmap. After a gateway
//! restart or an eviction a resend is not recognised here; it is produced again (as new or
//! late) and dropped downstream, where storage and inference are idempotent on the
//! `(stream_id, seq)` key (docs/ARCHITECTURE.md "Records").
//!
//! Each stream's state sits behind its own async mutex, held from the sequence check until
//! the broker acknowledged the record: records of one stream are produced one at a time, and
//! two concurrent resends of one record cannot both be produced.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use uuid::Uuid;

use vigil_core::config::MAX_SEQ_WINDOW;

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
    /// Above everything received; `Some(gap)` when records were skipped.
    New(Option<Gap>),
    /// Below the high mark, inside the window, never received: produce it.
    Late,
    /// Received before with the same content: do not produce again.
    Duplicate,
    /// Received before with different content: refuse.
    Conflict,
    /// Too old to tell whether it was received; `oldest` is the lowest seq still tracked.
    BelowWindow {
        /// Lowest tracked sequence number.
        oldest: u64,
    },
}

/// The received seqs of one stream over its last `len` sequence numbers: a bitmap and a
/// content hash per seq, both rings indexed by `seq % len`.
#[derive(Debug)]
pub struct SeqWindow {
    high: Option<u64>,
    received: Box<[u64]>,
    hashes: Box<[u64]>,
}

impl SeqWindow {
    /// A window over `len` seqs (clamped to `1..=MAX_SEQ_WINDOW`).
    pub fn new(len: usize) -> Self {
        let len = len.clamp(1, MAX_SEQ_WINDOW);
        Self {
            high: None,
            received: vec![0; len.div_ceil(64)].into_boxed_slice(),
            hashes: vec![0; len].into_boxed_slice(),
        }
    }

    /// Number of seqs tracked.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Always false: a window tracks at least one seq.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Highest sequence number received.
    pub fn high(&self) -> Option<u64> {
        self.high
    }

    fn slot(&self, seq: u64) -> usize {
        // The remainder is below len, which is a usize.
        (seq % self.len() as u64) as usize
    }

    fn is_set(&self, slot: usize) -> bool {
        self.received[slot / 64] & (1 << (slot % 64)) != 0
    }

    fn set(&mut self, slot: usize, on: bool) {
        let bit = 1u64 << (slot % 64);
        if on {
            self.received[slot / 64] |= bit;
        } else {
            self.received[slot / 64] &= !bit;
        }
    }

    /// Classifies `seq` carrying content `hash` without changing anything.
    pub fn check(&self, seq: u64, hash: u64) -> SeqCheck {
        let Some(high) = self.high else {
            return SeqCheck::New(None);
        };
        if seq > high {
            // seq > high, so high + 1 cannot overflow.
            let expected = high + 1;
            return SeqCheck::New((seq != expected).then_some(Gap { expected, got: seq }));
        }
        let len = self.len() as u64;
        if high - seq >= len {
            return SeqCheck::BelowWindow {
                oldest: high - (len - 1),
            };
        }
        let slot = self.slot(seq);
        match (self.is_set(slot), self.hashes[slot] == hash) {
            (false, _) => SeqCheck::Late,
            (true, true) => SeqCheck::Duplicate,
            (true, false) => SeqCheck::Conflict,
        }
    }

    /// Records that `seq` with content `hash` was produced (call only after the broker
    /// acknowledged it). A seq below the window is ignored.
    pub fn record(&mut self, seq: u64, hash: u64) {
        let len = self.len() as u64;
        match self.high {
            Some(high) if seq <= high => {
                if high - seq >= len {
                    return;
                }
            }
            Some(high) => {
                // Slots of the seqs the window slides over now belong to high+1..=seq.
                if seq - high >= len {
                    self.received.fill(0);
                } else {
                    for s in high + 1..seq {
                        self.set(self.slot(s), false);
                    }
                }
                self.high = Some(seq);
            }
            None => self.high = Some(seq),
        }
        let slot = self.slot(seq);
        self.set(slot, true);
        self.hashes[slot] = hash;
    }
}

/// State of one stream.
#[derive(Debug)]
pub struct StreamState {
    /// Received seqs and their content hashes.
    pub seqs: SeqWindow,
    /// Device clock offset estimator of this stream.
    pub clock: ClockOffsetEstimator,
}

impl StreamState {
    fn new(seq_window: usize, clock_window_ns: i64) -> Self {
        Self {
            seqs: SeqWindow::new(seq_window),
            clock: ClockOffsetEstimator::new(clock_window_ns),
        }
    }
}

/// Bounded map of stream states, least recently used evicted.
pub struct StreamTable {
    seq_window: usize,
    clock_window_ns: i64,
    streams: Mutex<LruCache<StreamKey, Arc<tokio::sync::Mutex<StreamState>>>>,
}

impl StreamTable {
    /// A table of at most `max_streams` streams, each tracking its last `seq_window` seqs.
    pub fn new(max_streams: usize, seq_window: usize, clock_window_ns: i64) -> Self {
        let cap = NonZeroUsize::new(max_streams).unwrap_or(NonZeroUsize::MIN);
        Self {
            seq_window,
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
            self.seq_window,
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

    fn gap(expected: u64, got: u64) -> SeqCheck {
        SeqCheck::New(Some(Gap { expected, got }))
    }

    /// Checks `seq` and, unless refused or a duplicate, records it (as the pipeline does).
    fn arrive(w: &mut SeqWindow, seq: u64, hash: u64) -> SeqCheck {
        let check = w.check(seq, hash);
        if matches!(check, SeqCheck::New(_) | SeqCheck::Late) {
            w.record(seq, hash);
        }
        check
    }

    #[test]
    fn new_records_and_gaps_are_classified() {
        let mut w = SeqWindow::new(8);
        assert_eq!(
            arrive(&mut w, 5, 50),
            SeqCheck::New(None),
            "starts anywhere"
        );
        assert_eq!(arrive(&mut w, 6, 60), SeqCheck::New(None));
        assert_eq!(arrive(&mut w, 9, 90), gap(7, 9));
        assert_eq!(w.high(), Some(9));
    }

    #[test]
    fn a_late_arrival_is_new_once_then_a_duplicate() {
        let mut w = SeqWindow::new(8);
        arrive(&mut w, 10, 100);
        assert_eq!(arrive(&mut w, 12, 120), gap(11, 12));
        assert_eq!(arrive(&mut w, 11, 110), SeqCheck::Late, "never received");
        assert_eq!(arrive(&mut w, 11, 110), SeqCheck::Duplicate);
        assert_eq!(
            arrive(&mut w, 9, 90),
            SeqCheck::Late,
            "below the first seq seen"
        );
        assert_eq!(w.high(), Some(12), "a late arrival leaves the high mark");
        assert_eq!(arrive(&mut w, 13, 130), SeqCheck::New(None));
    }

    #[test]
    fn a_resend_with_other_content_is_a_conflict() {
        let mut w = SeqWindow::new(8);
        arrive(&mut w, 0, 1);
        arrive(&mut w, 1, 2);
        assert_eq!(w.check(1, 2), SeqCheck::Duplicate);
        assert_eq!(w.check(1, 3), SeqCheck::Conflict);
        assert_eq!(w.check(0, 2), SeqCheck::Conflict, "hashes are per seq");
        assert_eq!(w.check(0, 1), SeqCheck::Duplicate);
    }

    #[test]
    fn seqs_older_than_the_window_are_below_it() {
        let mut w = SeqWindow::new(4);
        for seq in 0..10 {
            arrive(&mut w, seq, seq);
        }
        // Tracked: 6..=9.
        assert_eq!(w.check(6, 6), SeqCheck::Duplicate);
        assert_eq!(w.check(5, 5), SeqCheck::BelowWindow { oldest: 6 });
        assert_eq!(w.check(0, 0), SeqCheck::BelowWindow { oldest: 6 });
        w.record(5, 5);
        assert_eq!(
            w.check(9, 9),
            SeqCheck::Duplicate,
            "a below-window record is ignored"
        );
    }

    #[test]
    fn sliding_forgets_the_slots_it_reuses() {
        let mut w = SeqWindow::new(4);
        arrive(&mut w, 0, 0);
        arrive(&mut w, 1, 1);
        assert_eq!(arrive(&mut w, 3, 3), gap(2, 3));
        // 3 -> 5 reuses the slots of 0 and 1 for 4 and 5: 4 must not look received.
        assert_eq!(arrive(&mut w, 5, 5), gap(4, 5));
        assert_eq!(w.check(4, 0), SeqCheck::Late, "slot of 0 was cleared for 4");
        assert_eq!(w.check(2, 2), SeqCheck::Late);
        assert_eq!(w.check(1, 1), SeqCheck::BelowWindow { oldest: 2 });
        // A jump of more than the window clears everything.
        assert_eq!(arrive(&mut w, 100, 7), gap(6, 100));
        for seq in 97..100 {
            assert_eq!(w.check(seq, seq), SeqCheck::Late, "seq {seq}");
        }
        assert_eq!(w.check(96, 0), SeqCheck::BelowWindow { oldest: 97 });
    }

    #[test]
    fn a_window_of_one_keeps_only_the_high_mark() {
        let mut w = SeqWindow::new(0);
        assert_eq!(w.len(), 1, "clamped up to 1");
        arrive(&mut w, 3, 3);
        assert_eq!(w.check(3, 3), SeqCheck::Duplicate);
        assert_eq!(w.check(3, 4), SeqCheck::Conflict);
        assert_eq!(w.check(2, 2), SeqCheck::BelowWindow { oldest: 3 });
        assert_eq!(
            SeqWindow::new(usize::MAX).len(),
            MAX_SEQ_WINDOW,
            "clamped down"
        );
    }

    #[test]
    fn window_sizes_that_are_not_a_multiple_of_64_wrap_correctly() {
        let mut w = SeqWindow::new(100);
        for seq in (0..1000).step_by(2) {
            arrive(&mut w, seq, seq);
        }
        // High 998, tracked 899..=998: evens received, odds missing.
        for seq in 899..=998 {
            let expected = if seq % 2 == 0 {
                SeqCheck::Duplicate
            } else {
                SeqCheck::Late
            };
            assert_eq!(w.check(seq, seq), expected, "seq {seq}");
        }
        assert_eq!(w.check(898, 898), SeqCheck::BelowWindow { oldest: 899 });
    }

    #[test]
    fn seqs_near_u64_max_do_not_overflow() {
        let mut w = SeqWindow::new(8);
        assert_eq!(arrive(&mut w, u64::MAX - 2, 1), SeqCheck::New(None));
        assert_eq!(arrive(&mut w, u64::MAX, 3), gap(u64::MAX - 1, u64::MAX));
        assert_eq!(arrive(&mut w, u64::MAX - 1, 2), SeqCheck::Late);
        assert_eq!(w.check(u64::MAX, 3), SeqCheck::Duplicate);
        assert_eq!(w.check(u64::MAX, 4), SeqCheck::Conflict);
        assert_eq!(
            w.check(0, 0),
            SeqCheck::BelowWindow {
                oldest: u64::MAX - 7
            }
        );
        let mut w = SeqWindow::new(8);
        arrive(&mut w, 0, 0);
        assert_eq!(arrive(&mut w, u64::MAX, 9), gap(1, u64::MAX), "huge jump");
        assert_eq!(w.check(u64::MAX - 7, 0), SeqCheck::Late);
    }

    #[tokio::test]
    async fn table_is_bounded_and_evicts_least_recently_used() {
        let table = StreamTable::new(2, 16, 1);
        table.get(&key(1)).lock().await.seqs.record(1, 0);
        table.get(&key(2)).lock().await.seqs.record(2, 0);
        table.get(&key(1)); // touch 1, so 2 is the oldest
        table.get(&key(3));
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(&key(1)).lock().await.seqs.high(), Some(1));
        assert_eq!(
            table.get(&key(2)).lock().await.seqs.high(),
            None,
            "stream 2 was evicted and starts afresh"
        );
        assert_eq!(table.get(&key(1)).lock().await.seqs.len(), 16);
    }
}
