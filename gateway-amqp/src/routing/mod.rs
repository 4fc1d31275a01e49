//! Exchanges and bindings: which queues a published message goes to (AMQP 0-9-1, RabbitMQ
//! semantics). Pure data, no I/O: the gateway owns one [`Exchanges`] table and persists what
//! changes in it.
//!
//! # Format
//! [`Exchanges`] holds, per vhost, the exchanges by name (each one's declaration, its parsed
//! `alternate-exchange` and its bindings), the names of the vhost's queues, and a reverse index
//! from every binding destination to the exchanges bound to it. An exchange's bindings are
//! indexed by routing key and by destination; a topic exchange also keeps a trie over the words
//! of its binding keys (`topic.rs`), so a lookup walks the routing key once instead of testing
//! every binding. Header and argument tables are `Vec<(String, V)>` over any value type that
//! implements [`HeaderValue`] (the codec's field value).
//!
//! # Invariants
//! - A vhost always has the default exchange `""` and `amq.direct`, `amq.fanout`, `amq.topic`,
//!   `amq.headers` and `amq.match`: clients can neither delete them nor declare other `amq.*`
//!   exchanges.
//! - The default exchange has no explicit bindings: it reaches the queue named by the routing
//!   key.
//! - Every binding's source exists and its destination (queue or exchange) exists in the same
//!   vhost: deleting a queue or an exchange removes the bindings to it.
//! - An auto-delete exchange is deleted when it loses its last binding as a source, which can
//!   in turn delete other auto-delete exchanges bound to it.
//! - A binding on a headers exchange has a valid `x-match` argument.
//!
//! # Concurrency
//! Plain data, no locks. Reads (`route`) take `&self`, changes `&mut self`: one owner applies
//! changes, readers may share a snapshot (the table is `Clone`).
//!
//! # Crash
//! Nothing here is persisted. The caller stores declarations and bindings and, on restart,
//! replays them: `add_vhost`, `add_queue`, `declare_exchange`, then `bind`.
//!
//! # Example
//! ```
//! use fjord_gateway_amqp::routing::{
//!     Destination, ExchangeDecl, ExchangeKind, Exchanges, HeaderValue, RoutingError,
//! };
//!
//! /// Stands in for the codec's field value.
//! #[derive(Debug, PartialEq)]
//! struct Text(String);
//!
//! impl HeaderValue for Text {
//!     fn is_void(&self) -> bool {
//!         false
//!     }
//!     fn as_str(&self) -> Option<&str> {
//!         Some(&self.0)
//!     }
//! }
//!
//! let mut table = Exchanges::<Text>::new();
//! table.add_vhost("/");
//! table.add_queue("/", "alerts")?;
//! table.declare_exchange("/", "logs", ExchangeDecl::durable(ExchangeKind::Topic))?;
//! table.bind("/", "logs", Destination::queue("alerts"), "*.error", vec![])?;
//! assert_eq!(table.route("/", "logs", "disk.error", &[])?.queues, ["alerts"]);
//! assert!(!table.route("/", "logs", "disk.info", &[])?.is_routed());
//! let missing = table.route("/", "metrics", "cpu", &[]).unwrap_err();
//! assert_eq!(missing.reply_code(), 404);
//! assert_eq!(missing.to_string(), "NOT_FOUND - no exchange 'metrics' in vhost '/'");
//! # Ok::<(), RoutingError>(())
//! ```

mod bindings;
mod error;
mod exchange;
mod headers;
mod table;
mod topic;
mod vhost;

#[cfg(test)]
mod tests;

pub use bindings::{BindingRef, Destination};
pub use error::RoutingError;
pub use exchange::{ExchangeDecl, ExchangeKind};
pub use headers::{HeaderValue, XMatch, headers_match, validate_headers_binding};
pub use table::{Exchanges, Removed, RouteResult, Routed};
