//! Kafka backend (rdkafka with the bundled librdkafka 2.12; Debian's 2.0 cannot talk to tansu).
//!
//! Producer: `enable.idempotence=true`, `acks=all`, murmur2 partitioner; `publish` returns
//! after the delivery report. Consumer: `enable.auto.offset.store=false`, so only offsets of
//! acknowledged records are stored, and librdkafka's auto-commit commits stored offsets
//! periodically and when the consumer closes. Closing a consumer blocks while it leaves the
//! group, so it runs on a blocking thread, never on the async runtime. With
//! `bus.instance_id` consumers are static group members (`group.instance.id`); one process
//! holds at most one live consumer per group then, since two members sharing an instance id
//! fence each other on Kafka and silently share one member id on tansu.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::{BusBackend, BusConsumer, BusError, BusMessage, Delivery, TopicSpec, Watermarks};
use crate::config::BusConfig;

/// How long closing a consumer may take before we stop waiting for it (it keeps closing on
/// its own thread; see rust-rdkafka issue 509 for why it can hang).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct KafkaBackend {
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    common: ClientConfig,
    publish_timeout: Duration,
    replication_factor: i32,
    /// `group.instance.id` of every consumer; empty = dynamic membership.
    instance_id: String,
    /// Groups with a live static consumer in this process.
    static_groups: Arc<Mutex<HashSet<String>>>,
    /// Pause between fetch checks of an idle consumer; zero = never pause.
    idle_pause: Duration,
    /// How long a partition may stay consumed by nobody before a dynamic member rejoins;
    /// zero = never (`orphans.rs`).
    stall_rejoin: Duration,
}

/// A group's claim on the instance id, released when its consumer goes away.
struct StaticClaim {
    group: String,
    static_groups: Arc<Mutex<HashSet<String>>>,
}

impl StaticClaim {
    fn take(backend: &KafkaBackend, group: &str) -> Result<Option<Self>, BusError> {
        if backend.instance_id.is_empty() {
            return Ok(None);
        }
        let mut held = backend
            .static_groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !held.insert(group.to_owned()) {
            return Err(BusError::InstanceInUse {
                group: group.to_owned(),
                instance_id: backend.instance_id.clone(),
            });
        }
        Ok(Some(Self {
            group: group.to_owned(),
            static_groups: backend.static_groups.clone(),
        }))
    }
}

impl Drop for StaticClaim {
    fn drop(&mut self) {
        self.static_groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.group);
    }
}

fn kafka_err(op: &'static str) -> impl FnOnce(KafkaError) -> BusError {
    move |source| BusError::Kafka { op, source }
}

impl KafkaBackend {
    pub(super) fn new(servers: &str, config: &BusConfig) -> Result<Self, BusError> {
        let mut common = ClientConfig::new();
        common.set("bootstrap.servers", servers);
        common.set("client.id", "vigil");
        let publish_timeout = Duration::from_millis(config.publish_timeout_ms);

        let mut producer_cfg = common.clone();
        producer_cfg
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", config.publish_timeout_ms.to_string())
            // librdkafka's own cap includes framing overhead; ours is checked before sending.
            .set(
                "message.max.bytes",
                (config.max_record_bytes + 64 * 1024).to_string(),
            );
        for (k, v) in &config.kafka {
            producer_cfg.set(k, v);
            common.set(k, v);
        }
        let producer: FutureProducer = producer_cfg
            .create()
            .map_err(kafka_err("producer creation"))?;
        let admin: AdminClient<DefaultClientContext> = common
            .create()
            .map_err(kafka_err("admin client creation"))?;
        if config.idle_pause_ms > 0 {
            tracing::warn!(
                idle_pause_ms = config.idle_pause_ms,
                "bus.idle_pause_ms is on: at load it starved vigil infer and vigil store on \
                 tansu (docs/RELIABILITY.md \"Idle broker load\"); not for deployments"
            );
        }
        Ok(Self {
            producer,
            admin,
            common,
            publish_timeout,
            replication_factor: config.replication_factor,
            instance_id: config.instance_id.clone(),
            static_groups: Arc::default(),
            idle_pause: Duration::from_millis(config.idle_pause_ms),
            stall_rejoin: Duration::from_secs(config.stall_rejoin_s),
        })
    }
}

#[async_trait]
impl BusBackend for KafkaBackend {
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| {
                NewTopic::new(
                    &t.name,
                    t.partitions,
                    TopicReplication::Fixed(self.replication_factor),
                )
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = self
            .admin
            .create_topics(&new, &opts)
            .await
            .map_err(kafka_err("create topics"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(BusError::Kafka {
                        op: "create topic",
                        source: KafkaError::AdminOp(code),
                    })
                }
            }
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Delivery, BusError> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        match self
            .producer
            .send(record, Timeout::After(self.publish_timeout))
            .await
        {
            Ok(d) => Ok(Delivery {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition), _)) => {
                Err(BusError::UnknownTopic(topic.to_owned()))
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _)) => {
                Err(BusError::Timeout {
                    op: "publish",
                    after: self.publish_timeout,
                })
            }
            Err((source, _)) => Err(BusError::Kafka {
                op: "publish",
                source,
            }),
        }
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn BusConsumer>, BusError> {
        let mut cfg = ClientConfig::new();
        cfg.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            // Low fetch wait keeps end-to-end latency low (and tansu needs it: docs/ARCHITECTURE.md "Real components in tests").
            .set("fetch.wait.max.ms", "10");
        let claim = StaticClaim::take(self, group)?;
        if claim.is_some() {
            cfg.set("group.instance.id", &self.instance_id);
        }
        for (k, v) in self.common.config_map() {
            cfg.set(k, v);
        }
        let consumer: StreamConsumer = cfg.create().map_err(kafka_err("consumer creation"))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(kafka_err("subscribe"))?;
        let consumer = Arc::new(consumer);
        // A static member keeps its assignment when it rejoins, so only dynamic ones watch.
        if claim.is_none() && !self.stall_rejoin.is_zero() {
            super::orphans::watch(
                Arc::downgrade(&consumer),
                group.to_owned(),
                topics.to_vec(),
                self.stall_rejoin,
            );
        }
        Ok(Box::new(KafkaConsumer {
            consumer: Some(consumer),
            claim,
            idle: IdlePause::new(self.idle_pause),
        }))
    }

    async fn probe(&self) -> Result<(), BusError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(5))
                .map(|_| ())
        })
        .await
        .map_err(|_| BusError::Closed)?
        .map_err(kafka_err("metadata probe"))
    }

    async fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>, BusError> {
        let producer = self.producer.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let client = producer.client();
            let timeout = Duration::from_secs(10);
            let metadata = client
                .fetch_metadata(Some(&topic), timeout)
                .map_err(kafka_err("metadata"))?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                return Err(BusError::UnknownTopic(topic));
            }
            partitions
                .into_iter()
                .map(|p| {
                    client
                        .fetch_watermarks(&topic, p, timeout)
                        .map(|(low, high)| Watermarks {
                            partition: p,
                            low,
                            high,
                        })
                        .map_err(kafka_err("watermarks"))
                })
                .collect()
        })
        .await
        .map_err(|_| BusError::Closed)?
    }

    async fn read_range(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        until: i64,
    ) -> Result<Vec<BusMessage>, BusError> {
        // A consumer of its own, assigned (not subscribed) so it joins no group, and with
        // auto-commit off so it never commits; `earliest` starts at the oldest kept record
        // when retention deleted `from`.
        let mut cfg = self.common.clone();
        cfg.set(
            "group.id",
            format!("vigil-range-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10");
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let reader: BaseConsumer = cfg.create().map_err(kafka_err("range reader creation"))?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, partition, Offset::Offset(from))
                .map_err(kafka_err("range reader assign"))?;
            reader
                .assign(&tpl)
                .map_err(kafka_err("range reader assign"))?;
            let deadline = std::time::Instant::now() + RANGE_TIMEOUT;
            let mut out = Vec::new();
            loop {
                let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                    return Err(BusError::Timeout {
                        op: "range read",
                        after: RANGE_TIMEOUT,
                    });
                };
                match reader.poll(left.min(Duration::from_millis(500))) {
                    None => continue,
                    Some(Ok(m)) => {
                        if m.offset() >= until {
                            break;
                        }
                        let last = m.offset() + 1 >= until;
                        out.push(bus_message(&m));
                        if last {
                            break;
                        }
                    }
                    // The end of what the partition holds (`until` past the end, or only
                    // deleted records before it).
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    Some(Err(source)) => {
                        return Err(BusError::Kafka {
                            op: "range read",
                            source,
                        })
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|_| BusError::Closed)?
    }
}

/// Longest a range read may take.
const RANGE_TIMEOUT: Duration = Duration::from_secs(60);

struct KafkaConsumer {
    /// `None` once closed.
    consumer: Option<Arc<StreamConsumer>>,
    /// Held while the consumer lives (static membership only).
    claim: Option<StaticClaim>,
    idle: IdlePause,
}

/// Quiet after this long without a record: from then on fetching pauses between checks.
const QUIET_AFTER: Duration = Duration::from_secs(1);
/// How long a check fetches before pausing again (a few of tansu's 10 ms fetch waits).
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// Idle-consumer fetch pausing. librdkafka fetches continuously, and tansu answers each fetch
/// only after its full wait, so an idle consumer costs the broker a fetch over every assigned
/// partition every 10 ms. Once nothing arrived for [`QUIET_AFTER`], the consumer pauses its
/// partitions for `pause`, then fetches for [`IDLE_CHECK`], and so on until a record arrives.
/// Only partitions the application has read a record from are paused: librdkafka resumes
/// them from that record. A partition paused before that has no position to resume from,
/// and each resume starts a new offset lookup (`rd_kafka_toppar_pause_resume` in librdkafka
/// 2.12) that the next pause can cut short again, so it keeps fetching.
struct IdlePause {
    pause: Duration,
    last_record: std::time::Instant,
    /// Partitions paused by us, resumed before the next fetch (and on a dropped `recv`).
    paused: Option<TopicPartitionList>,
}

impl IdlePause {
    fn new(pause: Duration) -> Self {
        Self {
            pause,
            last_record: std::time::Instant::now(),
            paused: None,
        }
    }

    /// The assigned partitions the application has read from, which can be paused and
    /// resumed without losing their place.
    fn pausable(consumer: &StreamConsumer) -> Option<TopicPartitionList> {
        let positions = consumer.position().ok()?;
        let mut pausable = TopicPartitionList::new();
        for e in positions.elements() {
            if matches!(e.offset(), Offset::Offset(_)) {
                pausable.add_partition(e.topic(), e.partition());
            }
        }
        (pausable.count() > 0).then_some(pausable)
    }

    /// Resumes what an earlier, dropped `recv` left paused.
    fn resume(&mut self, consumer: &StreamConsumer) {
        if let Some(tpl) = self.paused.take() {
            // Partitions revoked meanwhile are simply not resumed.
            let _ = consumer.resume(&tpl);
        }
    }

    /// How long to wait for a record before pausing, or None to wait without pausing.
    fn patience(&self) -> Option<Duration> {
        if self.pause.is_zero() {
            return None;
        }
        let quiet_for = self.last_record.elapsed();
        Some(if quiet_for >= QUIET_AFTER {
            IDLE_CHECK
        } else {
            QUIET_AFTER - quiet_for
        })
    }

    /// Pauses fetching for `pause` (resumed at the next call or by [`Self::resume`]).
    async fn rest(&mut self, consumer: &StreamConsumer) {
        if let Some(pausable) = Self::pausable(consumer) {
            if consumer.pause(&pausable).is_ok() {
                self.paused = Some(pausable);
                metrics::counter!("vigil_bus_idle_pauses_total").increment(1);
            }
        }
        tokio::time::sleep(self.pause).await;
        self.resume(consumer);
    }
}

impl KafkaConsumer {
    fn inner(&self) -> Result<&Arc<StreamConsumer>, BusError> {
        self.consumer.as_ref().ok_or(BusError::Closed)
    }
}

fn bus_message<M: Message>(m: &M) -> BusMessage {
    BusMessage {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().unwrap_or_default().to_vec(),
        payload: m.payload().unwrap_or_default().to_vec(),
        timestamp_ms: m.timestamp().to_millis(),
    }
}

/// Commits stored offsets; "nothing to commit" is success.
fn commit_stored(consumer: &StreamConsumer) -> Result<(), BusError> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => Ok(()),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(source) => Err(BusError::Kafka {
            op: "commit",
            source,
        }),
    }
}

#[async_trait]
impl BusConsumer for KafkaConsumer {
    async fn recv(&mut self) -> Result<BusMessage, BusError> {
        let consumer = self.inner()?.clone();
        self.idle.resume(&consumer);
        loop {
            let received = match self.idle.patience() {
                None => consumer.recv().await,
                Some(patience) => match tokio::time::timeout(patience, consumer.recv()).await {
                    Ok(received) => received,
                    Err(_) => {
                        if self.idle.last_record.elapsed() >= QUIET_AFTER {
                            self.idle.rest(&consumer).await;
                        }
                        continue;
                    }
                },
            };
            match received {
                Ok(m) => {
                    self.idle.last_record = std::time::Instant::now();
                    return Ok(bus_message(&m));
                }
                // Reaching the end of a partition is informational, not a failure.
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(source) => {
                    return Err(BusError::Kafka {
                        op: "consume",
                        source,
                    })
                }
            }
        }
    }

    fn ack(&mut self, msg: &BusMessage) -> Result<(), BusError> {
        // The committed offset is the next one to read, hence +1. `store_offsets` stores
        // exactly what it is given; the legacy `store_offset` (rd_kafka_offset_store) adds 1
        // itself, and combining it with our +1 silently skipped a record per commit.
        let mut next = TopicPartitionList::new();
        next.add_partition_offset(&msg.topic, msg.partition, Offset::Offset(msg.offset + 1))
            .map_err(kafka_err("store offset"))?;
        match self.inner()?.store_offsets(&next) {
            Ok(()) => Ok(()),
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State))
            | Err(KafkaError::StoreOffset(RDKafkaErrorCode::UnknownPartition)) => {
                Err(BusError::NotAssigned {
                    topic: msg.topic.clone(),
                    partition: msg.partition,
                })
            }
            Err(source) => Err(BusError::Kafka {
                op: "store offset",
                source,
            }),
        }
    }

    fn assignment(&self) -> Result<Vec<(String, i32)>, BusError> {
        let tpl = self
            .inner()?
            .assignment()
            .map_err(kafka_err("assignment"))?;
        Ok(tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect())
    }

    async fn close(mut self: Box<Self>) -> Result<(), BusError> {
        let Some(consumer) = self.consumer.take() else {
            return Ok(());
        };
        self.idle.resume(&consumer);
        let claim = self.claim.take();
        let closing = tokio::task::spawn_blocking(move || {
            let committed = commit_stored(&consumer);
            // Dropping the last handle leaves the group (rd_kafka_consumer_close); a static
            // member only stops heartbeating.
            drop(consumer);
            drop(claim);
            committed
        });
        match tokio::time::timeout(CLOSE_TIMEOUT, closing).await {
            Ok(joined) => joined.map_err(|_| BusError::Closed)?,
            Err(_) => Err(BusError::Timeout {
                op: "consumer close",
                after: CLOSE_TIMEOUT,
            }),
        }
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        // Closing blocks until the group is left; never do that on an async worker thread.
        // Stored offsets are committed by librdkafka's close.
        if let Some(consumer) = self.consumer.take() {
            let claim = self.claim.take();
            std::thread::spawn(move || {
                drop(consumer);
                drop(claim);
            });
        }
    }
}
