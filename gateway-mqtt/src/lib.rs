//! Fjord's MQTT gateway (MQTT 3.1.1 and 5.0).
//!
//! Owns the MQTT codec, client connections and sessions, the subscription
//! trie, retained messages and wills, and the mapping of MQTT topics onto
//! log topics. It does not own storage or replication: every PUBLISH is a
//! record appended through the [`fjord_broker::Broker`] handle, and every
//! delivery is read back from the log.
//!
//! # Layout
//! - `codec`: the pure packet codec (bytes in, packets out), fuzzable.
//! - `topic`: topic name and filter rules, matching, `$share` parsing.
//! - `trie`: the subscription trie that finds a message's subscribers.

pub mod codec;
pub mod topic;
pub mod trie;
