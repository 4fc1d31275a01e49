//! The plain types of the broker's public API: what a produce, a fetch or a
//! topic operation takes and gives back, and where a request goes.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use fjord_storage::{Compression, RecordHeader};

/// When a produce is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Right after the append; no offsets are returned.
    None,
    /// Once the leader has the batch durably.
    #[default]
    Leader,
    /// Once every in-sync replica has it (its high watermark passed it).
    All,
}

/// Where a produce, fetch or offset lookup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    /// This node, which must lead the partition: any other node refuses
    /// with `NotLeader` (naming the leader). A writer that must stop when
    /// it loses leadership (a fenced writer) uses this, and so do clients
    /// that follow leaders themselves.
    Local,
    /// The partition's leader, wherever it is: forwarded over the cluster
    /// when it is another node, and tried again (for a few seconds) while
    /// leadership moves. Refusals that prove nothing was done are the only
    /// ones retried.
    #[default]
    Leader,
}

/// The records of a produce.
#[derive(Debug, Clone)]
pub enum Records {
    /// One Kafka v2 record batch, as a client built it (validated before
    /// it is appended; offsets are stamped by the leader).
    Batch(Bytes),
    /// Records the broker puts in one batch.
    New {
        records: Vec<NewRecord>,
        compression: Compression,
    },
}

/// A produce: one batch to one partition.
#[derive(Debug, Clone)]
pub struct ProduceRequest {
    pub topic: String,
    /// `None`: Kafka's default partitioner (murmur2 of the first record's
    /// key, or round-robin without one); a batch needs its partition.
    pub partition: Option<u32>,
    pub records: Records,
    pub acks: Acks,
    pub route: Route,
}

impl ProduceRequest {
    /// Records to `topic` (`partition`, or the partitioner's choice),
    /// uncompressed, `acks=all`, to the partition's leader wherever it is.
    pub fn records(
        topic: impl Into<String>,
        partition: Option<u32>,
        records: Vec<NewRecord>,
    ) -> ProduceRequest {
        ProduceRequest {
            topic: topic.into(),
            partition,
            records: Records::New {
                records,
                compression: Compression::None,
            },
            acks: Acks::All,
            route: Route::Leader,
        }
    }

    /// A client's batch to `topic`-`partition`, `acks=all`, on this node.
    pub fn batch(topic: impl Into<String>, partition: u32, batch: Bytes) -> ProduceRequest {
        ProduceRequest {
            topic: topic.into(),
            partition: Some(partition),
            records: Records::Batch(batch),
            acks: Acks::All,
            route: Route::Local,
        }
    }

    pub fn acks(mut self, acks: Acks) -> ProduceRequest {
        self.acks = acks;
        self
    }

    pub fn route(mut self, route: Route) -> ProduceRequest {
        self.route = route;
        self
    }

    /// Compresses records the broker batches (no effect on a batch).
    pub fn compression(mut self, codec: Compression) -> ProduceRequest {
        if let Records::New { compression, .. } = &mut self.records {
            *compression = codec;
        }
        self
    }
}

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    /// 0: as many replicas as live nodes, up to 3.
    pub replication_factor: u32,
    /// Kafka topic config names (see `replica/topic_config.rs`).
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
    /// The leader's gRPC address.
    pub leader_address: String,
    /// The leader's figures (-1 when it could not be asked).
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

/// A read of whole batches from `offset`, below the high watermark.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    /// 0: 1 MiB. A first batch larger than this is returned whole.
    pub max_bytes: usize,
    /// Wait (up to `max_wait`) until at least this much is available.
    pub min_bytes: usize,
    pub max_wait: Duration,
    pub route: Route,
}

impl FetchRequest {
    /// A read from `offset` (1 MiB at most, no wait) on the partition's
    /// leader wherever it is.
    pub fn new(topic: impl Into<String>, partition: u32, offset: i64) -> FetchRequest {
        FetchRequest {
            topic: topic.into(),
            partition,
            offset,
            max_bytes: 1 << 20,
            min_bytes: 0,
            max_wait: Duration::ZERO,
            route: Route::Leader,
        }
    }

    /// Waits up to `max_wait` for at least `min_bytes`.
    pub fn wait(mut self, min_bytes: usize, max_wait: Duration) -> FetchRequest {
        self.min_bytes = min_bytes;
        self.max_wait = max_wait;
        self
    }

    pub fn route(mut self, route: Route) -> FetchRequest {
        self.route = route;
        self
    }
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
    /// The high watermark: the end of what is committed.
    Latest,
    Timestamp(i64),
    /// The leader's log end: past the high watermark, what it holds and
    /// has not committed yet (it may still commit, or be cut off when
    /// another replica takes over).
    LogEnd,
}

/// Who leads a partition, as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leader {
    /// This node.
    Here,
    /// Another node: its id and gRPC address.
    Node(u64, String),
    /// Nobody right now (an election is running, or no replica is live).
    Unknown,
}
