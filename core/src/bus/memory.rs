//! In-process broker for the embedded mode and unit tests.
//!
//! Brokers are process-global by name (`memory://name`), so two handles built from the same
//! URL see the same topics, as two Kafka clients of one cluster do. Each partition is a log
//! with offsets; groups assign partitions round-robin among members and rebalance when a
//! member joins or leaves; a member starts each newly assigned partition at the group's
//! committed offset. `ack` commits at once (the in-process equivalent of storing the offset
//! and auto-committing), so anything not acknowledged is redelivered to the next owner.
//! Old records beyond the per-partition retention are dropped, like Kafka retention.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use async_trait::async_trait;
use tokio::sync::watch;

use super::partitioner::partition_for;
use super::{BusBackend, BusConsumer, BusError, BusMessage, Delivery, TopicSpec, Watermarks};

type PartitionKey = (String, i32);

struct StoredRecord {
    key: Vec<u8>,
    payload: Vec<u8>,
    timestamp_ms: i64,
}

#[derive(Default)]
struct PartitionLog {
    /// Offset of `records[0]`.
    start_offset: i64,
    records: VecDeque<Arc<StoredRecord>>,
}

impl PartitionLog {
    fn end_offset(&self) -> i64 {
        self.start_offset + self.records.len() as i64
    }
}

#[derive(Default)]
struct Group {
    generation: u64,
    /// Member id -> subscribed topics.
    members: BTreeMap<u64, Vec<String>>,
    /// Member id -> assigned partitions.
    assignment: HashMap<u64, Vec<PartitionKey>>,
    committed: HashMap<PartitionKey, i64>,
}

#[derive(Default)]
struct BrokerState {
    topics: HashMap<String, Vec<PartitionLog>>,
    groups: HashMap<String, Group>,
    next_member: u64,
}

impl BrokerState {
    /// Records of the group's topics it has not acknowledged: Kafka's consumer lag, the end
    /// offset minus the committed offset summed over the partitions. Its topics are those its
    /// members subscribe to and those it has committed on, so a group whose members all
    /// stopped still shows what waits for it.
    fn group_lag(&self, group: &Group) -> i64 {
        let mut topics: Vec<&String> = group
            .members
            .values()
            .flatten()
            .chain(group.committed.keys().map(|(topic, _)| topic))
            .collect();
        topics.sort();
        topics.dedup();
        let mut lag = 0;
        for topic in topics {
            for (p, log) in self.topics.get(topic).into_iter().flatten().enumerate() {
                let committed = group
                    .committed
                    .get(&(topic.clone(), p as i32))
                    .copied()
                    .unwrap_or(log.start_offset);
                lag += log.end_offset() - committed.max(log.start_offset);
            }
        }
        lag
    }

    /// `vigil_bus_group_lag_records{broker, group}` for every group (read when `/metrics` is:
    /// on Kafka the broker keeps the committed offsets and `vigil-loadbench` asks it).
    fn report_lag(&self, broker: &str) {
        for (name, group) in &self.groups {
            metrics::gauge!(
                "vigil_bus_group_lag_records",
                "broker" => broker.to_owned(),
                "group" => name.clone()
            )
            .set(self.group_lag(group) as f64);
        }
    }

    /// Round-robin assignment per topic among the members subscribed to it.
    fn rebalance(&mut self, group: &str) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        g.generation += 1;
        g.assignment = g.members.keys().map(|m| (*m, Vec::new())).collect();
        let mut topics: Vec<&String> = g.members.values().flatten().collect();
        topics.sort();
        topics.dedup();
        for topic in topics {
            let eligible: Vec<u64> = g
                .members
                .iter()
                .filter(|(_, t)| t.contains(topic))
                .map(|(m, _)| *m)
                .collect();
            let partitions = self.topics.get(topic).map_or(0, Vec::len);
            for p in 0..partitions {
                let member = eligible[p % eligible.len()];
                if let Some(parts) = g.assignment.get_mut(&member) {
                    parts.push((topic.clone(), p as i32));
                }
            }
        }
    }
}

/// Handle to a named in-process broker.
pub(super) struct MemoryBroker {
    inner: Arc<BrokerInner>,
}

struct BrokerInner {
    state: Mutex<BrokerState>,
    /// Bumped on every publish and rebalance; consumers wait on it.
    changed: watch::Sender<u64>,
    retention: usize,
}

fn registry() -> &'static Mutex<HashMap<String, Arc<BrokerInner>>> {
    static BROKERS: OnceLock<Mutex<HashMap<String, Arc<BrokerInner>>>> = OnceLock::new();
    BROKERS.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the log half-written (every mutation is a
    // single push/assignment), so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryBroker {
    /// The broker called `name` in this process, created on first use.
    pub(super) fn named(name: &str, retention: usize) -> Arc<Self> {
        let name = if name.is_empty() { "default" } else { name };
        let inner = lock(registry())
            .entry(name.to_owned())
            .or_insert_with(|| {
                let inner = Arc::new(BrokerInner {
                    state: Mutex::new(BrokerState::default()),
                    changed: watch::channel(0).0,
                    retention: retention.max(1),
                });
                let weak = Arc::downgrade(&inner);
                let broker = name.to_owned();
                crate::telemetry::on_scrape(move || {
                    if let Some(inner) = weak.upgrade() {
                        lock(&inner.state).report_lag(&broker);
                    }
                });
                inner
            })
            .clone();
        Arc::new(MemoryBroker { inner })
    }
}

impl BrokerInner {
    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[async_trait]
impl BusBackend for MemoryBroker {
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        let mut state = lock(&self.inner.state);
        for spec in topics {
            state.topics.entry(spec.name.clone()).or_insert_with(|| {
                (0..spec.partitions.max(1))
                    .map(|_| Default::default())
                    .collect()
            });
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Delivery, BusError> {
        let delivery = {
            let mut state = lock(&self.inner.state);
            let partitions = state
                .topics
                .get_mut(topic)
                .ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))?;
            let partition = partition_for(key, partitions.len() as i32);
            let log = &mut partitions[partition as usize];
            log.records.push_back(Arc::new(StoredRecord {
                key: key.to_vec(),
                payload: payload.to_vec(),
                timestamp_ms: crate::time::now_ns() / 1_000_000,
            }));
            let offset = log.end_offset() - 1;
            while log.records.len() > self.inner.retention {
                log.records.pop_front();
                log.start_offset += 1;
            }
            Delivery { partition, offset }
        };
        self.inner.bump();
        Ok(delivery)
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn BusConsumer>, BusError> {
        let member = {
            let mut state = lock(&self.inner.state);
            if let Some(missing) = topics.iter().find(|t| !state.topics.contains_key(*t)) {
                return Err(BusError::UnknownTopic(missing.clone()));
            }
            state.next_member += 1;
            let member = state.next_member;
            state
                .groups
                .entry(group.to_owned())
                .or_default()
                .members
                .insert(member, topics.to_vec());
            state.rebalance(group);
            member
        };
        self.inner.bump();
        let broker = self.inner.clone();
        let changes = self.inner.changed.subscribe();
        Ok(Box::new(MemoryConsumer {
            broker,
            group: group.to_owned(),
            member,
            generation: 0,
            positions: Vec::new(),
            cursor: 0,
            changes,
            left: false,
        }))
    }

    async fn probe(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>, BusError> {
        let state = lock(&self.inner.state);
        let partitions = state
            .topics
            .get(topic)
            .ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))?;
        Ok(partitions
            .iter()
            .enumerate()
            .map(|(p, log)| Watermarks {
                partition: p as i32,
                low: log.start_offset,
                high: log.end_offset(),
            })
            .collect())
    }

    async fn read_range(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        until: i64,
    ) -> Result<Vec<BusMessage>, BusError> {
        let state = lock(&self.inner.state);
        let log = state
            .topics
            .get(topic)
            .and_then(|parts| parts.get(usize::try_from(partition).ok()?))
            .ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))?;
        let first = from.max(log.start_offset);
        let last = until.min(log.end_offset());
        Ok((first..last)
            .map(|offset| {
                let record = &log.records[(offset - log.start_offset) as usize];
                BusMessage {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    key: record.key.clone(),
                    payload: record.payload.clone(),
                    timestamp_ms: Some(record.timestamp_ms),
                }
            })
            .collect())
    }
}

struct MemoryConsumer {
    broker: Arc<BrokerInner>,
    group: String,
    member: u64,
    /// Group generation the positions below belong to.
    generation: u64,
    /// Assigned partitions and the next offset to read from each.
    positions: Vec<(PartitionKey, i64)>,
    /// Round-robin start, so one busy partition cannot starve the others.
    cursor: usize,
    changes: watch::Receiver<u64>,
    left: bool,
}

impl MemoryConsumer {
    /// Picks up a new assignment after a rebalance, starting at committed offsets.
    fn sync_assignment(&mut self, state: &BrokerState) {
        let Some(group) = state.groups.get(&self.group) else {
            return;
        };
        if group.generation == self.generation {
            return;
        }
        self.generation = group.generation;
        self.cursor = 0;
        self.positions = group
            .assignment
            .get(&self.member)
            .into_iter()
            .flatten()
            .map(|key| {
                let start = state.topics[&key.0][key.1 as usize].start_offset;
                let committed = group.committed.get(key).copied().unwrap_or(start);
                (key.clone(), committed.max(start))
            })
            .collect();
    }

    fn next_ready(&mut self, state: &BrokerState) -> Option<BusMessage> {
        let n = self.positions.len();
        for i in 0..n {
            let idx = (self.cursor + i) % n;
            let ((topic, partition), position) = &mut self.positions[idx];
            let log = &state.topics[topic.as_str()][*partition as usize];
            // Records dropped by retention are skipped, as Kafka does with
            // auto.offset.reset=earliest.
            *position = (*position).max(log.start_offset);
            if *position < log.end_offset() {
                let record = &log.records[(*position - log.start_offset) as usize];
                let msg = BusMessage {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *position,
                    key: record.key.clone(),
                    payload: record.payload.clone(),
                    timestamp_ms: Some(record.timestamp_ms),
                };
                *position += 1;
                self.cursor = idx + 1;
                return Some(msg);
            }
        }
        None
    }

    fn leave(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        {
            let mut state = lock(&self.broker.state);
            if let Some(group) = state.groups.get_mut(&self.group) {
                group.members.remove(&self.member);
            }
            state.rebalance(&self.group);
        }
        self.broker.bump();
    }
}

#[async_trait]
impl BusConsumer for MemoryConsumer {
    async fn recv(&mut self) -> Result<BusMessage, BusError> {
        loop {
            // Mark the current version seen before looking, so a publish that lands after the
            // look still wakes us.
            self.changes.borrow_and_update();
            {
                let broker = self.broker.clone();
                let state = lock(&broker.state);
                self.sync_assignment(&state);
                if let Some(msg) = self.next_ready(&state) {
                    return Ok(msg);
                }
            }
            self.changes.changed().await.map_err(|_| BusError::Closed)?;
        }
    }

    fn ack(&mut self, msg: &BusMessage) -> Result<(), BusError> {
        let mut state = lock(&self.broker.state);
        let key = (msg.topic.clone(), msg.partition);
        let group = state.groups.get_mut(&self.group).ok_or(BusError::Closed)?;
        let owned = group.generation == self.generation
            && group
                .assignment
                .get(&self.member)
                .is_some_and(|parts| parts.contains(&key));
        if !owned {
            return Err(BusError::NotAssigned {
                topic: msg.topic.clone(),
                partition: msg.partition,
            });
        }
        // The same meaning as Kafka's stored offset: the position becomes `offset + 1`, even
        // if that moves it back, so a stage that acked out of order fails here as it would there.
        group.committed.insert(key, msg.offset + 1);
        Ok(())
    }

    fn assignment(&self) -> Result<Vec<(String, i32)>, BusError> {
        let state = lock(&self.broker.state);
        Ok(state
            .groups
            .get(&self.group)
            .and_then(|g| g.assignment.get(&self.member))
            .cloned()
            .unwrap_or_default())
    }

    async fn close(mut self: Box<Self>) -> Result<(), BusError> {
        self.leave();
        Ok(())
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the lag gauge of `group` on `broker` in the rendered `/metrics` page.
    fn lag_gauge(broker: &str, group: &str) -> Option<f64> {
        let page = crate::telemetry::render_page(&crate::telemetry::metrics_handle());
        let (b, g) = (format!("broker=\"{broker}\""), format!("group=\"{group}\""));
        page.lines()
            .filter(|l| l.starts_with("vigil_bus_group_lag_records{"))
            .find(|l| l.contains(&b) && l.contains(&g))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[tokio::test]
    async fn lag_gauge_counts_what_a_group_has_not_acknowledged() {
        let broker = MemoryBroker::named("lag-gauge-test", 100);
        broker
            .create_topics(&[TopicSpec {
                name: "t".into(),
                partitions: 2,
            }])
            .await
            .expect("topics");
        for i in 0..5u8 {
            broker.publish("t", &[i], b"x").await.expect("publish");
        }
        let mut consumer = broker
            .subscribe("g", &["t".into()])
            .await
            .expect("subscribe");
        assert_eq!(lag_gauge("lag-gauge-test", "g"), Some(5.0));
        for _ in 0..3 {
            let msg = consumer.recv().await.expect("recv");
            consumer.ack(&msg).expect("ack");
        }
        assert_eq!(lag_gauge("lag-gauge-test", "g"), Some(2.0));
        broker.publish("t", b"late", b"x").await.expect("publish");
        assert_eq!(lag_gauge("lag-gauge-test", "g"), Some(3.0));
        // A group whose members stopped still owes what it did not acknowledge.
        consumer.close().await.expect("close");
        assert_eq!(lag_gauge("lag-gauge-test", "g"), Some(3.0));
    }
}
