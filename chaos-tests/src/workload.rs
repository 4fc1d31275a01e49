//! The workload: producers writing unique values with `acks=all`, and a
//! consumer per partition reading everything, all recording what they saw.
//!
//! Clients follow partition leaders: they ask any node for the topic's
//! metadata and send to the leader it names, and ask again after any
//! failure (a node restarting, a leader moving). Producers are idempotent
//! and retry a failed send with the same sequence until it is acknowledged;
//! only the send in flight when the run stops is recorded as indeterminate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fjord_proto::v1 as pb;
use fjord_proto::v1::fetch_service_client::FetchServiceClient;
use fjord_proto::v1::produce_service_client::ProduceServiceClient;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use fjord_storage::{BatchBuilder, Compression, Record};
use tonic::transport::{Channel, Endpoint};

use crate::history::History;
use crate::stop::Stop;

/// Largest response accepted (a fetch carries batches and decoded records).
use fjord_proto::MAX_MESSAGE;

/// The nodes' current gRPC addresses, updated by the nemesis on restarts.
pub type Address = Arc<Mutex<Vec<String>>>;

/// A channel to the node at `addr`, or `None` when it does not answer.
pub(crate) async fn connect_to(addr: &str) -> Option<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .ok()
}

/// A channel to the leader of `topic`-`partition`, as any reachable node
/// describes it (on a single node, the node itself).
pub async fn leader(address: &Address, topic: &str, partition: u32) -> Option<Channel> {
    let nodes = address.lock().ok()?.clone();
    let start = rand::random_range(0..nodes.len().max(1));
    for i in 0..nodes.len() {
        let addr = &nodes[(start + i) % nodes.len()];
        let Some(channel) = connect_to(addr).await else {
            continue;
        };
        let described = TopicServiceClient::new(channel.clone())
            .describe_topic(pb::DescribeTopicRequest {
                name: topic.to_string(),
                local_only: false,
            })
            .await;
        let Ok(described) = described else { continue };
        let leader = described
            .into_inner()
            .topic
            .and_then(|t| t.partitions.into_iter().find(|p| p.partition == partition))
            .map(|p| p.leader_address)
            .unwrap_or_default();
        if leader.is_empty() {
            // No leader right now (an election): ask again later.
            return None;
        }
        if leader == *addr {
            return Some(channel);
        }
        return connect_to(&leader).await;
    }
    None
}

/// Produce errors that say the batch was not stored, or might be: retry it.
fn retriable(error: i32) -> bool {
    [
        pb::ErrorCode::ErrorNotLeader,
        pb::ErrorCode::ErrorNotEnoughReplicas,
        pb::ErrorCode::ErrorTimeout,
    ]
    .iter()
    .any(|c| *c as i32 == error)
}

/// Produces `p{id}-{n}` to partition `n % partitions` until stopped, as
/// an idempotent producer: a send that fails is retried with the same
/// sequence until it is acknowledged, so the log must hold it exactly once.
pub async fn producer(
    id: usize,
    partitions: u32,
    topic: String,
    address: Address,
    history: Arc<Mutex<History>>,
    stop: Stop,
) {
    let mut n = 0u64;
    let mut clients: Vec<Option<ProduceServiceClient<Channel>>> = vec![None; partitions as usize];
    let mut producer_id: Option<i64> = None;
    let mut sequences = vec![0i32; partitions as usize];
    // The batch being sent (and retried): value, partition, bytes.
    let mut pending: Option<(String, u32, Bytes)> = None;
    while !stop.stopped() {
        let next = pending
            .as_ref()
            .map_or((n % u64::from(partitions)) as u32, |p| p.1);
        let Some(c) = clients[next as usize].as_mut() else {
            clients[next as usize] = leader(&address, &topic, next)
                .await
                .map(ProduceServiceClient::new);
            if clients[next as usize].is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        let pid = match producer_id {
            Some(pid) => pid,
            None => match c.init_producer_id(pb::InitProducerIdRequest {}).await {
                Ok(r) => *producer_id.insert(r.into_inner().producer_id),
                Err(_) => {
                    clients[next as usize] = None;
                    continue;
                }
            },
        };
        let (value, partition, bytes) = match pending.clone() {
            Some(p) => p,
            None => {
                let value = format!("p{id}-{n}");
                let partition = (n % u64::from(partitions)) as u32;
                n += 1;
                let sequence = sequences[partition as usize];
                let built = BatchBuilder::new(Compression::None)
                    .push(Record::new(None, Some(Bytes::from(value.clone())), 0))
                    .producer(pid, 0, sequence)
                    .build();
                let Ok(bytes) = built else { return };
                let p = (value, partition, bytes);
                pending = Some(p.clone());
                p
            }
        };
        let request = pb::ProduceRequest {
            topic: topic.clone(),
            acks: pb::Acks::All as i32,
            batches: vec![pb::PartitionBatch {
                partition,
                batch: bytes,
            }],
            ..Default::default()
        };
        let outcome = c.produce(request).await;
        let backoff = {
            let Ok(mut h) = history.lock() else { return };
            match outcome {
                Ok(r) => match r.into_inner().results.first() {
                    Some(res) if res.error == pb::ErrorCode::ErrorNone as i32 => {
                        h.acked.insert(value, (partition, res.base_offset));
                        sequences[partition as usize] += 1;
                        pending = None;
                        false
                    }
                    // Not the leader (any more), too few in-sync replicas, or
                    // no confirmation in time: the same batch goes again, to
                    // the leader the metadata names then.
                    Some(res) if retriable(res.error) => {
                        h.retries += 1;
                        clients[partition as usize] = None;
                        true
                    }
                    // Refused outright (not a lost connection): start afresh
                    // with a new producer id.
                    _ => {
                        h.failed.push(value);
                        pending = None;
                        producer_id = None;
                        sequences.iter_mut().for_each(|s| *s = 0);
                        false
                    }
                },
                // Unknown whether it landed: retry the same batch.
                Err(_) => {
                    h.retries += 1;
                    clients[partition as usize] = None;
                    true
                }
            }
        };
        if backoff {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let (Some((value, _, _)), Ok(mut h)) = (pending, history.lock()) {
        h.failed.push(value);
    }
}

/// Reads one partition from offset 0 until stopped, recording every record.
pub async fn consumer(
    partition: u32,
    topic: String,
    address: Address,
    history: Arc<Mutex<History>>,
    stop: Stop,
) {
    let mut offset = 0i64;
    let mut seen = Vec::new();
    let mut client: Option<FetchServiceClient<Channel>> = None;
    while !stop.stopped() {
        let Some(c) = client.as_mut() else {
            client = leader(&address, &topic, partition)
                .await
                .map(|c| FetchServiceClient::new(c).max_decoding_message_size(MAX_MESSAGE));
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        let request = pb::FetchRequest {
            topic: topic.clone(),
            partition,
            offset,
            max_bytes: 1 << 20,
            max_wait_ms: 200,
            min_bytes: 1,
            decode: true,
        };
        match c.fetch(request).await {
            Ok(r) => {
                let r = r.into_inner();
                for record in r.decoded {
                    let value =
                        String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                            .into_owned();
                    seen.push((record.offset, value));
                }
                offset = offset.max(r.next_offset);
            }
            Err(_) => {
                client = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    if let Ok(mut h) = history.lock() {
        h.reads.push((partition, seen));
    }
}

/// Reads every partition from its start to its high watermark.
///
/// # Errors
/// The node cannot be reached or a read fails.
pub async fn read_final(
    partitions: u32,
    topic: &str,
    address: &Address,
    history: &Arc<Mutex<History>>,
) -> anyhow::Result<()> {
    for partition in 0..partitions {
        let log = read_settled(partition, topic, address).await?;
        history
            .lock()
            .map_err(|_| anyhow::anyhow!("history lock poisoned"))?
            .final_log
            .insert(partition, log);
    }
    Ok(())
}

/// The number of partitions of `topic`, as any reachable node describes it.
pub async fn partition_count(address: &Address, topic: &str) -> Option<u32> {
    let nodes = address.lock().ok()?.clone();
    for addr in &nodes {
        let Some(channel) = connect_to(addr).await else {
            continue;
        };
        if let Ok(d) = TopicServiceClient::new(channel)
            .describe_topic(pb::DescribeTopicRequest {
                name: topic.to_string(),
                local_only: false,
            })
            .await
        {
            return d
                .into_inner()
                .topic
                .and_then(|t| u32::try_from(t.partitions.len()).ok());
        }
    }
    None
}

/// Everything below the high watermark of one partition, once it can be
/// read: a leader elected just before the end may still be catching its
/// high watermark up, or leadership may move: ask again for a while.
///
/// # Errors
/// The partition cannot be read for 30 s.
pub(crate) async fn read_settled(
    partition: u32,
    topic: &str,
    address: &Address,
) -> anyhow::Result<std::collections::BTreeMap<i64, String>> {
    let mut attempt = 0;
    loop {
        match read_partition(partition, topic, address).await {
            Ok(log) => return Ok(log),
            Err(e) if attempt >= 300 => {
                return Err(e.context(format!("final read of {topic}-{partition}")));
            }
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Everything below the high watermark of one partition, from its leader.
async fn read_partition(
    partition: u32,
    topic: &str,
    address: &Address,
) -> anyhow::Result<std::collections::BTreeMap<i64, String>> {
    let channel = leader(address, topic, partition)
        .await
        .ok_or_else(|| anyhow::anyhow!("no leader of partition {partition}"))?;
    let mut fetch = FetchServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let mut offset = fetch
        .list_offsets(pb::ListOffsetsRequest {
            topic: topic.into(),
            partition,
            spec: pb::OffsetSpec::Earliest as i32,
            timestamp_ms: 0,
        })
        .await?
        .into_inner()
        .offset;
    let mut log = std::collections::BTreeMap::new();
    loop {
        let r = fetch
            .fetch(pb::FetchRequest {
                topic: topic.into(),
                partition,
                offset,
                max_bytes: 1 << 20,
                decode: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        if r.decoded.is_empty() {
            return Ok(log);
        }
        for record in r.decoded {
            log.insert(
                record.offset,
                String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned(),
            );
        }
        offset = r.next_offset;
    }
}
