//! The broker's error type; mapped to gRPC status in `grpc/status.rs` only.

/// Errors of the broker's public API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("unknown user {0}")]
    UnknownUser(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid batch for {topic}-{partition}: {source}")]
    InvalidBatch {
        topic: String,
        partition: u32,
        #[source]
        source: fjord_storage::Error,
    },
    /// An idempotent producer's batch is out of sequence or fenced.
    #[error("{topic}-{partition}: {source}")]
    Sequence {
        topic: String,
        partition: u32,
        #[source]
        source: fjord_storage::Error,
    },
    #[error(
        "offset {offset} out of range for {topic}-{partition}: earliest {earliest}, latest {latest}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: i64,
        earliest: i64,
        latest: i64,
    },
    #[error("storage error on {topic}-{partition}: {source}")]
    Storage {
        topic: String,
        partition: u32,
        #[source]
        source: fjord_storage::Error,
    },
    /// Broker metadata (`topics.json`, the data directory) could not be
    /// read or written.
    #[error("{0}")]
    Metadata(String),
    #[error("unknown member {member_id} in group {group_id}")]
    UnknownMember { group_id: String, member_id: String },
    #[error("stale generation {generation} in group {group_id} (current {current})")]
    IllegalGeneration {
        group_id: String,
        generation: i32,
        current: i32,
    },
    #[error("unknown group {0}")]
    UnknownGroup(String),
    /// An operator's change to a group that needs it without members.
    #[error(
        "group {group_id} has {members} active members: stop its consumers first (the change needs an empty group)"
    )]
    GroupNotEmpty { group_id: String, members: usize },
    #[error("broker is shutting down")]
    ShuttingDown,
    /// In a cluster: this node does not lead the partition (or is fenced).
    #[error("this node does not lead {topic}-{partition}{}", leader_hint(leader))]
    NotLeader {
        topic: String,
        partition: u32,
        /// The leader's id and address, when one is known.
        leader: Option<(u64, String)>,
    },
    /// A new leader whose high watermark has not caught up with its
    /// epoch's start yet: retry shortly.
    #[error("{topic}-{partition}: leader not ready (its high watermark is catching up); retry")]
    LeaderNotReady { topic: String, partition: u32 },
    #[error(
        "{topic}-{partition} has {isr} in-sync replicas, fewer than min.insync.replicas={required}"
    )]
    NotEnoughReplicas {
        topic: String,
        partition: u32,
        isr: usize,
        required: usize,
    },
    /// The request did not complete in time (an `acks=all` produce may
    /// still be committed later).
    #[error("{0}")]
    Timeout(String),
    /// The metadata quorum cannot take changes (no majority of voters).
    #[error("{0}")]
    NoQuorum(String),
    /// A node-to-node request broke a cluster rule (wrong cluster id,
    /// duplicate node id, a scaling operation that cannot be done).
    #[error("{0}")]
    Cluster(String),
}

fn leader_hint(leader: &Option<(u64, String)>) -> String {
    match leader {
        Some((id, addr)) => format!("; the leader is node {id} at {addr}"),
        None => "; no leader is known right now".to_string(),
    }
}

impl Error {
    /// Maps a storage error on `topic-partition` to the broker's terms:
    /// anything about the batch itself is the client's fault.
    pub(crate) fn from_storage(topic: &str, partition: u32, e: fjord_storage::Error) -> Error {
        use fjord_storage::Error as S;
        let topic = topic.to_string();
        match e {
            S::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            } => Error::OffsetOutOfRange {
                topic,
                partition,
                offset,
                earliest: log_start,
                latest: log_end,
            },
            S::OffsetMismatch { .. }
            | S::CorruptBatch(_)
            | S::UnsupportedCodec(_)
            | S::BatchTooLarge { .. }
            | S::InvalidRecord(_)
            | S::Incomplete(_) => Error::InvalidBatch {
                topic,
                partition,
                source: e,
            },
            S::OutOfOrderSequence { .. } | S::ProducerFenced { .. } => Error::Sequence {
                topic,
                partition,
                source: e,
            },
            S::Io { .. } => Error::Storage {
                topic,
                partition,
                source: e,
            },
        }
    }

    /// True when a failed produce may still have been written (and be
    /// committed): it timed out, the node stopped leading after the write,
    /// or the leader's answer was lost. Every other produce error is a
    /// refusal before anything was written.
    pub fn may_be_written(&self) -> bool {
        matches!(
            self,
            Error::Timeout(_) | Error::Cluster(_) | Error::ShuttingDown
        )
    }

    /// True for a storage failure caused by a full disk.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Storage { source, .. } if source.is_disk_full())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
