//! Client subcommands: they speak the gRPC API of the node at `--server`.

pub(crate) mod amqp;
pub(crate) mod cluster;
pub(crate) mod consume;
mod consume_group;
pub(crate) mod group;
pub(crate) mod produce;
pub(crate) mod table;
pub(crate) mod topic;
pub(crate) mod user;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
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
        if let Some(channel) = channels().get(&url) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(url.clone())
            .with_context(|| format!("bad server address {}", self.server))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("cannot reach a fjord node at {}", self.server))?;
        channels().insert(url, channel.clone());
        Ok(channel)
    }

    /// The same options aimed at another node.
    pub(crate) fn at(&self, server: &str) -> ClientArgs {
        ClientArgs {
            server: server.to_string(),
            output: self.output,
        }
    }

    /// The node metadata changes are sent to: in a cluster the controller
    /// (the metadata quorum's leader), found by asking `--server` for the
    /// cluster status; `None` on a single node.
    ///
    /// # Errors
    /// No node answers, or the cluster has no controller right now.
    pub(crate) async fn controller(&self) -> Result<Option<ClientArgs>> {
        let s = ClusterServiceClient::new(self.connect().await?)
            .status(pb::ClusterStatusRequest {})
            .await
            .map_err(status)?
            .into_inner();
        if s.cluster_id.is_empty() {
            return Ok(None);
        }
        let Some(node) = s.nodes.iter().find(|n| n.id == s.controller) else {
            bail!("the cluster has no controller right now (is a majority of voters up?)");
        };
        Ok(Some(self.at(&node.address)))
    }

    /// A channel to the leader of `topic`-`partition` (in a cluster; on a
    /// single node, the node itself), found by describing the topic.
    ///
    /// # Errors
    /// The topic is unknown or no node answers.
    pub(crate) async fn leader(&self, topic: &str, partition: u32) -> Result<Channel> {
        let base = self.connect().await?;
        let described = TopicServiceClient::new(base.clone())
            .describe_topic(pb::DescribeTopicRequest {
                name: topic.to_string(),
                local_only: false,
            })
            .await
            .map_err(status)?
            .into_inner();
        let addr = described
            .topic
            .and_then(|t| t.partitions.into_iter().find(|p| p.partition == partition))
            .map(|p| p.leader_address)
            .unwrap_or_default();
        if addr.is_empty() || addr == self.server {
            return Ok(base);
        }
        self.at(&addr).connect().await
    }
}

/// Open channels by URL: a command talks to a few nodes many times.
fn channels() -> std::sync::MutexGuard<'static, HashMap<String, Channel>> {
    static CHANNELS: OnceLock<Mutex<HashMap<String, Channel>>> = OnceLock::new();
    CHANNELS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// True for the server's "send this to the leader instead" answer (and for
/// a cluster that is electing one): the request was not carried out.
pub(crate) fn is_not_leader(e: &tonic::Status) -> bool {
    e.code() == tonic::Code::Unavailable
        && (e.metadata().get("fjord-leader-id").is_some()
            || e.message().contains("does not lead")
            || e.message().contains("leader not ready")
            || e.message().contains("in-sync replicas"))
}

/// The address the server named as leader, if any.
pub(crate) fn leader_address(e: &tonic::Status) -> Option<String> {
    e.metadata()
        .get("fjord-leader-address")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Prints `value` for `--output json`, `text` otherwise.
pub(crate) fn report(output: Output, value: serde_json::Value, text: String) {
    if output == Output::Json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

/// The answer to a gRPC call, or its status as an error (see [`status`]).
pub(crate) async fn answer<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    Ok(call.await.map_err(status)?.into_inner())
}

/// Turns a gRPC status into an error that prints as the server's message.
pub(crate) fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", e.message(), e.code())
}

/// Largest message the CLI accepts from the server.
pub(crate) use fjord_proto::MAX_MESSAGE;
