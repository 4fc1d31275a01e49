//! Fjord's AMQP 0-9-1 gateway.
//!
//! Owns the AMQP codec, connections and channels, vhosts, exchanges, queues
//! and bindings as durable records, and every queue a one-partition log
//! topic whose cursor (deliveries, acknowledgements, redeliveries) a task of
//! its own runs. It does not own storage or replication: queues are topics
//! of the [`fjord_broker::Broker`]. Admin operations
//! ([`Gateway::vhosts`], [`Gateway::declare_queue`], ...) list and change
//! the topology as an operator does. One node of the cluster (the leader
//! of `__amqp_acks`; a node alone is its own) runs the engine, and the
//! others carry their clients' connections to it (see `gateway.rs`).
//! Queues read their logs through the broker's [`fjord_broker::Tail`].
//!
//! # Layout
//! - [`codec`]: the wire format, pure (no I/O): frames, methods, content
//!   headers and field tables.
//! - [`routing`]: exchanges and bindings: which queues a message goes to.
//! - `topology`: vhosts, exchanges, queues and bindings as records of
//!   `__amqp_meta`; `message`: a message as a queue's record.
//! - `queue`: one queue's log topic and the task that runs its cursor.
//! - `engine`: what runs on the gateway's node: the topology, the running
//!   queues, and the operations channels call (declare, bind, delete,
//!   route); `refusal`: their refusals as AMQP reply codes and texts.
//! - `connection`: one client connection: the handshake, then its
//!   channels' methods (one file per AMQP class) and publishes.
//! - `admin`: the operator's view of the topology.
//! - `housekeeping`: resource alarms, dead letters, expired queues;
//!   `metrics`: counters; `config`: [`AmqpConfig`].
//! - `gateway`: the [`Gateway`] handle: listeners, the supervisor that
//!   runs the engine on the right node, admin access.

mod admin;
pub mod codec;
mod config;
mod connection;
mod engine;
mod gateway;
mod housekeeping;
mod message;
mod metrics;
mod queue;
mod refusal;
pub mod routing;
mod topology;

pub use admin::{
    AdminError, BindingInfo, ExchangeInfo, ExchangeSpec, QueueInfo, QueueSpec, VhostInfo,
    argument_value,
};
pub use config::{AmqpConfig, Tls};
pub use gateway::Gateway;

/// Errors of the gateway's own work (not a client's mistakes, which are
/// AMQP reply codes).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] fjord_broker::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) use fjord_broker::now_ms;
