//! Device clock offset estimation.
//!
//! Devices stamp chunks with their own clock, which may be minutes off. For every accepted
//! record the gateway observes
//!
//! ```text
//! d = received_ns - device_end_ns        (device_end_ns = start_ns + duration)
//!   = offset + network_delay              (server clock - device clock, plus delay >= 0)
//! ```
//!
//! The network delay is never negative and most records see close to the minimal delay, so
//! the minimum of `d` over a sliding time window is a robust estimate of
//! `offset + minimal_delay`: jitter, queueing and retransmits only ever make `d` larger and
//! are ignored by the minimum, whereas a mean would be biased by every late record. The
//! window (default 120 s) lets the estimate follow clock drift and a device clock being
//! stepped. The estimate includes the minimal delay (typically a few ms), so corrected times
//! are late by at most that much; it never makes a sample look as if it arrived before it was
//! recorded.
//!
//! The minimum over the window is kept with a monotonic deque: O(1) amortised per
//! observation, memory bounded by the number of observations in the window (and capped).

use std::collections::VecDeque;

/// Most observations kept per stream, whatever the window (bounds memory per stream).
pub const MAX_OBSERVATIONS: usize = 4096;

/// Sliding-window minimum estimator of `server_clock - device_clock`.
#[derive(Debug, Clone)]
pub struct ClockOffsetEstimator {
    window_ns: i64,
    /// `(received_ns, d)` with strictly increasing `d` from front to back.
    deque: VecDeque<(i64, i64)>,
}

impl ClockOffsetEstimator {
    /// An estimator over a window of `window_ns` of server time.
    pub fn new(window_ns: i64) -> Self {
        Self {
            window_ns: window_ns.max(1),
            deque: VecDeque::new(),
        }
    }

    /// Adds the observation of one record and returns the current estimate in ns (add it to
    /// device times to get server times).
    pub fn observe(&mut self, received_ns: i64, device_end_ns: i64) -> i64 {
        let d = received_ns.saturating_sub(device_end_ns);
        while self.deque.back().is_some_and(|&(_, v)| v >= d) {
            self.deque.pop_back();
        }
        self.deque.push_back((received_ns, d));
        let oldest = received_ns.saturating_sub(self.window_ns);
        while self.deque.len() > 1
            && self
                .deque
                .front()
                .is_some_and(|&(t, _)| t < oldest || self.deque.len() > MAX_OBSERVATIONS)
        {
            self.deque.pop_front();
        }
        self.estimate().unwrap_or(d)
    }

    /// The current estimate, if anything was observed.
    pub fn estimate(&self) -> Option<i64> {
        self.deque.front().map(|&(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const SEC: i64 = 1_000_000_000;
    const MS: i64 = 1_000_000;

    /// A device 37.5 s behind the server sends 1 s chunks; network delay is 5 ms plus
    /// exponential-ish jitter up to 2 s with occasional 10 s stalls.
    #[test]
    fn minimum_tracks_offset_plus_minimal_delay_under_jitter() {
        let mut rng = StdRng::seed_from_u64(7);
        let true_offset = 37_500 * MS;
        let min_delay = 5 * MS;
        let mut est = ClockOffsetEstimator::new(120 * SEC);
        let mut naive_sum = 0i64;
        let n = 600;
        let mut last = 0;
        for i in 0..n {
            let device_end = 1_700_000_000 * SEC + (i + 1) * SEC;
            let jitter = if rng.random_bool(0.02) {
                10 * SEC
            } else {
                let u: f64 = rng.random();
                (-(1.0 - u).ln() * 80.0 * MS as f64) as i64
            };
            let received = device_end + true_offset + min_delay + jitter;
            naive_sum += received - device_end;
            last = est.observe(received, device_end);
        }
        let error = last - (true_offset + min_delay);
        assert!((0..=5 * MS).contains(&error), "estimate off by {error} ns");
        let naive_error = naive_sum / n - (true_offset + min_delay);
        assert!(
            naive_error > 50 * MS,
            "the mean would be biased by jitter ({naive_error} ns), the minimum is not"
        );
    }

    #[test]
    fn window_follows_a_stepped_device_clock() {
        let mut est = ClockOffsetEstimator::new(10 * SEC);
        // Offset 1 s for 20 s, then the device clock is stepped and the offset becomes 3 s.
        for i in 0..20 {
            let end = i * SEC;
            est.observe(end + SEC + 2 * MS, end);
        }
        assert_eq!(est.estimate(), Some(SEC + 2 * MS));
        let mut last = 0;
        for i in 20..40 {
            let end = i * SEC;
            last = est.observe(end + 3 * SEC + 2 * MS, end);
        }
        assert_eq!(last, 3 * SEC + 2 * MS, "old minimum left the window");
    }

    #[test]
    fn negative_offsets_and_extremes_do_not_overflow() {
        let mut est = ClockOffsetEstimator::new(SEC);
        assert_eq!(est.observe(0, 5 * SEC), -5 * SEC, "device clock ahead");
        let v = est.observe(i64::MAX, i64::MIN);
        assert_eq!(
            v,
            i64::MAX,
            "saturates; the old observation left the window"
        );
        let mut est = ClockOffsetEstimator::new(SEC);
        assert_eq!(est.observe(i64::MIN, i64::MAX), i64::MIN);
    }
}
