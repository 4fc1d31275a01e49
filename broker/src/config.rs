//! Node settings and the plain types of the broker's public API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use fjord_storage::{FlushPolicy, RecordHeader};

/// Node-level settings (topic-level ones come from `TopicSpec::configs`).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub node_id: u32,
    /// Address clients use to reach this node's gRPC listener (advertised).
    pub advertised_grpc: Option<SocketAddr>,
    /// Flush policy of topics that set neither `flush.ms` nor `flush.messages`.
    pub default_flush: FlushPolicy,
    /// Partitions of auto-created topics.
    pub default_partitions: u32,
    /// Create a topic on first produce to it.
    pub auto_create_topics: bool,
    /// Partitions of `__consumer_offsets` (fixed once created).
    pub offsets_topic_partitions: u32,
    /// How often retention, compaction and time-based rolls run.
    pub retention_check_interval: Duration,
    /// How this node forms or joins its cluster (a node alone is a
    /// cluster of one), and the cluster's timings.
    pub cluster: crate::cluster::ClusterConfig,
}

impl BrokerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> BrokerConfig {
        BrokerConfig {
            data_dir: data_dir.into(),
            node_id: 1,
            advertised_grpc: None,
            default_flush: FlushPolicy::EveryBatch,
            default_partitions: 1,
            auto_create_topics: false,
            offsets_topic_partitions: 8,
            retention_check_interval: Duration::from_secs(60),
            cluster: crate::cluster::ClusterConfig::new(crate::cluster::Formation::Bootstrap),
        }
    }
}

/// When a produce is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Right after the append; no offsets are returned.
    None,
    /// Once the leader has the batch below its high watermark.
    #[default]
    Leader,
    /// Once every in-sync replica has it (one node: as `Leader`).
    All,
}

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
    /// Kafka topic config names (see `topic_config.rs`).
    pub configs: BTreeMap<String, String>,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: u32) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TopicDescription {
    pub name: String,
    pub internal: bool,
    pub replication_factor: u32,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub partition: u32,
    pub leader: u32,
    pub leader_epoch: i32,
    pub replicas: Vec<u32>,
    pub isr: Vec<u32>,
    /// The leader's gRPC address (empty on a single node: this one).
    pub leader_address: String,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
}

/// A record to produce; the broker builds the batch.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
    /// 0 = now.
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceResult {
    pub partition: u32,
    /// -1 with `Acks::None`.
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub max_bytes: usize,
    /// Wait (up to `max_wait`) until at least this much is available.
    pub min_bytes: usize,
    pub max_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct FetchResult {
    /// Whole batches, below the high watermark; zero-copy from the segment.
    pub records: Bytes,
    pub next_offset: i64,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    Timestamp(i64),
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
