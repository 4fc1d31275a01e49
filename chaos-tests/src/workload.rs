//! The workload: producers writing unique values with `acks=all`, and a
//! consumer per partition reading everything, all recording what they saw.
//!
//! Clients follow the node across restarts (its address changes) and never
//! retry a produce: a failed attempt is recorded as indeterminate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_proto::v1 as pb;
use fjord_proto::v1::fetch_service_client::FetchServiceClient;
use fjord_proto::v1::produce_service_client::ProduceServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::history::History;
use crate::stop::Stop;

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

/// Produces `p{id}-{n}` to partition `n % partitions` until stopped.
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
    while !stop.stopped() {
        let Some(c) = client.as_mut() else {
            client = connect(&address).await.map(ProduceServiceClient::new);
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        };
        let value = format!("p{id}-{n}");
        let partition = (n % u64::from(partitions)) as u32;
        n += 1;
        let request = pb::ProduceRequest {
            topic: topic.clone(),
            acks: pb::Acks::All as i32,
            records: vec![pb::ProduceRecord {
                partition: Some(partition),
                value: Some(value.clone().into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let outcome = c.produce(request).await;
        let Ok(mut h) = history.lock() else { return };
        match outcome {
            Ok(r) => match r.into_inner().results.first() {
                Some(res) if res.error == pb::ErrorCode::ErrorNone as i32 => {
                    h.acked.insert(value, (partition, res.base_offset));
                }
                _ => h.failed.push(value),
            },
            Err(_) => {
                h.failed.push(value);
                client = None;
            }
        }
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
            client = connect(&address).await.map(FetchServiceClient::new);
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
    let mut fetch = FetchServiceClient::new(channel);
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
                    max_bytes: 4 << 20,
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
