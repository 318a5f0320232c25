//! Orphaned partitions: a dynamic group member that finds a partition of its topics consumed
//! by nobody leaves and rejoins its group, forcing the rebalance the broker did not start.
//!
//! tansu 0.6.0 drops a dead member after its session timeout but keeps the group's old
//! assignment, so the dead member's partitions are never consumed again, and a member that
//! restarted in its place may be left with none (docs/RELIABILITY.md). Members cannot see each
//! other's assignments there (tansu's DescribeGroups returns none), so "consumed by nobody" is
//! inferred: a partition this member does not hold, with records past the group's committed
//! offset, whose committed offset has not moved for `stall`. A live owner commits every second
//! while it completes records (auto-commit), so a stall that long means the owner is gone or
//! stuck. Leaving the group (LeaveGroup, which only dynamic members send) makes tansu rebalance
//! every partition over the live members. Kafka reassigns a dead member's partitions by itself,
//! so there the watch only fires for a stuck owner, and costs one rebalance.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::telemetry::events::{Emit, GroupRejoined};

/// How long one broker request of a check may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One partition as the group sees it at one check.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PartitionReading {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; None when nothing was committed yet.
    pub committed: Option<i64>,
    /// Low and high watermarks.
    pub low: i64,
    pub high: i64,
}

/// Committed offsets of the partitions this member does not hold, followed over checks.
#[derive(Debug)]
pub(super) struct StallWatch {
    stall: Duration,
    /// `(topic, partition)` -> (committed offset, first seen at it with records behind it).
    since: HashMap<(String, i32), (i64, Instant)>,
}

impl StallWatch {
    pub(super) fn new(stall: Duration) -> Self {
        Self {
            stall,
            since: HashMap::new(),
        }
    }

    /// Takes one check's readings of the partitions this member does not hold; returns those
    /// that have had records past an unchanged committed offset for at least `stall`.
    pub(super) fn observe(
        &mut self,
        now: Instant,
        others: &[PartitionReading],
    ) -> Vec<(String, i32)> {
        let mut behind = HashMap::new();
        for r in others {
            let committed = r.committed.unwrap_or(r.low).max(r.low);
            if committed >= r.high {
                continue;
            }
            let key = (r.topic.clone(), r.partition);
            let since = match self.since.get(&key) {
                Some(&(offset, at)) if offset == committed => at,
                _ => now,
            };
            behind.insert(key, (committed, since));
        }
        // Partitions caught up, or now held here, start afresh.
        self.since = behind;
        let mut stalled: Vec<(String, i32)> = self
            .since
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) >= self.stall)
            .map(|(key, _)| key.clone())
            .collect();
        stalled.sort();
        stalled
    }

    /// Forgets every partition (after a rejoin, the assignment changes).
    pub(super) fn reset(&mut self) {
        self.since.clear();
    }
}

/// Reads every partition of `topics` that `consumer` does not hold (blocking calls).
fn read_others(
    consumer: &StreamConsumer,
    topics: &[String],
) -> Result<Vec<PartitionReading>, KafkaError> {
    let held = consumer.assignment()?;
    let held: Vec<(String, i32)> = held
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    let mut others = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                if !held.iter().any(|(ht, hp)| ht == topic && *hp == p.id()) {
                    others.add_partition(topic, p.id());
                }
            }
        }
    }
    if others.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer.committed_offsets(others, REQUEST_TIMEOUT)?;
    let mut readings = Vec::with_capacity(committed.count());
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), REQUEST_TIMEOUT)?;
        readings.push(PartitionReading {
            topic: e.topic().to_owned(),
            partition: e.partition(),
            committed: match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            },
            low,
            high,
        });
    }
    Ok(readings)
}

/// Watches `consumer` of `group` on `topics` until it is dropped: every quarter of `stall`,
/// reads the partitions it does not hold, and rejoins the group when one stalled.
pub(super) fn watch(
    consumer: Weak<StreamConsumer>,
    group: String,
    topics: Vec<String>,
    stall: Duration,
) {
    let every = (stall / 4).max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut state = StallWatch::new(stall);
        loop {
            tokio::time::sleep(every).await;
            let consumer = consumer.clone();
            let (group, topics) = (group.clone(), topics.clone());
            // Runs on a blocking thread, where the consumer's last handle may be dropped
            // (dropping it closes the consumer, which blocks).
            let check = tokio::task::spawn_blocking(move || {
                let consumer = consumer.upgrade()?;
                check(&consumer, &group, &topics, &mut state);
                Some(state)
            });
            match check.await {
                Ok(Some(kept)) => state = kept,
                _ => return,
            }
        }
    });
}

/// One check; rejoins when a partition stalled.
fn check(consumer: &StreamConsumer, group: &str, topics: &[String], state: &mut StallWatch) {
    let others = match read_others(consumer, topics) {
        Ok(others) => others,
        Err(err) => {
            tracing::debug!(group, %err, "orphaned-partition check failed");
            return;
        }
    };
    let stalled = state.observe(Instant::now(), &others);
    if stalled.is_empty() {
        return;
    }
    GroupRejoined {
        group,
        stalled: &stalled,
        stall: state.stall,
    }
    .emit();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.unsubscribe();
    if let Err(err) = consumer.subscribe(&names) {
        tracing::error!(group, %err, "could not rejoin the group");
    }
    state.reset();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(partition: i32, committed: Option<i64>, high: i64) -> PartitionReading {
        PartitionReading {
            topic: "t".into(),
            partition,
            committed,
            low: 0,
            high,
        }
    }

    #[test]
    fn a_partition_stalls_only_when_its_commit_stays_behind_for_the_whole_period() {
        let stall = Duration::from_secs(60);
        let mut watch = StallWatch::new(stall);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // p0 is behind and stuck, p1 advances, p2 is caught up, p3 never committed.
        let step = |w: &mut StallWatch, s: u64, p1: i64| {
            w.observe(
                at(s),
                &[
                    reading(0, Some(5), 10),
                    reading(1, Some(p1), p1 + 3),
                    reading(2, Some(10), 10),
                    reading(3, None, 4),
                ],
            )
        };
        assert!(step(&mut watch, 0, 1).is_empty());
        assert!(step(&mut watch, 30, 2).is_empty());
        assert_eq!(
            step(&mut watch, 60, 3),
            vec![("t".to_owned(), 0), ("t".to_owned(), 3)]
        );
        // Held here now (absent from the readings): forgotten, and timed afresh if it returns.
        assert!(watch.observe(at(61), &[]).is_empty());
        assert!(watch.observe(at(62), &[reading(0, Some(5), 10)]).is_empty());
        assert_eq!(watch.observe(at(122), &[reading(0, Some(5), 10)]).len(), 1);
    }

    #[test]
    fn a_commit_that_moves_or_catches_up_restarts_the_clock() {
        let mut watch = StallWatch::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(watch.observe(t0, &[reading(0, Some(1), 5)]).is_empty());
        let later = t0 + Duration::from_secs(9);
        assert!(watch.observe(later, &[reading(0, Some(2), 5)]).is_empty());
        let caught_up = t0 + Duration::from_secs(15);
        assert!(watch
            .observe(caught_up, &[reading(0, Some(5), 5)])
            .is_empty());
        let behind_again = t0 + Duration::from_secs(16);
        assert!(watch
            .observe(behind_again, &[reading(0, Some(5), 9)])
            .is_empty());
        let stuck = t0 + Duration::from_secs(26);
        assert_eq!(watch.observe(stuck, &[reading(0, Some(5), 9)]).len(), 1);
        watch.reset();
        assert!(watch.observe(stuck, &[reading(0, Some(5), 9)]).is_empty());
    }
}
