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
//! - [`server`]: starts a `fjord serve` child on ephemeral ports.

pub mod server;
pub mod stats;
