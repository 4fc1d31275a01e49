//! The workload: producers writing unique values with `acks=all`, and a
//! consumer per partition reading everything, all recording what they saw.
//!
//! Clients follow the node across restarts (its address changes).
//! Producers are idempotent and retry a failed send with the same sequence
//! until it is acknowledged; only the send in flight when the run stops is
//! recorded as indeterminate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fjord_proto::v1 as pb;
use fjord_proto::v1::fetch_service_client::FetchServiceClient;
use fjord_proto::v1::produce_service_client::ProduceServiceClient;
use fjord_storage::{BatchBuilder, Compression, Record};
use tonic::transport::{Channel, Endpoint};

use crate::history::History;
use crate::stop::Stop;

/// Largest response accepted (a fetch carries batches and decoded records).
const MAX_MESSAGE: usize = 64 << 20;

/// The node's current gRPC address, updated by the nemesis on restarts.
pub type Address = Arc<Mutex<String>>;

/// Connects to wherever the node is now.
async fn connect(address: &Address) -> Option<Channel> {
    let addr = address.lock().ok()?.clone();
    Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()
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
    let mut client: Option<ProduceServiceClient<Channel>> = None;
    let mut producer_id: Option<i64> = None;
    let mut sequences = vec![0i32; partitions as usize];
    // The batch being sent (and retried): value, partition, bytes.
    let mut pending: Option<(String, u32, Bytes)> = None;
    while !stop.stopped() {
        let Some(c) = client.as_mut() else {
            client = connect(&address).await.map(ProduceServiceClient::new);
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        };
        let pid = match producer_id {
            Some(pid) => pid,
            None => match c.init_producer_id(pb::InitProducerIdRequest {}).await {
                Ok(r) => *producer_id.insert(r.into_inner().producer_id),
                Err(_) => {
                    client = None;
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
        let Ok(mut h) = history.lock() else { return };
        match outcome {
            Ok(r) => match r.into_inner().results.first() {
                Some(res) if res.error == pb::ErrorCode::ErrorNone as i32 => {
                    h.acked.insert(value, (partition, res.base_offset));
                    sequences[partition as usize] += 1;
                    pending = None;
                }
                // Refused outright (not a lost connection): start afresh
                // with a new producer id.
                _ => {
                    h.failed.push(value);
                    pending = None;
                    producer_id = None;
                    sequences.iter_mut().for_each(|s| *s = 0);
                }
            },
            // Unknown whether it landed: retry the same batch.
            Err(_) => {
                h.retries += 1;
                client = None;
            }
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
            client = connect(&address)
                .await
                .map(|c| FetchServiceClient::new(c).max_decoding_message_size(MAX_MESSAGE));
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
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
    let channel = connect(address)
        .await
        .ok_or_else(|| anyhow::anyhow!("cannot reach the node for the final read"))?;
    let mut fetch = FetchServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    for partition in 0..partitions {
        let earliest = fetch
            .list_offsets(pb::ListOffsetsRequest {
                topic: topic.into(),
                partition,
                spec: pb::OffsetSpec::Earliest as i32,
                timestamp_ms: 0,
            })
            .await?
            .into_inner()
            .offset;
        let mut offset = earliest;
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
                break;
            }
            let mut h = history
                .lock()
                .map_err(|_| anyhow::anyhow!("history lock poisoned"))?;
            let log = h.final_log.entry(partition).or_default();
            for record in r.decoded {
                log.insert(
                    record.offset,
                    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                        .into_owned(),
                );
            }
            offset = r.next_offset;
        }
    }
    Ok(())
}
