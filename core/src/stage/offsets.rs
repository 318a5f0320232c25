//! Exact offsets for records that finish out of order.

use std::collections::{BTreeMap, HashMap};

use crate::bus::BusMessage;

/// Identifies one consumed record until the stage has made its effect durable.
pub type Ticket = u64;

/// Per partition, the offsets handed out and which of them are done; the committed position is
/// the end of the contiguous done prefix.
///
/// A partition read again from an offset it already handed out (the group moved it, or moved
/// it away and back, and the consumer restarted at the committed position) starts afresh: the
/// tickets still in flight from before are forgotten, so that only the new deliveries advance
/// its position. Otherwise an earlier copy finishing first could commit past a redelivered
/// record still in progress.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    next_ticket: Ticket,
    tickets: HashMap<Ticket, (String, i32, i64)>,
    partitions: HashMap<(String, i32), BTreeMap<i64, bool>>,
    /// Per partition, the highest offset handed out.
    highest: HashMap<(String, i32), i64>,
}

impl OffsetTracker {
    /// Registers a consumed record; returns its ticket.
    pub fn register(&mut self, msg: &BusMessage) -> Ticket {
        let key = (msg.topic.clone(), msg.partition);
        if self.highest.get(&key).is_some_and(|h| msg.offset <= *h) {
            self.forget(&msg.topic, msg.partition);
        }
        self.highest.insert(key, msg.offset);
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.tickets
            .insert(ticket, (msg.topic.clone(), msg.partition, msg.offset));
        self.partitions
            .entry((msg.topic.clone(), msg.partition))
            .or_default()
            .insert(msg.offset, false);
        ticket
    }

    /// Marks a ticket done. Returns the record to acknowledge when its partition's done prefix
    /// grew (acknowledging it covers every record before it in the partition).
    pub fn complete(&mut self, ticket: Ticket) -> Option<BusMessage> {
        let (topic, partition, offset) = self.tickets.remove(&ticket)?;
        let key = (topic, partition);
        let pending = self.partitions.get_mut(&key)?;
        if let Some(done) = pending.get_mut(&offset) {
            *done = true;
        }
        let mut last = None;
        while let Some(entry) = pending.first_entry() {
            if !*entry.get() {
                break;
            }
            last = Some(*entry.key());
            entry.remove();
        }
        let (topic, partition) = key;
        last.map(|offset| BusMessage {
            topic,
            partition,
            offset,
            key: Vec::new(),
            payload: Vec::new(),
            timestamp_ms: None,
        })
    }

    /// Forgets a partition's records in flight (it was revoked, or is being read again): their
    /// tickets complete to nothing.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.tickets
            .retain(|_, (t, p, _)| !(t.as_str() == topic && *p == partition));
        let key = (topic.to_owned(), partition);
        self.partitions.remove(&key);
        self.highest.remove(&key);
    }

    /// Records registered and not yet done.
    pub fn in_flight(&self) -> usize {
        self.tickets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(partition: i32, offset: i64) -> BusMessage {
        BusMessage {
            topic: "t".into(),
            partition,
            offset,
            key: Vec::new(),
            payload: Vec::new(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn offsets_advance_only_over_the_done_prefix() {
        let mut tracker = OffsetTracker::default();
        let a = tracker.register(&msg(0, 10));
        let b = tracker.register(&msg(0, 11));
        let c = tracker.register(&msg(0, 12));
        let other = tracker.register(&msg(1, 5));
        assert_eq!(
            tracker.complete(c),
            None,
            "12 done, 10 and 11 still in flight"
        );
        assert_eq!(tracker.complete(b), None, "10 still in flight");
        assert_eq!(
            tracker.complete(a).map(|m| m.offset),
            Some(12),
            "10..=12 all done"
        );
        assert_eq!(
            tracker.complete(other).map(|m| (m.partition, m.offset)),
            Some((1, 5))
        );
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.complete(a), None, "a ticket completes once");
    }

    #[test]
    fn a_partition_read_again_advances_only_over_the_new_deliveries() {
        let mut tracker = OffsetTracker::default();
        let old: Vec<Ticket> = (10..13).map(|o| tracker.register(&msg(0, o))).collect();
        let other = tracker.register(&msg(1, 5));
        // The group moved partition 0 back here: delivered again from 10.
        let again = tracker.register(&msg(0, 10));
        let next = tracker.register(&msg(0, 11));
        for ticket in old {
            assert_eq!(
                tracker.complete(ticket),
                None,
                "earlier copies commit nothing"
            );
        }
        assert_eq!(tracker.complete(next), None, "10 is in flight again");
        assert_eq!(tracker.complete(again).map(|m| m.offset), Some(11));
        assert_eq!(
            tracker.complete(other).map(|m| (m.partition, m.offset)),
            Some((1, 5)),
            "other partitions keep theirs"
        );
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn a_revoked_partition_commits_nothing_more() {
        let mut tracker = OffsetTracker::default();
        let a = tracker.register(&msg(0, 10));
        tracker.forget("t", 0);
        assert_eq!(tracker.complete(a), None);
        assert_eq!(tracker.in_flight(), 0);
        let b = tracker.register(&msg(0, 10));
        assert_eq!(
            tracker.complete(b).map(|m| m.offset),
            Some(10),
            "assigned again"
        );
    }
}
