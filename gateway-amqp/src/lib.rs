//! Fjord's AMQP 0-9-1 gateway.
//!
//! - [`codec`]: the wire format, pure (no I/O): frames, methods, content
//!   headers and field tables.
//! - [`routing`]: exchanges and bindings: which queues a message goes to.
//! - The server ([`Gateway`]): connections and channels, vhosts, exchanges,
//!   queues and bindings as durable records, and every queue a one-partition
//!   log topic whose cursor (deliveries, acknowledgements, redeliveries) a
//!   task of its own runs.
//! - Admin operations ([`Gateway::vhosts`], [`Gateway::declare_queue`], ...):
//!   the topology as an operator lists and changes it.
//! - In a cluster one node runs all of this (the leader of `__amqp_acks`)
//!   and the others carry their clients' connections to it (see
//!   `server.rs`).

mod admin;
pub mod codec;
mod config;
mod connection;
mod engine;
mod housekeeping;
mod message;
mod metrics;
mod queue;
mod refusal;
pub mod routing;
mod server;
mod topology;

pub use admin::{
    AdminError, BindingInfo, ExchangeInfo, ExchangeSpec, QueueInfo, QueueSpec, VhostInfo,
    argument_value,
};
pub use config::{AmqpConfig, Tls};
pub use server::Gateway;

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

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
