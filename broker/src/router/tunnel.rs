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

use crate::api::Leader;
use crate::quorum::{Quorum, with_cluster_id};
use crate::replica::ReplicaManager;
use crate::{Error, Result};

/// Takes a tunnelled connection, or says why this node does not take one
/// now (its gateway is starting or stopping).
pub type TunnelAcceptor =
    Arc<dyn Fn(DuplexStream) -> std::result::Result<(), String> + Send + Sync>;

/// Bytes buffered between a tunnel's stream and its connection.
const BUFFER: usize = 256 << 10;

/// Largest data frame a tunnel sends.
const CHUNK: usize = 64 << 10;

/// How long opening a tunnel waits for the partition to have a leader that
/// takes it.
const OPEN_WAIT: Duration = Duration::from_secs(10);

/// The gateways that take tunnelled connections on this node, by
/// protocol, and the tunnels this node opens to others.
pub struct Tunnels {
    quorum: Arc<Quorum>,
    replicas: Arc<ReplicaManager>,
    acceptors: std::sync::Mutex<HashMap<String, TunnelAcceptor>>,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.acceptors().keys()).finish()
    }
}

impl Tunnels {
    pub(crate) fn new(quorum: Arc<Quorum>, replicas: Arc<ReplicaManager>) -> Tunnels {
        Tunnels {
            quorum,
            replicas,
            acceptors: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn acceptors(&self) -> std::sync::MutexGuard<'_, HashMap<String, TunnelAcceptor>> {
        self.acceptors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers (or with `None` removes) the gateway that takes tunnels of
    /// `protocol` on this node.
    pub fn set_acceptor(&self, protocol: &str, acceptor: Option<TunnelAcceptor>) {
        let mut acceptors = self.acceptors();
        match acceptor {
            Some(a) => acceptors.insert(protocol.to_string(), a),
            None => acceptors.remove(protocol),
        };
    }

    /// Opens a connection to the `protocol` gateway of the node that leads
    /// `topic`-`partition`: this node's own when it leads, else a tunnel.
    ///
    /// # Errors
    /// `NotLeader`/`LeaderNotReady` when no leader took it within a few
    /// seconds; `Cluster` when the leader could not be reached by then.
    pub async fn open(&self, protocol: &str, topic: &str, partition: u32) -> Result<DuplexStream> {
        let deadline = tokio::time::Instant::now() + OPEN_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            let leads = self.replicas.leader(topic, partition).is_ok();
            let outcome = match self.quorum.leader_of(topic, partition) {
                _ if leads => self.accept(&pb::TunnelOpen {
                    protocol: protocol.to_string(),
                    topic: topic.to_string(),
                    partition,
                }),
                Leader::Node(_, addr) => self.remote(&addr, protocol, topic, partition).await,
                Leader::Here | Leader::Unknown => Err(self.quorum.not_leader(topic, partition)),
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
    pub(crate) fn accept(&self, open: &pb::TunnelOpen) -> Result<DuplexStream> {
        self.replicas.leader(&open.topic, open.partition)?;
        let acceptor = self.acceptors().get(&open.protocol).cloned();
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

    async fn remote(
        &self,
        addr: &str,
        protocol: &str,
        topic: &str,
        partition: u32,
    ) -> Result<DuplexStream> {
        let cluster = &self.quorum;
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
        let request = with_cluster_id(cluster.cluster_id(), ReceiverStream::new(rx));
        let mut inbound = match client.tunnel(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if status.code() == Code::Unavailable && status.metadata().is_empty() {
                    cluster.drop_channel(addr);
                }
                return Err(super::from_status(topic, partition, status));
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
