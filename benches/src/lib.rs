//! Fjord's benchmark programs.
//!
//! Each program prints its figures and, where there is one, the ratio to a
//! baseline it measured itself in the same run, so a comparison holds on a
//! noisy machine. Results are written up in `docs/benchmarks.md`.
//!
//! # Layout
//! - `bin/storage_bench.rs`: log append vs raw `write` + `fdatasync`, and warm
//!   reads vs `memcpy`.
//! - `bin/e2e_bench.rs`: produce → fetch through gRPC on loopback against a
//!   real `fjord serve`, records/s and end-to-end latency percentiles.
//! - [`stats`]: medians and percentiles shared by the programs.
//! - [`host`]: the machine a benchmark ran on (CPUs, memory, kernel, load).
//! - [`metrics`]: reads a node's `/metrics` page.
//! - [`mqtt_server`]: starts Fjord or Mosquitto as an MQTT broker on loopback.
//! - `process`: the process behind a broker (Fjord nodes come from
//!   `fjord-testkit`).
//! - [`mqtt_load`]: MQTT load generator: latency, loss, duplicates, order.
//! - [`mqtt_idle`]: memory per idle MQTT connection on a fresh server.
//! - `bin/amqp_bench.rs`: Fjord's AMQP gateway against RabbitMQ.
//! - `bin/cluster_bench.rs`: replicated throughput, failover and rebalance
//!   of the log on a 3-node cluster.
//! - `bin/failover_bench.rs`: how long MQTT and AMQP clients wait to be
//!   served again after a node dies.
//! - [`amqp_server`]: starts Fjord or a private RabbitMQ node as an AMQP
//!   broker on loopback.
//! - [`amqp_load`]: AMQP load generator (confirms, manual acks): latency,
//!   loss, duplicates, order.
//! - [`receipts`]: what the load generators' receivers saw (the stamp each
//!   message carries; latency, losses, duplicates, order) and the figures
//!   of a run.
//! - `progress`: a load run's counters while it goes, and the watch that
//!   fails a run that stalls or overruns.
//! - [`report`]: what the MQTT and AMQP benchmark programs print alike
//!   (failed runs with the server's log tail, table cells, notes).

pub mod amqp_load;
pub mod amqp_server;
pub mod host;
pub mod metrics;
pub mod mqtt_idle;
pub mod mqtt_load;
pub mod mqtt_server;
mod process;
mod progress;
pub mod receipts;
pub mod report;
pub mod stats;
