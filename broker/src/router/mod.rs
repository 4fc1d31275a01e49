//! The router: sends a produce, fetch or offset lookup to the node that
//! leads the partition, so a gateway never asks "do I lead this?".
//!
//! A request with [`Route::Local`] is served by this node's replica
//! manager or refused (`NotLeader` naming the leader); one with
//! [`Route::Leader`] goes to this node's replica when it leads, else is
//! forwarded to the leader's gRPC listener. Only refusals that prove
//! nothing was done (this node, or the one asked, does not lead the
//! partition, or its high watermark is catching up) are retried, with the
//! leader's address refreshed from the metadata each time, for a few
//! seconds; any other failure goes back to the caller, which answers its
//! client in its protocol's terms.
//!
//! # Layout
//! This file: the [`Router`] and forwarding; `tail`: following a
//! partition ([`Tail`]); `tunnel`: client connections carried to the node
//! that runs a gateway.

mod tail;
mod tunnel;

pub use tail::{Tail, TailBatch, TailRead};
pub(crate) use tunnel::pump;
pub use tunnel::{TunnelAcceptor, Tunnels};

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fjord_proto::MAX_MESSAGE;
use fjord_proto::v1 as pb;
use fjord_proto::v1::fetch_service_client::FetchServiceClient;
use fjord_proto::v1::replica_service_client::ReplicaServiceClient;
use tonic::{Code, Status};

use crate::api::{
    Acks, FetchRequest, FetchResult, Leader, OffsetSpec, ProduceRequest, ProduceResult, Records,
    Route,
};
use crate::batch::build_batch;
use crate::murmur2::partition_for_key;
use crate::quorum::{Quorum, with_cluster_id};
use crate::replica::ReplicaManager;
use crate::{Error, Result};

/// How long a request to the leader waits for a partition to have one.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Time a forwarded request may take beyond its own wait.
const RPC_SLACK: Duration = Duration::from_secs(10);

/// The metadata key naming a refusal's kind on a gRPC status (set by the
/// broker's one error → status mapping, read back here).
pub(crate) const ERROR_KIND: &str = "fjord-error";

/// Sends requests to partitions' leaders; shared by the broker's parts.
pub(crate) struct Router {
    quorum: Arc<Quorum>,
    replicas: Arc<ReplicaManager>,
    round_robin: AtomicU32,
    tunnels: Tunnels,
}

impl Router {
    pub(crate) fn new(quorum: Arc<Quorum>, replicas: Arc<ReplicaManager>) -> Router {
        Router {
            tunnels: Tunnels::new(Arc::clone(&quorum), Arc::clone(&replicas)),
            quorum,
            replicas,
            round_robin: AtomicU32::new(0),
        }
    }

    pub(crate) fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// Who leads `topic`-`partition`: this node only once its replica has
    /// taken the leader role.
    pub(crate) fn leader_of(&self, topic: &str, partition: u32) -> Leader {
        if self.replicas.leader(topic, partition).is_ok() {
            return Leader::Here;
        }
        match self.quorum.leader_of(topic, partition) {
            Leader::Here => Leader::Unknown,
            other => other,
        }
    }

    /// Kafka's default partitioner: murmur2 of the key, else round-robin.
    pub(crate) fn pick_partition(&self, key: Option<&[u8]>, partitions: u32) -> u32 {
        match key {
            Some(key) => partition_for_key(key, partitions),
            None => self.round_robin.fetch_add(1, Ordering::Relaxed) % partitions.max(1),
        }
    }

    /// Appends `request`'s records where its route says.
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; `InvalidRequest` for no records;
    /// `InvalidBatch`; as [`ReplicaManager::append`] on the leader;
    /// `NotLeader` when no leader appeared within a few seconds (route
    /// `Leader`); `Cluster` when the leader could not be reached (the
    /// append may or may not have happened).
    pub(crate) async fn produce(&self, request: ProduceRequest) -> Result<ProduceResult> {
        let topic = request.topic.as_str();
        self.quorum.await_topic(topic).await;
        let partition = match request.partition {
            Some(p) => p,
            None => {
                let count = self.quorum.partition_count(topic)?;
                let key = match &request.records {
                    Records::New { records, .. } => records.first().and_then(|r| r.key.clone()),
                    Records::Batch(_) => None,
                };
                self.pick_partition(key.as_deref(), count)
            }
        };
        let batch = match request.records {
            Records::Batch(batch) => batch,
            Records::New {
                records,
                compression,
            } => build_batch(topic, partition, records, compression)?,
        };
        match request.route {
            Route::Local => {
                self.replicas
                    .append(topic, partition, batch, request.acks)
                    .await
            }
            Route::Leader => {
                let acks = request.acks;
                retry_moving(|| self.append_on_leader(topic, partition, &batch, acks)).await
            }
        }
    }

    async fn append_on_leader(
        &self,
        topic: &str,
        partition: u32,
        batch: &Bytes,
        acks: Acks,
    ) -> Result<ProduceResult> {
        match self
            .replicas
            .append(topic, partition, batch.clone(), acks)
            .await
        {
            Err(Error::NotLeader {
                leader: Some((_, addr)),
                ..
            }) => {
                self.forward_append(&addr, topic, partition, batch, acks)
                    .await
            }
            other => other,
        }
    }

    async fn forward_append(
        &self,
        addr: &str,
        topic: &str,
        partition: u32,
        batch: &Bytes,
        acks: Acks,
    ) -> Result<ProduceResult> {
        let mut client = ReplicaServiceClient::new(self.quorum.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let mut request = with_cluster_id(
            self.quorum.cluster_id(),
            pb::ForwardAppendRequest {
                topic: topic.to_string(),
                partition,
                batch: batch.clone(),
                acks: match acks {
                    Acks::None => pb::Acks::None,
                    Acks::Leader => pb::Acks::Leader,
                    Acks::All => pb::Acks::All,
                } as i32,
            },
        );
        request.set_timeout(self.quorum.config.produce_timeout + RPC_SLACK);
        let r = match client.append(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if status.code() == Code::Unavailable {
                    self.quorum.drop_channel(addr);
                }
                return Err(from_status(topic, partition, status));
            }
        };
        match pb::ErrorCode::try_from(r.error) {
            Ok(pb::ErrorCode::ErrorNone) => Ok(ProduceResult {
                partition,
                base_offset: r.base_offset,
                last_offset: r.last_offset,
                log_append_time_ms: r.log_append_time_ms,
                log_start_offset: r.log_start_offset,
            }),
            Ok(pb::ErrorCode::ErrorNotLeader) => Err(Error::NotLeader {
                topic: topic.to_string(),
                partition,
                leader: None,
            }),
            Ok(pb::ErrorCode::ErrorTimeout) => Err(Error::Timeout(r.error_message)),
            Ok(pb::ErrorCode::ErrorNotEnoughReplicas) => {
                let (isr, required) = replica_counts(&r.error_message);
                Err(Error::NotEnoughReplicas {
                    topic: topic.to_string(),
                    partition,
                    isr,
                    required,
                })
            }
            _ => Err(Error::Cluster(format!(
                "node {addr} refused the append to {topic}-{partition}: {}",
                r.error_message
            ))),
        }
    }

    /// Reads where the request's route says.
    ///
    /// # Errors
    /// As [`ReplicaManager::read`]; `Cluster` when the leader could not be
    /// reached.
    ///
    /// # Cancel safety
    /// Safe: a fetch only reads.
    pub(crate) async fn fetch(&self, request: &FetchRequest) -> Result<FetchResult> {
        self.quorum.await_topic(&request.topic).await;
        match request.route {
            Route::Local => self.replicas.read(request).await,
            Route::Leader => retry_moving(|| self.fetch_on_leader(request)).await,
        }
    }

    async fn fetch_on_leader(&self, request: &FetchRequest) -> Result<FetchResult> {
        let addr = match self.replicas.read(request).await {
            Err(Error::NotLeader {
                leader: Some((_, addr)),
                ..
            }) => addr,
            other => return other,
        };
        let mut client = FetchServiceClient::new(self.quorum.channel(&addr)?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let mut rpc = tonic::Request::new(pb::FetchRequest {
            topic: request.topic.clone(),
            partition: request.partition,
            offset: request.offset,
            max_bytes: u32::try_from(request.max_bytes).unwrap_or(u32::MAX),
            max_wait_ms: u32::try_from(request.max_wait.as_millis()).unwrap_or(u32::MAX),
            min_bytes: u32::try_from(request.min_bytes).unwrap_or(u32::MAX),
            decode: false,
        });
        rpc.set_timeout(request.max_wait + RPC_SLACK);
        match client.fetch(rpc).await {
            Ok(r) => {
                let r = r.into_inner();
                Ok(FetchResult {
                    records: r.records,
                    next_offset: r.next_offset,
                    high_watermark: r.high_watermark,
                    log_start_offset: r.log_start_offset,
                })
            }
            Err(status) => {
                if status.code() == Code::Unavailable {
                    self.quorum.drop_channel(&addr);
                }
                Err(from_status(&request.topic, request.partition, status))
            }
        }
    }

    /// `(offset, timestamp)` of `spec` on `topic`-`partition`, where
    /// `route` says (see [`ReplicaManager::list_offset`]).
    ///
    /// # Errors
    /// As [`ReplicaManager::list_offset`]; `Cluster` when the leader could
    /// not be reached.
    pub(crate) async fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
        route: Route,
    ) -> Result<Option<(i64, i64)>> {
        self.quorum.await_topic(topic).await;
        match route {
            Route::Local => self.replicas.list_offset(topic, partition, spec),
            Route::Leader => {
                retry_moving(|| self.list_offset_on_leader(topic, partition, spec)).await
            }
        }
    }

    async fn list_offset_on_leader(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<Option<(i64, i64)>> {
        let addr = match self.replicas.list_offset(topic, partition, spec) {
            Err(Error::NotLeader {
                leader: Some((_, addr)),
                ..
            }) => addr,
            other => return other,
        };
        let mut client = FetchServiceClient::new(self.quorum.channel(&addr)?);
        let (spec, timestamp_ms) = match spec {
            OffsetSpec::Earliest => (pb::OffsetSpec::Earliest, 0),
            OffsetSpec::Latest => (pb::OffsetSpec::Latest, 0),
            OffsetSpec::Timestamp(ts) => (pb::OffsetSpec::Timestamp, ts),
            OffsetSpec::LogEnd => (pb::OffsetSpec::LogEnd, 0),
        };
        let mut rpc = tonic::Request::new(pb::ListOffsetsRequest {
            topic: topic.to_string(),
            partition,
            spec: spec as i32,
            timestamp_ms,
        });
        rpc.set_timeout(RPC_SLACK);
        match client.list_offsets(rpc).await {
            Ok(r) => {
                let r = r.into_inner();
                Ok((r.offset >= 0).then_some((r.offset, r.timestamp_ms)))
            }
            Err(status) => {
                if status.code() == Code::Unavailable {
                    self.quorum.drop_channel(&addr);
                }
                Err(from_status(topic, partition, status))
            }
        }
    }
}

/// The in-sync replica count and the minimum named in a leader's
/// `NotEnoughReplicas` message ("... has 1 in-sync replicas, fewer than
/// min.insync.replicas=2"); 0 for what it does not say.
fn replica_counts(message: &str) -> (usize, usize) {
    let number = |s: Option<&str>| {
        s.and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let isr = number(message.split(" has ").nth(1));
    let required = number(message.split("min.insync.replicas=").nth(1));
    (isr, required)
}

/// Runs `op` again while the partition has no leader it can reach (a new
/// topic, a leader change), for a few seconds at most.
async fn retry_moving<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    let mut pause = Duration::from_millis(20);
    loop {
        match op().await {
            Err(Error::NotLeader { .. } | Error::LeaderNotReady { .. })
                if tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// True when a request failed before it left this node: no connection to
/// the other node could be made (refused, or the connect timed out).
fn never_sent(status: &Status) -> bool {
    if status.message().starts_with("tcp connect error") {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The chain of errors under `status`, as `; a; b` (empty if none).
fn causes(status: &Status) -> String {
    let mut out = String::new();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        out.push_str(&format!("; {e}"));
        source = e.source();
    }
    out
}

/// A forwarded request's failure in the broker's terms: the refusals a
/// caller acts on keep their kind, the rest say which node failed how.
pub(crate) fn from_status(topic: &str, partition: u32, status: Status) -> Error {
    let md = |key: &str| {
        status
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let kind = status
        .metadata()
        .get(ERROR_KIND)
        .and_then(|v| v.to_str().ok());
    match (status.code(), kind) {
        (Code::Unavailable, Some("not-leader")) => Error::NotLeader {
            topic: topic.to_string(),
            partition,
            leader: None,
        },
        // The leader's node could not be reached (it may be down, and the
        // metadata will name another): nothing was sent, so the request
        // may go again, to the leader named then.
        (Code::Unavailable | Code::Unknown, None) if never_sent(&status) => Error::NotLeader {
            topic: topic.to_string(),
            partition,
            leader: None,
        },
        (Code::Unavailable, Some("leader-not-ready")) => Error::LeaderNotReady {
            topic: topic.to_string(),
            partition,
        },
        (Code::OutOfRange, _) => Error::OffsetOutOfRange {
            topic: topic.to_string(),
            partition,
            offset: -1,
            earliest: md("fjord-earliest-offset").unwrap_or(-1),
            latest: md("fjord-latest-offset").unwrap_or(-1),
        },
        (Code::NotFound, _) => Error::UnknownTopic(topic.to_string()),
        _ => Error::Cluster(format!(
            "{topic}-{partition}: the leader answered {:?}: {}{}",
            status.code(),
            status.message(),
            causes(&status)
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_leader_that_cannot_be_connected_to_is_asked_again_other_failures_are_not() {
        // A port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_lazy();
        let status = FetchServiceClient::new(channel)
            .list_offsets(pb::ListOffsetsRequest::default())
            .await
            .unwrap_err();
        assert!(
            matches!(from_status("t", 0, status), Error::NotLeader { .. }),
            "refused connection: nothing was sent"
        );
        // Sent, and the connection broke: the outcome is unknown.
        let broken = Status::unavailable("connection reset");
        assert!(matches!(from_status("t", 0, broken), Error::Cluster(_)));
    }

    #[test]
    fn a_forwarded_not_enough_replicas_keeps_its_counts() {
        let e = Error::NotEnoughReplicas {
            topic: "q".into(),
            partition: 0,
            isr: 1,
            required: 2,
        };
        assert_eq!(replica_counts(&e.to_string()), (1, 2));
        assert_eq!(replica_counts("something else"), (0, 0));
    }
}
