//! Fjord's native gRPC API.
//!
//! Owns the `.proto` files and the tonic/prost code generated from them: the
//! client API (topics, produce, fetch, offsets, consumer groups, health,
//! users). It owns no behaviour: the services are implemented by
//! `fjord-broker`, and clients (the `fjord` CLI, tests, benchmarks) use the
//! generated clients.
//!
//! # Layout
//! - `proto/fjord.proto`: the schema, with the error conventions at its top.
//! - [`v1`]: the generated messages, `*_client` and `*_server` modules.
//! - `proto/raft.proto`, [`raft::v1`]: Raft RPCs between metadata nodes.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use fjord_proto::v1::{topic_service_client::TopicServiceClient, ListTopicsRequest};
//! let mut client = TopicServiceClient::connect("http://127.0.0.1:9400").await?;
//! let topics = client.list_topics(ListTopicsRequest::default()).await?.into_inner();
//! println!("{} topics", topics.topics.len());
//! # Ok(()) }
//! ```

/// Generated code for package `fjord.raft.v1`: Raft RPCs between the
/// metadata quorum's nodes.
pub mod raft {
    #[allow(unreachable_pub, clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("fjord.raft.v1");
    }
}

/// Generated code for package `fjord.v1`.
#[allow(unreachable_pub, clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("fjord.v1");
}

/// Largest gRPC message either end of the API sends or accepts (a fetch
/// or a produce of big batches, a replica fetch, a forwarded append).
pub const MAX_MESSAGE: usize = 64 << 20;
