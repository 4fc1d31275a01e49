//! The Fjord broker.
//!
//! Owns the partitions of one node (each partition's `fjord_storage::Log`
//! with its high watermark and group commit), produce and fetch, topic
//! administration, the consumer-group coordinator with offsets in the
//! compacted internal topic `__consumer_offsets`, users and their ACL rules
//! for the gateways (stored, not evaluated), broker metrics, and the gRPC
//! services of `fjord-proto`. It does not own sockets other than the gRPC
//! service, nor protocol gateways: those call the cloneable [`Broker`] handle.
//!
//! # Layout
//! - `config`: [`BrokerConfig`] and the plain request/response types.
//! - `broker`: the [`Broker`] handle: open, topics, maintenance, shutdown.
//! - `data`: produce, fetch and offset lookups.
//! - `groups`, `coordinator`, `group`: consumer groups (API, clock and
//!   channels, sans-IO membership core); `offsets`: committed offsets.
//! - `partition`: one partition: log, high watermark, group commit, waits.
//! - `topic`, `topic_config`: topic metadata on disk and topic configs.
//! - `users`: users the gateways authenticate ([`UserSpec`], [`UserInfo`],
//!   ACL rules), password hashing; `user_store`: a single node's
//!   `users.json`.
//! - `replication`: a partition leader's sans-IO view of its followers (high
//!   watermark, ISR proposals, `acks=all`).
//! - `cluster`: running as a node of a cluster: forming or joining the
//!   metadata quorum (`fjord-raft`), heartbeats and the controller loop,
//!   applying metadata to local replicas, follower fetchers, cluster admin
//!   and scaling operations.
//! - `producer_ids`: ids for idempotent producers.
//! - `murmur2`: Kafka's default partitioner.
//! - `metrics`: counters rendered as Prometheus text.
//! - `grpc`: the services, and the one error → status mapping.
//!
//! # Example
//! ```no_run
//! # async fn run() -> fjord_broker::Result<()> {
//! use fjord_broker::{Acks, Broker, BrokerConfig, NewRecord, TopicSpec};
//! let broker = Broker::open(BrokerConfig::new("./fjord-data")).await?;
//! broker.create_topic(TopicSpec::new("orders", 3)).await?;
//! let rec = NewRecord { key: Some("k".into()), value: Some("v".into()), ..Default::default() };
//! broker.produce_records("orders", Some(0), vec![rec], Default::default(), Acks::Leader).await?;
//! broker.shutdown().await;
//! # Ok(()) }
//! ```

mod broker;
mod cluster;
mod config;
mod coordinator;
mod data;
mod error;
mod files;
mod forward;
mod group;
mod groups;
mod grpc;
mod legacy;
mod metrics;
mod murmur2;
mod offsets;
mod partition;
mod producer_ids;
mod replication;
mod topic;
mod topic_config;
mod tunnel;
mod users;

pub use broker::Broker;
pub use cluster::{
    ClusterConfig, ClusterStatus, ControllerRedirect, Formation, JoinReply, NodeStatus,
    PartitionMove, UnderReplicated,
};
pub use config::{
    Acks, BrokerConfig, FetchRequest, FetchResult, NewRecord, OffsetSpec, PartitionInfo,
    ProduceResult, TopicDescription, TopicSpec,
};
pub use coordinator::{MemberDescription, Membership};
pub use data::decode_records;
pub use error::{Error, Result};
pub use fjord_raft::{AclAction, AclRule};
pub use fjord_storage::{Compression, FlushPolicy, Record, RecordHeader};
pub use group::{Assignment, GroupState, JoinOutcome};
pub use groups::{GroupDescription, GroupSummary, OffsetCommit, PartitionLag};
pub use grpc::serve_grpc;
pub use murmur2::{murmur2, partition_for_key};
pub use offsets::{CommittedOffset, OFFSETS_TOPIC};
pub use replication::{AckCheck, LeaderReplication, ReplicationAction};
pub use topic_config::TOPIC_CONFIG_KEYS;
pub use tunnel::TunnelAcceptor;
pub use users::{UserInfo, UserSpec};
