//! Fjord's metadata quorum.
//!
//! Owns the openraft type configuration, the metadata state machine (brokers,
//! topics with partition placement, leaders, leader epochs and ISRs, users
//! and their ACL rules) and the durable Raft log and vote store of a node.
//! It does not own the network between nodes nor the controller's decisions
//! (which broker to fence, whom to elect): those drive the quorum through
//! [`MetadataRequest`]s. Nor does it hash passwords or evaluate ACLs: users
//! arrive hashed, and the gateways read the rules.
//!
//! # Layout
//! - `types`: the openraft `TypeConfig` and aliases.
//! - `metadata`: [`MetadataState`] and the pure `apply` of a
//!   [`MetadataRequest`].
//! - `user`: [`User`]s the gateways authenticate and their [`AclRule`]s.
//! - `controller`: the controller's sans-IO decisions: replica placement
//!   ([`place_replicas`]), fencing and leader election ([`decide`]).
//! - `plans`: scaling plans, sans-IO: draining a broker ([`drain_plan`]),
//!   evening out and resizing replicas ([`rebalance_plan`]).
//! - `voters`: which members vote, sans-IO: keeping the configured number
//!   of voters ([`plan_voters`]).
//! - `topic_changes`: applying changes to a topic that exists (configs,
//!   more partitions).
//! - `log_store`: [`FileLogStore`], the durable Raft log and vote.
//! - `state_machine`: [`MetadataStateMachine`], applying entries and taking
//!   snapshots.
//! - `network`, `service`: Raft RPCs between nodes over gRPC
//!   ([`GrpcNetwork`] calls, [`RaftRpcService`] answers).
//! - `node`: [`MetadataNode`], a node of the quorum: start, initialize,
//!   propose from any node (followers forward to the leader), and the
//!   services to mount; the crate's [`Error`].
//! - `membership`: the quorum's [`Members`]: adding and removing nodes,
//!   carrying out voter changes.
//!
//! # Example
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use fjord_raft::{FileLogStore, MetadataStateMachine};
//! let log = FileLogStore::open("./fjord-data/raft")?;
//! let state_machine = MetadataStateMachine::open("./fjord-data/raft")?;
//! // Hand both to `openraft::Raft::new` with a network implementation.
//! # let _ = (log, state_machine);
//! # Ok(()) }
//! ```

mod controller;
mod log_store;
mod membership;
mod metadata;
mod network;
mod node;
mod plans;
mod service;
mod state_machine;
mod topic_changes;
mod types;
mod user;
mod voters;

pub use controller::{UNCLEAN_ELECTION, decide, place_replicas};
pub use log_store::FileLogStore;
pub use membership::Members;
pub use metadata::{
    BrokerInfo, MetadataRequest, MetadataResponse, MetadataState, PartitionState, TopicState,
};
pub use network::{CLUSTER_ID_HEADER, GrpcConnection, GrpcNetwork};
pub use node::{Error, MetadataNode, MetadataWatch, ProposeService};
pub use plans::{drain_plan, rebalance_plan};
pub use service::{RaftRpcService, check_cluster_id};
pub use state_machine::MetadataStateMachine;
pub use types::{Entry, LogId, StorageError, TypeConfig};
pub use user::{AclAction, AclRule, User};
pub use voters::{CAUGHT_UP_LAG, MemberHealth, VoterChange, VoterPolicy, plan_voters};
