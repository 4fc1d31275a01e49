//! The Fjord broker.
//!
//! Owns a node's partitions and their replication, the node's part in the
//! metadata quorum (a node alone is a cluster of one), produce and fetch
//! wherever a partition's leader is, topics and users, consumer groups
//! with their offsets, broker metrics, and the gRPC services of
//! `fjord-proto`. It does not own sockets other than the gRPC service, nor
//! protocol gateways: those call the cloneable [`Broker`] handle.
//!
//! # Layout
//! The broker is in parts, each a folder with one way in; a part uses
//! only the parts above it in this list.
//! - `quorum`: this node's part in the metadata quorum (`fjord-raft`):
//!   identity, forming or joining, heartbeats, the controller's rounds,
//!   membership, proposals, who leads what.
//! - `replica`: the replica manager: partitions and their roles, applying
//!   the metadata, followers' fetchers and the leader side of their
//!   fetches, the leader's appends and reads; the only place replication
//!   actions (high watermarks, ISR changes) are carried out.
//! - `router`: sends a produce, fetch or offset lookup to the partition's
//!   leader, follows partitions ([`Tail`]), carries gateway connections
//!   to another node ([`Tunnels`]).
//! - `admin`: topics and configs, users, cluster operations ([`Admin`]).
//! - `coordinator`: consumer groups, committed offsets, producer ids
//!   ([`GroupCoordinator`]).
//! - `grpc`: the gRPC services, a thin mapping over the parts, and the one
//!   error → status mapping.
//! - `broker`: the [`Broker`] handle over the parts.
//! - Shared by all: `api` (the public request and response types),
//!   `config` ([`BrokerConfig`]), `batch` (building and decoding record
//!   batches), `clock`, `files` (atomic small files), `metrics`,
//!   `murmur2` (Kafka's partitioner), `error`.
//!
//! # Example
//! ```no_run
//! # async fn run() -> fjord_broker::Result<()> {
//! use fjord_broker::{Broker, BrokerConfig, NewRecord, ProduceRequest, TopicSpec};
//! let broker = Broker::open(BrokerConfig::new("./fjord-data")).await?;
//! broker.start().await?;
//! broker.admin().create_topic(TopicSpec::new("orders", 3)).await?;
//! let rec = NewRecord { key: Some("k".into()), value: Some("v".into()), ..Default::default() };
//! broker.produce(ProduceRequest::records("orders", Some(0), vec![rec])).await?;
//! broker.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
mod api;
mod batch;
mod broker;
mod clock;
mod config;
mod coordinator;
mod error;
mod files;
mod grpc;
mod metrics;
mod murmur2;
mod quorum;
mod replica;
mod router;

pub use admin::{
    Admin, ClusterStatus, NodeStatus, PartitionMove, UnderReplicated, UserInfo, UserSpec,
};
pub use api::{
    Acks, FetchRequest, FetchResult, Leader, NewRecord, OffsetSpec, PartitionInfo, ProduceRequest,
    ProduceResult, Records, Route, TopicDescription, TopicSpec,
};
pub use batch::decode_records;
pub use broker::Broker;
pub use clock::now_ms;
pub use config::{BrokerConfig, ClusterConfig, Formation};
pub use coordinator::{
    Assignment, CommittedOffset, GroupCoordinator, GroupDescription, GroupState, GroupSummary,
    JoinOutcome, MemberDescription, Membership, OFFSETS_TOPIC, OffsetCommit, OffsetReset,
    OffsetResetSpec, PartitionLag,
};
pub use error::{Error, Result};
pub use fjord_raft::{AclAction, AclRule};
pub use fjord_storage::{Compression, FlushPolicy, Record, RecordHeader};
pub use grpc::serve_grpc;
pub use murmur2::{murmur2, partition_for_key};
pub use quorum::{ControllerRedirect, JoinReply};
pub use replica::topic_config::TOPIC_CONFIG_KEYS;
pub use router::{Tail, TailBatch, TailRead, TunnelAcceptor, Tunnels};
