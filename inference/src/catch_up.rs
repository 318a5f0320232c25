//! How far this instance has read its EEG partitions, in wall time: the basis of idle
//! eviction.
//!
//! A patient is idle when its device sent nothing for `inference.idle_evict_s`. Measured on the
//! wall clock alone, a pause of the whole consumer (a group rebalance, a slow broker, a
//! catch-up after a restart) looks the same as a device that stopped, and finishing a stream
//! then cuts its windows mid-recording. So idleness is measured against the *read horizon*:
//! the latest instant `T` such that every record the broker held at `T` on every partition
//! this instance has patients from has been handed to the shards. A patient last seen at `s`
//! is idle once `s + idle_evict_s <= T`: any chunk it sent in that interval was in the broker
//! by `T`, so it would have reached its shard (ahead of the tick that carries `T`, since a
//! shard's inbox is FIFO) and moved `s`.
//!
//! `T` comes from high watermarks polled in the background: a snapshot taken at `T` whose
//! watermark a partition's read position has reached. While the consumer is paused, or the
//! broker does not answer, the horizon stands still and no patient is finished.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vigil_core::bus::Bus;
use vigil_core::CancellationToken;

/// Watermark snapshots kept: at one poll per second or so, a backlog of about a minute can
/// still be matched; a longer one keeps the horizon where it was (no eviction under backlog).
const SNAPSHOTS: usize = 64;

/// High watermarks of the EEG topic's partitions, and when they were asked for.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// Taken before the request went out: every record produced before it is below `high`.
    pub at: Instant,
    /// Partition -> offset the next record will get.
    pub high: HashMap<i32, i64>,
}

/// The read horizon of the partitions this instance has patients from.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    snapshots: VecDeque<Snapshot>,
    caught_up: HashMap<i32, Instant>,
}

impl CatchUp {
    /// Adds a watermark snapshot (newest last).
    pub(crate) fn observe(&mut self, snapshot: Snapshot) {
        if self.snapshots.len() == SNAPSHOTS {
            self.snapshots.pop_front();
        }
        self.snapshots.push_back(snapshot);
    }

    /// Forgets a partition (revoked, or read again from an older offset).
    pub(crate) fn forget(&mut self, partition: i32) {
        self.caught_up.remove(&partition);
    }

    /// The read horizon, given the last offset handed to the shards per partition: None until
    /// every such partition has reached some snapshot's watermark.
    pub(crate) fn horizon(&mut self, positions: &HashMap<i32, i64>) -> Option<Instant> {
        for (&partition, &position) in positions {
            let reached = self.snapshots.iter().rev().find(|s| {
                s.high
                    .get(&partition)
                    .is_some_and(|&high| position + 1 >= high)
            });
            if let Some(snapshot) = reached {
                let at = self.caught_up.entry(partition).or_insert(snapshot.at);
                *at = (*at).max(snapshot.at);
            }
        }
        let horizon = positions
            .keys()
            .map(|p| self.caught_up.get(p).copied())
            .collect::<Option<Vec<Instant>>>()?
            .into_iter()
            .min()?;
        // Snapshots older than the horizon can never move it again.
        while self.snapshots.front().is_some_and(|s| s.at < horizon) {
            self.snapshots.pop_front();
        }
        Some(horizon)
    }
}

/// How often watermarks are polled for an idle timeout: often enough that eviction comes
/// within about a tenth of the timeout after it, never more than every half second.
pub(crate) fn poll_interval(idle_evict_s: f64) -> Duration {
    Duration::from_secs_f64((idle_evict_s / 10.0).clamp(0.5, 5.0))
}

/// Polls `topic`'s high watermarks every `every` until shutdown, sending each snapshot. A
/// failed poll sends nothing (the horizon waits); it is logged once per failure streak.
pub(crate) async fn poll_watermarks(
    bus: Bus,
    topic: String,
    every: Duration,
    tx: mpsc::Sender<Snapshot>,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        let at = Instant::now();
        match bus.watermarks(&topic).await {
            Ok(marks) => {
                failing = false;
                let high = marks.into_iter().map(|m| (m.partition, m.high)).collect();
                // A full channel means the dispatcher is busy: the next snapshot will do.
                let _ = tx.try_send(Snapshot { at, high });
            }
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(%err, topic, "watermarks unavailable: idle eviction waits");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(at: Instant, high: &[(i32, i64)]) -> Snapshot {
        Snapshot {
            at,
            high: high.iter().copied().collect(),
        }
    }

    #[test]
    fn the_horizon_is_the_latest_snapshot_every_partition_has_read_up_to() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut catch_up = CatchUp::default();
        catch_up.observe(snapshot(at(1), &[(0, 10), (1, 5)]));
        catch_up.observe(snapshot(at(2), &[(0, 20), (1, 5)]));
        catch_up.observe(snapshot(at(3), &[(0, 30), (1, 8)]));
        let positions = HashMap::from([(0, 19), (1, 4)]);
        assert_eq!(
            catch_up.horizon(&positions),
            Some(at(2)),
            "partition 0 has read what existed at 2 s, not at 3 s"
        );
        let positions = HashMap::from([(0, 29), (1, 4)]);
        assert_eq!(
            catch_up.horizon(&positions),
            Some(at(2)),
            "partition 1 holds it back"
        );
        let positions = HashMap::from([(0, 29), (1, 7)]);
        assert_eq!(catch_up.horizon(&positions), Some(at(3)));
    }

    #[test]
    fn a_paused_or_lagging_consumer_keeps_the_horizon_still() {
        let t0 = Instant::now();
        let mut catch_up = CatchUp::default();
        let positions = HashMap::from([(0, 9)]);
        assert_eq!(catch_up.horizon(&positions), None, "no snapshot yet");
        catch_up.observe(snapshot(t0, &[(0, 10)]));
        assert_eq!(catch_up.horizon(&positions), Some(t0));
        // New records keep arriving in the broker while nothing is read.
        for s in 1..=100 {
            catch_up.observe(snapshot(t0 + Duration::from_secs(s), &[(0, 10 + s as i64)]));
            assert_eq!(catch_up.horizon(&positions), Some(t0));
        }
        // A partition never read up to a snapshot has no horizon.
        let positions = HashMap::from([(0, 9), (3, 0)]);
        assert_eq!(catch_up.horizon(&positions), None);
    }

    #[test]
    fn a_forgotten_partition_starts_afresh() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut catch_up = CatchUp::default();
        catch_up.observe(snapshot(t0, &[(0, 10)]));
        catch_up.observe(snapshot(t1, &[(0, 50)]));
        assert_eq!(catch_up.horizon(&HashMap::from([(0, 49)])), Some(t1));
        // Read again from offset 9: what it had reached before no longer counts.
        catch_up.forget(0);
        assert_eq!(catch_up.horizon(&HashMap::from([(0, 9)])), None);
        assert_eq!(catch_up.horizon(&HashMap::from([(0, 49)])), Some(t1));
    }

    #[test]
    fn polls_follow_the_idle_timeout_within_bounds() {
        assert_eq!(poll_interval(2.0), Duration::from_millis(500));
        assert_eq!(poll_interval(30.0), Duration::from_secs(3));
        assert_eq!(poll_interval(600.0), Duration::from_secs(5));
    }
}
