//! Exact offsets for records that finish out of order.

use std::collections::{BTreeMap, HashMap};

use crate::bus::BusMessage;

/// Identifies one consumed record until the stage has made its effect durable.
pub type Ticket = u64;

/// Per partition, the offsets handed out and which of them are done; the committed position is
/// the end of the contiguous done prefix.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    next_ticket: Ticket,
    tickets: HashMap<Ticket, (String, i32, i64)>,
    partitions: HashMap<(String, i32), BTreeMap<i64, bool>>,
}

impl OffsetTracker {
    /// Registers a consumed record; returns its ticket.
    pub fn register(&mut self, msg: &BusMessage) -> Ticket {
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
}
