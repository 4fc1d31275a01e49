//! The Fjord broker.
//!
//! Owns the partitions of one node (a task per partition driving its
//! `fjord_storage::Log`), produce and fetch with the high watermark, topic
//! administration, the consumer-group coordinator with offsets in the
//! compacted internal topic `__consumer_offsets`, broker metrics, and the gRPC
//! services of `fjord-proto`. It does not own sockets other than the gRPC
//! service, nor protocol gateways: those call the cloneable [`Broker`] handle.
//!
//! # Layout
//! - `broker`: the [`Broker`] handle and its config.
//! - `error`: the crate's [`Error`], mapped to gRPC status in one place.
//! (further modules listed as they are written)
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
mod error;

pub use broker::*;
pub use error::{Error, Result};
