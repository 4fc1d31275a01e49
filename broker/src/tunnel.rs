//! Client connections of a gateway carried to the node that serves them.
//!
//! A gateway whose state one node owns (AMQP: the leader of its metadata
//! partition) still listens on every node. A node that does not own it
//! opens a tunnel (`ReplicaService.Tunnel`, a bidirectional gRPC stream) to
//! the partition's leader and copies the client's bytes both ways; the
//! leader hands its end to the gateway as if the client had connected
//! there.
//!
//! # Invariants
//! - A tunnel is accepted only by the partition's leader, and only while
//!   its gateway takes connections; a refusal says so (NotLeader,
//!   LeaderNotReady) and the opener tries the leader named in the
//!   metadata again, for a few seconds.
//! - Either end closing ends the other: the stream ends, the other side
//!   reads end-of-file.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_proto::v1 as pb;
use fjord_proto::v1::replica_service_client::ReplicaServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::broker::Broker;
use crate::cluster::with_cluster_id;
use crate::{Error, Result};

/// Takes a tunnelled connection, or says why this node does not take one
/// now (its gateway is starting or stopping).
pub type TunnelAcceptor =
    Arc<dyn Fn(DuplexStream) -> std::result::Result<(), String> + Send + Sync>;

/// The acceptors registered on a node, by protocol.
#[derive(Default)]
pub(crate) struct Tunnels(std::sync::Mutex<HashMap<String, TunnelAcceptor>>);

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TunnelAcceptor>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.lock().keys()).finish()
    }
}

/// Bytes buffered between a tunnel's stream and its connection.
const BUFFER: usize = 256 << 10;

/// Largest data frame a tunnel sends.
const CHUNK: usize = 64 << 10;

/// How long opening a tunnel waits for the partition to have a leader that
/// takes it.
const OPEN_WAIT: Duration = Duration::from_secs(10);

impl Broker {
    /// Registers (or with `None` removes) the gateway that takes tunnels of
    /// `protocol` on this node.
    pub fn set_tunnel_acceptor(&self, protocol: &str, acceptor: Option<TunnelAcceptor>) {
        let mut tunnels = self.inner.tunnels.lock();
        match acceptor {
            Some(a) => tunnels.insert(protocol.to_string(), a),
            None => tunnels.remove(protocol),
        };
    }

    /// True when this node leads `topic`-`partition` (always on a single
    /// node that has it).
    pub fn leads(&self, topic: &str, partition: u32) -> bool {
        self.leader_partition(topic, partition).is_ok()
    }

    /// Where the metadata quorum has three or more voters, waits up to
    /// `wait` until every voter is live and at least three nodes are (the
    /// default replication factor), so that topics created next get all
    /// their replicas. A node alone, or a quorum of two, does not wait.
    /// False when the wait ran out.
    pub async fn wait_for_voters(&self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let status = self.cluster_status();
            let voters = status.nodes.iter().filter(|n| n.role == "voter");
            if voters.clone().count() < 3 && !status.nodes.is_empty() {
                return true;
            }
            let all_live = voters.clone().all(|n| n.live);
            let live = status.nodes.iter().filter(|n| n.live).count();
            if all_live && status.quorum && live >= 3 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The node id and gRPC address of `topic`-`partition`'s leader as the
    /// metadata says, when it is another node.
    pub fn leader_elsewhere(&self, topic: &str, partition: u32) -> Option<(u64, String)> {
        if self.leads(topic, partition) {
            return None;
        }
        match self.not_leader(topic, partition) {
            Error::NotLeader { leader, .. } => leader,
            _ => None,
        }
    }

    /// Opens a connection to the `protocol` gateway of the node that leads
    /// `topic`-`partition`: this node's own when it leads, else a tunnel.
    ///
    /// # Errors
    /// `NotLeader`/`LeaderNotReady` when no leader took it within a few
    /// seconds; `Cluster` when the leader could not be reached by then.
    pub async fn open_tunnel(
        &self,
        protocol: &str,
        topic: &str,
        partition: u32,
    ) -> Result<DuplexStream> {
        let deadline = tokio::time::Instant::now() + OPEN_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            let outcome = match self.leader_elsewhere(topic, partition) {
                None if self.leads(topic, partition) => self.accept_tunnel(&pb::TunnelOpen {
                    protocol: protocol.to_string(),
                    topic: topic.to_string(),
                    partition,
                }),
                None => Err(self.not_leader(topic, partition)),
                Some((_, addr)) => self.remote_tunnel(&addr, protocol, topic, partition).await,
            };
            // Opening has no effect until it succeeds: a leader that cannot
            // be reached (it failed; a new one is being elected) is tried
            // again too.
            match outcome {
                Err(Error::NotLeader { .. } | Error::LeaderNotReady { .. } | Error::Cluster(_))
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                other => return other,
            }
        }
    }

    /// The leader's side: a connection for the gateway, once it took it.
    pub(crate) fn accept_tunnel(&self, open: &pb::TunnelOpen) -> Result<DuplexStream> {
        self.check_open()?;
        self.leader_partition(&open.topic, open.partition)?;
        let acceptor = self.inner.tunnels.lock().get(&open.protocol).cloned();
        let not_ready = || Error::LeaderNotReady {
            topic: open.topic.clone(),
            partition: open.partition,
        };
        let acceptor = acceptor.ok_or_else(not_ready)?;
        let (ours, theirs) = tokio::io::duplex(BUFFER);
        acceptor(theirs).map_err(|why| {
            tracing::debug!(protocol = open.protocol, "tunnel refused: {why}");
            not_ready()
        })?;
        Ok(ours)
    }

    async fn remote_tunnel(
        &self,
        addr: &str,
        protocol: &str,
        topic: &str,
        partition: u32,
    ) -> Result<DuplexStream> {
        let cluster = self.cluster();
        let mut client = ReplicaServiceClient::new(cluster.channel(addr)?);
        let (tx, rx) = mpsc::channel::<pb::TunnelFrame>(16);
        let open = pb::TunnelFrame {
            open: Some(pb::TunnelOpen {
                protocol: protocol.to_string(),
                topic: topic.to_string(),
                partition,
            }),
            data: Bytes::new(),
        };
        if tx.send(open).await.is_err() {
            return Err(Error::Cluster("tunnel closed before it opened".into()));
        }
        let request = with_cluster_id(cluster.node.cluster_id(), ReceiverStream::new(rx));
        let mut inbound = match client.tunnel(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if status.code() == Code::Unavailable && status.metadata().is_empty() {
                    cluster.drop_channel(addr);
                }
                return Err(crate::forward::from_status(topic, partition, status));
            }
        };
        let (ours, theirs) = tokio::io::duplex(BUFFER);
        let (mut reader, mut writer) = tokio::io::split(theirs);
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let frame = pb::TunnelFrame {
                    open: None,
                    data: Bytes::copy_from_slice(&buf[..n]),
                };
                if tx.send(frame).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Ok(Some(frame)) = inbound.message().await {
                if writer.write_all(&frame.data).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        Ok(ours)
    }
}

/// Copies a tunnel's frames into `io` and `io`'s bytes out as frames (the
/// leader's side of `ReplicaService.Tunnel`); the returned stream ends when
/// the gateway closes the connection.
pub(crate) fn pump(
    io: DuplexStream,
    mut inbound: tonic::Streaming<pb::TunnelFrame>,
    first: Bytes,
) -> impl tokio_stream::Stream<Item = std::result::Result<pb::TunnelFrame, tonic::Status>> {
    let (mut reader, mut writer) = tokio::io::split(io);
    tokio::spawn(async move {
        if !first.is_empty() && writer.write_all(&first).await.is_err() {
            return;
        }
        while let Ok(Some(frame)) = inbound.message().await {
            if writer.write_all(&frame.data).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    async_stream::stream! {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => yield Ok(pb::TunnelFrame {
                    open: None,
                    data: Bytes::copy_from_slice(&buf[..n]),
                }),
            }
        }
    }
}
