//! Fjord's MQTT gateway (MQTT 3.1.1 and 5.0).
//!
//! Owns the MQTT codec, client connections and sessions, the subscription
//! trie, retained messages and wills, and the mapping of MQTT topics onto
//! log topics. It does not own storage or replication: every PUBLISH is a
//! record appended through the [`fjord_broker::Broker`] handle (and
//! acknowledged once committed), and every delivery is read back from the
//! log by a dispatcher per partition (a broker [`fjord_broker::Tail`]).
//!
//! # Layout
//! - `codec`: the pure packet codec (bytes in, packets out), fuzzable.
//! - `topic`: topic name and filter rules, matching, `$share` parsing.
//! - `trie`: the subscription trie that finds a message's subscribers.
//! - `config`: [`MqttConfig`]; `mapping`: MQTT topic → log topic/partition.
//! - `message`: an MQTT message as a log record; `session`: a session's
//!   durable state; `store`: the compacted internal topics.
//! - `registry`: subscriptions, online sessions, dispatch positions;
//!   `hub`: the shared state (registry, offline sessions, retained
//!   messages, wills) and publishing; `dispatch`: the dispatchers that
//!   tail the log and fan messages out to sessions; `cluster`: sessions
//!   claimed and handed over between nodes through the log.
//! - `connection`: one client's packet loop; `outbound`: deliveries in
//!   flight toward one client (sans-IO).
//! - `auth`: users and topic ACLs; `metrics`: counters.
//! - `gateway`: the [`Gateway`] handle and its listeners (TCP, TLS,
//!   WebSocket via `websocket`).
//!
//! # Example
//! ```no_run
//! # async fn run(broker: fjord_broker::Broker) -> fjord_gateway_mqtt::Result<()> {
//! use fjord_gateway_mqtt::{Gateway, MqttConfig};
//! let gateway = Gateway::start(broker, MqttConfig::new("./fjord-data/mqtt")).await?;
//! println!("MQTT on {:?}", gateway.listeners().tcp);
//! gateway.shutdown().await;
//! # Ok(()) }
//! ```

mod auth;
mod cluster;
pub mod codec;
mod config;
mod connection;
mod dispatch;
mod error;
mod gateway;
mod hub;
mod mapping;
mod message;
mod metrics;
mod outbound;
mod registry;
mod session;
mod store;
pub mod topic;
pub mod trie;
mod websocket;

pub use config::MqttConfig;
pub use error::{Error, Result};
pub use gateway::{Gateway, MqttListeners, tls_acceptor_for};
