use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
pub use fjord_storage::{Compression, FlushPolicy, Record, RecordHeader};

use crate::Result;

/// Node-level settings (topic-level ones come from `TopicSpec::configs`).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub node_id: u32,
    /// Address clients use to reach this node's gRPC listener (advertised).
    pub advertised_grpc: Option<SocketAddr>,
    /// Defaults for topics that do not override them (Kafka names:
    /// `flush.ms`, `retention.ms`, ...); see `TopicSpec::configs`.
    pub default_flush: FlushPolicy,
    pub default_partitions: u32,
    pub auto_create_topics: bool,
    pub offsets_topic_partitions: u32,
    pub retention_check_interval: Duration,
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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    None,
    #[default]
    Leader,
    All,
}

#[derive(Debug, Clone, Default)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
    pub configs: BTreeMap<String, String>,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: u32) -> TopicSpec {
        TopicSpec { name: name.into(), partitions, replication_factor: 1, configs: BTreeMap::new() }
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

/// The in-process broker handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Broker {
    _private: (),
}

impl Broker {
    pub async fn open(config: BrokerConfig) -> Result<Broker> {
        let _ = config;
        todo!()
    }
    pub async fn create_topic(&self, spec: TopicSpec) -> Result<TopicDescription> {
        let _ = spec;
        todo!()
    }
    pub fn list_topics(&self, include_internal: bool) -> Vec<TopicDescription> {
        let _ = include_internal;
        todo!()
    }
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let _ = name;
        todo!()
    }
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let _ = name;
        todo!()
    }
    /// Appends one pre-built Kafka v2 batch.
    pub async fn produce(&self, topic: &str, partition: u32, batch: Bytes, acks: Acks) -> Result<ProduceResult> {
        let _ = (topic, partition, batch, acks);
        todo!()
    }
    /// Builds a batch from `records` and appends it; `partition = None` picks
    /// murmur2(key) % partitions, or round-robin without a key.
    pub async fn produce_records(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<NewRecord>,
        compression: Compression,
        acks: Acks,
    ) -> Result<ProduceResult> {
        let _ = (topic, partition, records, compression, acks);
        todo!()
    }
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResult> {
        let _ = request;
        todo!()
    }
    pub fn list_offset(&self, topic: &str, partition: u32, spec: OffsetSpec) -> Result<Option<(i64, i64)>> {
        let _ = (topic, partition, spec);
        todo!()
    }
    pub fn node_id(&self) -> u32 {
        todo!()
    }
    /// Prometheus text exposition of the broker's metrics.
    pub fn render_metrics(&self) -> String {
        todo!()
    }
    /// Flushes every partition and stops background tasks.
    pub async fn shutdown(&self) {
        todo!()
    }
}

/// Serves the gRPC API of `fjord-proto` for `broker` on an already-bound
/// listener until `shutdown` completes.
pub async fn serve_grpc(
    broker: Broker,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let _ = (broker, listener, shutdown);
    todo!()
}
