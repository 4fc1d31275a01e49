/// Errors of the broker's public API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid batch for {topic}-{partition}: {source}")]
    InvalidBatch {
        topic: String,
        partition: u32,
        #[source]
        source: fjord_storage::Error,
    },
    #[error("offset {offset} out of range for {topic}-{partition}: earliest {earliest}, latest {latest}")]
    OffsetOutOfRange { topic: String, partition: u32, offset: i64, earliest: i64, latest: i64 },
    #[error("storage error on {topic}-{partition}: {source}")]
    Storage {
        topic: String,
        partition: u32,
        #[source]
        source: fjord_storage::Error,
    },
    #[error("unknown member {member_id} in group {group_id}")]
    UnknownMember { group_id: String, member_id: String },
    #[error("stale generation {generation} in group {group_id}")]
    IllegalGeneration { group_id: String, generation: i32 },
    #[error("broker is shutting down")]
    ShuttingDown,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
