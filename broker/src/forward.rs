//! Reads and writes for the gateways wherever a partition's leader is: on
//! this node, or forwarded to the leader's gRPC listener. A gateway runs on
//! every node and serves its clients from any partition of the cluster.
//!
//! Only refusals that prove nothing was appended (this node, or the one
//! asked, does not lead the partition) are retried, with the leader's
//! address refreshed from the metadata each time; any other failure goes
//! back to the gateway, which answers its client in the protocol's terms.

use std::time::Duration;

use bytes::Bytes;
use fjord_proto::v1 as pb;
use fjord_proto::v1::fetch_service_client::FetchServiceClient;
use fjord_proto::v1::replica_service_client::ReplicaServiceClient;
use fjord_storage::Compression;
use tonic::{Code, Status};

use crate::broker::Broker;
use crate::cluster::with_cluster_id;
use crate::data::build_batch;
use crate::grpc::ERROR_KIND;
use crate::{Acks, Error, FetchRequest, FetchResult, NewRecord, OffsetSpec, ProduceResult, Result};

/// How long a gateway's request waits for a partition to have a leader.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Larger than any fetch (1 MiB) or append a gateway makes.
const MAX_MESSAGE: usize = 64 << 20;

/// Time a forwarded request may take beyond its own wait.
const RPC_SLACK: Duration = Duration::from_secs(10);

impl Broker {
    /// Appends `records` to `topic`-`partition` (internal topics included)
    /// on its leader, here or on another node.
    ///
    /// # Errors
    /// As [`Broker::produce`]; `NotLeader` when no leader appeared within a
    /// few seconds; `Cluster` when the leader could not be reached (the
    /// append may or may not have happened).
    pub async fn append_anywhere(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<NewRecord>,
        acks: Acks,
    ) -> Result<ProduceResult> {
        let batch = batch_of(topic, partition, records)?;
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            let outcome = match self
                .append_here(topic, partition, batch.clone(), acks)
                .await
            {
                Err(Error::NotLeader {
                    leader: Some((_, addr)),
                    ..
                }) => {
                    self.forward_append(&addr, topic, partition, &batch, acks)
                        .await
                }
                other => other,
            };
            match outcome {
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

    /// Appends `records` to `topic`-`partition` only if this node leads it:
    /// a writer fenced by leadership (a node that lost it cannot write).
    ///
    /// # Errors
    /// `NotLeader` on any other node; as [`Broker::produce`].
    pub async fn append_if_leader(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<NewRecord>,
        acks: Acks,
    ) -> Result<ProduceResult> {
        let batch = batch_of(topic, partition, records)?;
        self.append_here(topic, partition, batch, acks).await
    }

    /// Appends a batch this node leads (a forwarded one too).
    pub(crate) async fn append_here(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<ProduceResult> {
        if !topic.starts_with("__") {
            return self.produce(topic, partition, batch, acks).await;
        }
        self.check_open()?;
        self.await_topic(topic).await;
        let p = self.leader_partition(topic, partition)?;
        self.append_to(&p, topic, batch, acks).await
    }

    async fn forward_append(
        &self,
        addr: &str,
        topic: &str,
        partition: u32,
        batch: &Bytes,
        acks: Acks,
    ) -> Result<ProduceResult> {
        let cluster = self.cluster();
        let channel = cluster.channel(addr)?;
        let mut client = ReplicaServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let mut request = with_cluster_id(
            cluster.node.cluster_id(),
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
        request.set_timeout(cluster.config.produce_timeout + RPC_SLACK);
        let r = match client.append(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if status.code() == Code::Unavailable {
                    cluster.drop_channel(addr);
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
            _ => Err(Error::Cluster(format!(
                "node {addr} refused the append to {topic}-{partition}: {}",
                r.error_message
            ))),
        }
    }

    /// Reads from `topic`-`partition` on its leader, here or on another
    /// node; as [`Broker::fetch`].
    ///
    /// # Errors
    /// As [`Broker::fetch`]; `Cluster` when the leader could not be reached.
    pub async fn fetch_anywhere(&self, request: FetchRequest) -> Result<FetchResult> {
        retry_moving(|| self.fetch_once(&request)).await
    }

    async fn fetch_once(&self, request: &FetchRequest) -> Result<FetchResult> {
        let request = request.clone();
        let addr = match self.fetch(request.clone()).await {
            Err(Error::NotLeader {
                leader: Some((_, addr)),
                ..
            }) => addr,
            other => return other,
        };
        let cluster = self.cluster();
        let mut client = FetchServiceClient::new(cluster.channel(&addr)?)
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
                    cluster.drop_channel(&addr);
                }
                Err(from_status(&request.topic, request.partition, status))
            }
        }
    }

    /// As [`Broker::list_offset`], on the partition's leader wherever it is.
    ///
    /// # Errors
    /// As [`Broker::list_offset`]; `Cluster` when the leader could not be
    /// reached.
    pub async fn list_offset_anywhere(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<Option<(i64, i64)>> {
        retry_moving(|| self.list_offset_once(topic, partition, spec)).await
    }

    async fn list_offset_once(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<Option<(i64, i64)>> {
        let addr = match self.list_offset(topic, partition, spec) {
            Err(Error::NotLeader {
                leader: Some((_, addr)),
                ..
            }) => addr,
            other => return other,
        };
        let cluster = self.cluster();
        let mut client = FetchServiceClient::new(cluster.channel(&addr)?);
        let (spec, timestamp_ms) = match spec {
            OffsetSpec::Earliest => (pb::OffsetSpec::Earliest, 0),
            OffsetSpec::Latest => (pb::OffsetSpec::Latest, 0),
            OffsetSpec::Timestamp(ts) => (pb::OffsetSpec::Timestamp, ts),
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
                    cluster.drop_channel(&addr);
                }
                Err(from_status(topic, partition, status))
            }
        }
    }
}

impl Broker {
    /// Every record of `topic`-`partition` from `from` up to `to` (or its
    /// end as of each read), wherever its leader is. Retention or
    /// compaction having moved the start, it goes on from there.
    ///
    /// # Errors
    /// As [`Broker::fetch_anywhere`]; `InvalidRequest` for a batch that
    /// does not decode.
    pub async fn read_range_anywhere(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
        to: Option<i64>,
    ) -> Result<Vec<fjord_storage::Record>> {
        let mut out = Vec::new();
        let mut offset = from;
        while to.is_none_or(|to| offset < to) {
            let r = self
                .fetch_anywhere(FetchRequest {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    max_bytes: 1 << 20,
                    min_bytes: 0,
                    max_wait: Duration::ZERO,
                })
                .await;
            let r = match r {
                Ok(r) => r,
                Err(Error::OffsetOutOfRange { earliest, .. }) if earliest > offset => {
                    offset = earliest;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if r.records.is_empty() || r.next_offset <= offset {
                break;
            }
            let records = crate::decode_records(r.records, offset)?;
            out.extend(
                records
                    .into_iter()
                    .filter(|rec| to.is_none_or(|to| rec.offset < to)),
            );
            offset = r.next_offset;
        }
        Ok(out)
    }
}

/// One uncompressed batch of `records` for `topic`-`partition`.
fn batch_of(topic: &str, partition: u32, records: Vec<NewRecord>) -> Result<Bytes> {
    if records.is_empty() {
        return Err(Error::InvalidRequest("no records to produce".into()));
    }
    build_batch(records, Compression::None).map_err(|source| Error::InvalidBatch {
        topic: topic.to_string(),
        partition,
        source,
    })
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
            "{topic}-{partition}: the leader answered {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}
