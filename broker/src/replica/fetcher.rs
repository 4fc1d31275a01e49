//! A follower's fetcher: one task per followed partition, pulling the
//! leader's batches over a `ReplicaService.Fetch` stream and appending them
//! byte for byte.
//!
//! Each request names the follower's log end (everything below it is
//! durable here, per the topic's flush policy) and the epoch of its last
//! batch; the leader answers with the batches after it and its high
//! watermark, or with the offset to truncate to when the logs diverge. The
//! task stops when the partition's role changes (its token is cancelled).

use std::sync::Arc;
use std::time::Duration;

use fjord_proto::v1 as pb;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::ReplicaManager;
use super::fetch_stream::FetchStream;
use super::partition::Partition;
use crate::quorum::Quorum;

/// How long the leader may hold a fetch that finds nothing new.
const MAX_WAIT: Duration = Duration::from_millis(500);
/// Largest batch run per fetch.
const MAX_BYTES: u32 = 8 << 20;

impl ReplicaManager {
    /// Follows `leader` for `partition` at `epoch` until `stop` (or the
    /// node's shutdown).
    pub(crate) fn spawn_fetcher(
        &self,
        topic: String,
        partition: Arc<Partition>,
        epoch: i32,
        leader: u64,
        stop: CancellationToken,
    ) {
        let quorum = Arc::clone(&self.quorum);
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = shutdown.cancelled() => {}
                _ = fetch_loop(&quorum, &topic, &partition, epoch, leader) => {}
            }
            debug!(topic = %topic, partition = partition.id, epoch, "fetcher stopped");
        });
    }
}

/// Runs until cancelled (it never returns on its own).
async fn fetch_loop(
    cluster: &Quorum,
    topic: &str,
    partition: &Arc<Partition>,
    epoch: i32,
    leader: u64,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(addr) = cluster.broker_addr(leader) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        match fetch_session(cluster, &addr, topic, partition, epoch).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => {
                debug!(topic = %topic, partition = partition.id, leader, "replica fetch: {e}");
                cluster.drop_channel(&addr);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// One stream to the leader; returns when the leader refuses us (our
/// metadata or its is stale) or the stream breaks.
async fn fetch_session(
    cluster: &Quorum,
    addr: &str,
    topic: &str,
    partition: &Arc<Partition>,
    epoch: i32,
) -> Result<(), String> {
    let channel = cluster.channel(addr).map_err(|e| e.to_string())?;
    let request_for = |partition: &Partition| {
        let (fetch_offset, last_fetched_epoch) = partition.follower_position();
        pb::ReplicaFetchRequest {
            topic: topic.to_string(),
            partition: partition.id,
            replica_id: cluster.id,
            leader_epoch: epoch,
            fetch_offset,
            last_fetched_epoch,
            max_bytes: MAX_BYTES,
            max_wait_ms: MAX_WAIT.as_millis() as u32,
        }
    };
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        FetchStream::open(channel, &cluster.cluster_id, &request_for(partition)),
    )
    .await
    .map_err(|_| "the leader did not answer".to_string())??;
    loop {
        let response = tokio::time::timeout(MAX_WAIT + Duration::from_secs(5), stream.message())
            .await
            .map_err(|_| "the leader stopped answering".to_string())??;
        match pb::ReplicaError::try_from(response.error) {
            Ok(pb::ReplicaError::ReplicaNone) => {
                if !response.records.is_empty() {
                    let bytes = response.records.len() as u64;
                    let end = follower_append(topic, partition, response.records)?;
                    debug!(topic, partition = partition.id, end, "replicated");
                    throttle(cluster, topic, partition.id, bytes).await;
                }
                partition.follow_hw(response.high_watermark);
            }
            Ok(pb::ReplicaError::ReplicaDiverging) => {
                let offset = response.diverging_end_offset;
                info!(
                    topic,
                    partition = partition.id,
                    offset,
                    "truncating a diverged tail"
                );
                // Truncation rewrites the last segment; the fetcher has
                // nothing else to do until it is done.
                partition.truncate_to(offset).map_err(|e| e.to_string())?;
            }
            _ => {
                // The leader is not (yet) at our epoch: wait for the
                // metadata to settle, then try again.
                return Err(response.message);
            }
        }
        stream.send(&request_for(partition)).await?;
    }
}

/// Slows a replica that is catching up (outside the ISR) to the configured
/// rate, so moving partitions does not starve clients.
async fn throttle(cluster: &Quorum, topic: &str, partition: u32, bytes: u64) {
    let Some(rate) = cluster.config.catch_up_throttle.filter(|r| *r > 0) else {
        return;
    };
    let in_sync = cluster.read(|s| {
        s.topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
            .is_some_and(|p| p.isr.contains(&cluster.id))
    });
    if !in_sync {
        tokio::time::sleep(Duration::from_secs_f64(bytes as f64 / rate as f64)).await;
    }
}

/// Appends the leader's batches as they are; returns the new log end.
fn follower_append(
    topic: &str,
    partition: &Arc<Partition>,
    records: bytes::Bytes,
) -> Result<i64, String> {
    if let Err(e) = partition.append_replicated(records) {
        warn!(
            topic,
            partition = partition.id,
            "appending replicated batches failed: {e}"
        );
        return Err(e.to_string());
    }
    // No fsync here: the next fetch (which tells the leader how far this
    // copy got) goes out at once, and followers fsync on a short timer (see
    // `ReplicaManager::run_maintenance`). The leader fsyncs its own copy
    // before it counts it, so an acknowledged write is on the leader's disk
    // and in every in-sync replica's log.
    Ok(partition.follower_position().0)
}
