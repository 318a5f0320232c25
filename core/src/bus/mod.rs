//! The message bus every stage talks through, chosen by URL.
//!
//! - `memory://[name]`: an in-process broker (embedded mode, unit tests). Same semantics as
//!   Kafka where stages can observe them: partition by key (Kafka's murmur2 partitioner), per
//!   partition order, consumer groups that split partitions, and offsets that advance only when
//!   the consumer acknowledges a record, so an unacknowledged record is redelivered.
//! - `kafka://host:port[,host:port...]`: rdkafka with an idempotent `acks=all` producer and
//!   consumer groups whose offsets are stored only on [`BusConsumer::ack`] and committed by
//!   librdkafka's auto-commit (every second) or [`BusConsumer::close`].
//!
//! Contract for stages: call `ack` only once the record's effect is durable (written to the
//! database, or its outputs published); delivery is at-least-once, so effects must be
//! idempotent on the record's key.

mod kafka;
mod memory;
mod orphans;
pub mod partitioner;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::codec::{self, Record};
use crate::config::BusConfig;
use crate::telemetry::events::{self, Emit};

/// The logical topics of docs/ARCHITECTURE.md "Topics". Names on the broker carry the configured prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Raw EEG chunks from ingest.
    EegRaw,
    /// Display-filtered, downsampled EEG for screens.
    EegTrace,
    /// Raw heart-rate batches from ingest.
    HrRaw,
    /// Seizure probabilities from inference.
    EegProb,
    /// qEEG trends (CSA, asymmetry, aEEG, burst suppression) from inference.
    EegTrends,
    /// Alert transitions.
    Alerts,
    /// Dead letters: refused records and why.
    Dlq,
}

impl Topic {
    /// Every topic, for creation at start-up.
    pub const ALL: [Topic; 7] = [
        Topic::EegRaw,
        Topic::EegTrace,
        Topic::HrRaw,
        Topic::EegProb,
        Topic::EegTrends,
        Topic::Alerts,
        Topic::Dlq,
    ];

    /// Name without prefix.
    pub fn base_name(self) -> &'static str {
        match self {
            Topic::EegRaw => "vigil.eeg.raw",
            Topic::EegTrace => "vigil.eeg.trace",
            Topic::HrRaw => "vigil.hr.raw",
            Topic::EegProb => "vigil.eeg.prob",
            Topic::EegTrends => "vigil.eeg.trends",
            Topic::Alerts => "vigil.alerts",
            Topic::Dlq => "vigil.dlq",
        }
    }
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Full name on the broker.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
}

/// Where a published record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// A record read from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// Full topic name (with prefix).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Key (the patient id for Vigil topics).
    pub key: Vec<u8>,
    /// Encoded record.
    pub payload: Vec<u8>,
    /// Broker or producer timestamp in ms since the Unix epoch, when known.
    pub timestamp_ms: Option<i64>,
}

/// Bus failures.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// URL with an unknown scheme or no host.
    #[error("unsupported bus URL {0:?}: use memory://[name] or kafka://host:port[,host:port]")]
    BadUrl(String),
    /// Record larger than `bus.max_record_bytes`; nothing was sent.
    #[error("record of {size} bytes for topic {topic} exceeds the {max}-byte limit")]
    RecordTooLarge {
        /// Topic.
        topic: String,
        /// Key + payload bytes.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Topic missing on the broker.
    #[error("topic {0} does not exist (run `vigil topics create`)")]
    UnknownTopic(String),
    /// `ack` for a partition this consumer no longer owns (the group rebalanced): the record
    /// will be redelivered to the new owner.
    #[error("partition {partition} of {topic} is not assigned to this consumer")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A second consumer of one group in a process with `bus.instance_id` set: it would
    /// share the first one's static membership.
    #[error(
        "group {group} already has a consumer in this process with instance id {instance_id:?}"
    )]
    InstanceInUse {
        /// Group.
        group: String,
        /// The configured `bus.instance_id`.
        instance_id: String,
    },
    /// The bus was shut down.
    #[error("the bus is closed")]
    Closed,
    /// An operation did not finish in time.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        op: &'static str,
        /// Time allowed.
        after: Duration,
    },
    /// A Kafka client error.
    #[error("kafka {op} failed: {source}")]
    Kafka {
        /// What failed.
        op: &'static str,
        /// Client error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Encoding a record failed.
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

impl BusError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            BusError::BadUrl(_) => "bad_url",
            BusError::RecordTooLarge { .. } => "too_large",
            BusError::UnknownTopic(_) => "unknown_topic",
            BusError::NotAssigned { .. } => "not_assigned",
            BusError::InstanceInUse { .. } => "instance_in_use",
            BusError::Closed => "closed",
            BusError::Timeout { .. } => "timeout",
            BusError::Kafka { .. } => "kafka",
            BusError::Codec(_) => "codec",
        }
    }
}

/// Offsets bounding one partition's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// Partition.
    pub partition: i32,
    /// Offset of the oldest record kept (retention may have deleted older ones).
    pub low: i64,
    /// Offset the next record will get.
    pub high: i64,
}

/// A broker implementation.
#[async_trait]
pub trait BusBackend: Send + Sync + 'static {
    /// Creates topics; existing ones are left as they are.
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError>;
    /// Publishes one record and returns once the broker holds it durably.
    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Delivery, BusError>;
    /// Joins consumer group `group` on `topics`.
    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn BusConsumer>, BusError>;
    /// Checks the broker answers (for `/readyz`).
    async fn probe(&self) -> Result<(), BusError>;
    /// The watermarks of every partition of `topic`: the offset of the oldest record still
    /// kept and the end offset (of the next record to be written). A reader from the start
    /// has seen everything written before the call once it passed every end offset.
    async fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>, BusError>;
    /// The records of one partition with offsets in `from..until`, in offset order, read
    /// outside any consumer group (nothing is committed). Records deleted by retention are
    /// missing, so the result may start after `from`.
    async fn read_range(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        until: i64,
    ) -> Result<Vec<BusMessage>, BusError>;
}

/// A member of a consumer group.
#[async_trait]
pub trait BusConsumer: Send {
    /// Next record from the partitions assigned to this member. Cancel-safe.
    async fn recv(&mut self) -> Result<BusMessage, BusError>;
    /// Marks `msg` (and everything before it in its partition) processed: the partition's
    /// committed position becomes `msg.offset + 1` on every backend, even if that is lower than
    /// before, so acknowledge in offset order (a stage whose records finish out of order tracks
    /// its contiguous done prefix, as inference does). Call only after the record's effect is
    /// durable.
    fn ack(&mut self, msg: &BusMessage) -> Result<(), BusError>;
    /// Partitions currently assigned to this member, as `(topic, partition)`.
    fn assignment(&self) -> Result<Vec<(String, i32)>, BusError>;
    /// Commits acknowledged offsets and leaves the group.
    async fn close(self: Box<Self>) -> Result<(), BusError>;
}

/// The bus handle stages share: topic naming, the record size cap and telemetry around one
/// backend.
#[derive(Clone)]
pub struct Bus {
    backend: Arc<dyn BusBackend>,
    prefix: String,
    partitions: i32,
    max_record_bytes: usize,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("prefix", &self.prefix)
            .field("partitions", &self.partitions)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Connects to the bus named by `config.url`.
    pub async fn connect(config: &BusConfig) -> Result<Self, BusError> {
        let url = config.url.trim();
        let backend: Arc<dyn BusBackend> = if let Some(name) = url.strip_prefix("memory://") {
            memory::MemoryBroker::named(name, config.memory_retention_records)
        } else if let Some(servers) = url.strip_prefix("kafka://") {
            let servers = servers.trim_end_matches('/');
            if servers.is_empty() {
                return Err(BusError::BadUrl(url.to_owned()));
            }
            Arc::new(kafka::KafkaBackend::new(servers, config)?)
        } else {
            return Err(BusError::BadUrl(url.to_owned()));
        };
        Ok(Self {
            backend,
            prefix: config.topic_prefix.clone(),
            partitions: config.partitions,
            max_record_bytes: config.max_record_bytes,
        })
    }

    /// Full broker name of a Vigil topic.
    pub fn topic(&self, topic: Topic) -> String {
        format!("{}{}", self.prefix, topic.base_name())
    }

    /// Largest key + payload this bus accepts.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// Creates every Vigil topic with the configured partition count.
    pub async fn create_vigil_topics(&self) -> Result<(), BusError> {
        let specs: Vec<TopicSpec> = Topic::ALL
            .iter()
            .map(|t| TopicSpec {
                name: self.topic(*t),
                partitions: self.partitions,
            })
            .collect();
        self.backend.create_topics(&specs).await
    }

    /// Creates arbitrary topics (full names).
    pub async fn create_topics(&self, specs: &[TopicSpec]) -> Result<(), BusError> {
        self.backend.create_topics(specs).await
    }

    /// Publishes raw bytes; refuses records over the size cap before touching the broker.
    pub async fn publish(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<Delivery, BusError> {
        let size = key.len() + payload.len();
        if size > self.max_record_bytes {
            let err = BusError::RecordTooLarge {
                topic: topic.to_owned(),
                size,
                max: self.max_record_bytes,
            };
            events::PublishFailed { topic, error: &err }.emit();
            return Err(err);
        }
        let started = Instant::now();
        match self.backend.publish(topic, key, payload).await {
            Ok(delivery) => {
                events::RecordPublished {
                    topic,
                    bytes: size,
                    latency: started.elapsed(),
                }
                .emit();
                Ok(delivery)
            }
            Err(err) => {
                events::PublishFailed { topic, error: &err }.emit();
                Err(err)
            }
        }
    }

    /// Encodes `record` in the binary codec and publishes it on `topic`, keyed by `key`.
    pub async fn publish_record<R: Record>(
        &self,
        topic: Topic,
        key: &str,
        record: &R,
    ) -> Result<Delivery, BusError> {
        let payload = codec::encode(record)?;
        self.publish(&self.topic(topic), key.as_bytes(), &payload)
            .await
    }

    /// Joins consumer group `group` on the given full topic names.
    pub async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn BusConsumer>, BusError> {
        self.backend.subscribe(group, topics).await
    }

    /// Watermarks of every partition of the full topic name `topic` (see
    /// [`BusBackend::watermarks`]).
    pub async fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>, BusError> {
        self.backend.watermarks(topic).await
    }

    /// The records of partition `partition` of the full topic name `topic` with offsets in
    /// `from..until`, outside any group (see [`BusBackend::read_range`]): for a stage that
    /// rebuilds state from records it did not consume itself.
    pub async fn read_range(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        until: i64,
    ) -> Result<Vec<BusMessage>, BusError> {
        if from >= until {
            return Ok(Vec::new());
        }
        self.backend.read_range(topic, partition, from, until).await
    }

    /// Checks the broker answers.
    pub async fn probe(&self) -> Result<(), BusError> {
        self.backend.probe().await
    }
}
