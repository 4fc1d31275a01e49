//! Runs real `fjord serve` processes for the integration tests, the chaos
//! runs and the benchmarks: one node or a cluster, on ephemeral loopback
//! ports, ready once the node has announced its listeners.
//!
//! The kit owns the launching: where the binary is, the `serve` command
//! line (listeners, gateways, cluster identity), waiting (bounded, by
//! polling) for `<data-dir>/listeners.json` written by the node's own
//! process, the node's signals (kill -9, SIGTERM, SIGSTOP/SIGCONT),
//! restarts, its resident memory, its log, and cleanup on drop. It does
//! not own what callers do with a running node: clients of the gRPC, HTTP,
//! MQTT or AMQP interfaces, workloads and assertions stay with them. The
//! one command it runs against a node is `fjord cluster status`, to know
//! when a cluster has formed. It depends on no other Fjord crate.
//!
//! # Layout
//! - [`binary`]: finds the `fjord` binary.
//! - [`flags`]: the `serve` flags the kit writes, the gateway-off list.
//! - [`listeners`]: reads `listeners.json`.
//! - [`node`]: one `fjord serve` process and its data directory.
//! - [`cluster`]: nodes formed into a cluster; waiting on its status.
//! - [`process`]: signals and `/proc` reads by process id.
//!
//! # Example
//! ```no_run
//! use fjord_testkit::{Cluster, Gateways, Node, fjord_binary};
//!
//! # fn main() -> anyhow::Result<()> {
//! let binary = fjord_binary(None)?;
//! let mut node = Node::builder(&binary).gateways(Gateways::MQTT).sticky_grpc().start()?;
//! println!("gRPC on {}, MQTT on {:?}", node.grpc(), node.listeners().mqtt);
//! node.kill9();
//! node.restart()?; // same data, same gRPC address
//!
//! let dir = tempfile::tempdir()?;
//! let cluster = Cluster::builder(Node::builder(&binary), dir.path(), 3).start()?;
//! let status = cluster.nodes()[0].cluster_status()?;
//! assert_eq!(status["nodes"].as_array().map(Vec::len), Some(3));
//! # Ok(())
//! # }
//! ```

pub mod binary;
pub mod cluster;
pub mod flags;
pub mod listeners;
pub mod node;
pub mod process;

pub use binary::fjord_binary;
pub use cluster::{Cluster, ClusterBuilder};
pub use flags::{GATEWAYS_OFF, Gateways, bootstrap_args, join_args};
pub use listeners::Listeners;
pub use node::{Node, NodeBuilder};
