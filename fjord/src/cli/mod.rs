//! Client subcommands: they speak the gRPC API of the node at `--server`.

pub(crate) mod consume;
mod consume_group;
pub(crate) mod group;
pub(crate) mod produce;
pub(crate) mod table;
pub(crate) mod topic;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use tonic::transport::{Channel, Endpoint};

/// Options every client subcommand takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClientArgs {
    /// Node to talk to (host:port of its gRPC listener).
    #[arg(
        long,
        global = true,
        env = "FJORD_SERVER",
        default_value = "127.0.0.1:9400"
    )]
    pub(crate) server: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned, human-readable tables.
    Table,
    /// JSON for scripts.
    Json,
}

impl ClientArgs {
    /// Connects to the node.
    ///
    /// # Errors
    /// The address is malformed or nothing answers there.
    pub(crate) async fn connect(&self) -> Result<Channel> {
        let url = if self.server.contains("://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        };
        Endpoint::from_shared(url.clone())
            .with_context(|| format!("bad server address {}", self.server))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("cannot reach a fjord node at {}", self.server))
    }
}

/// Turns a gRPC status into an error that prints as the server's message.
pub(crate) fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", e.message(), e.code())
}

/// Largest message the CLI accepts from the server.
pub(crate) const MAX_MESSAGE: usize = 64 << 20;
