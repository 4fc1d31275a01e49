//! The leader's side of a replica fetch: a follower's request checked
//! against this node's epoch and log, its progress recorded (which may
//! move the high watermark or the ISR), and the batches after its position
//! returned as they are stored.

use std::time::Duration;

use fjord_proto::v1 as pb;

use super::ReplicaManager;
use super::partition::ReplicaFetch;
use crate::Error;

fn replica_error(error: pb::ReplicaError, message: String) -> pb::ReplicaFetchResponse {
    pb::ReplicaFetchResponse {
        error: error as i32,
        message,
        ..Default::default()
    }
}

impl ReplicaManager {
    /// The leader's answer to one follower fetch.
    pub(crate) async fn answer_replica_fetch(
        &self,
        r: pb::ReplicaFetchRequest,
    ) -> pb::ReplicaFetchResponse {
        let partition = match self.replica(&r.topic, r.partition) {
            Ok(p) => p,
            Err(e) => return replica_error(pb::ReplicaError::ReplicaNotLeader, e.to_string()),
        };
        let max_wait = Duration::from_millis(u64::from(r.max_wait_ms.min(5_000)));
        let max_bytes = (r.max_bytes as usize).clamp(1, 16 << 20);
        let answer = match partition.replica_fetched(
            r.replica_id,
            r.leader_epoch,
            r.fetch_offset,
            r.last_fetched_epoch,
        ) {
            Ok(actions) => {
                // Before the read waits: the follower's progress may commit
                // records whose producers are waiting.
                self.carry_out(&r.topic, &partition, r.leader_epoch, actions);
                partition
                    .replica_read(r.leader_epoch, r.fetch_offset, max_bytes, max_wait)
                    .await
            }
            Err(answer) => Ok(answer),
        };
        match answer {
            Ok(ReplicaFetch::Records {
                data,
                high_watermark,
                log_start_offset,
            }) => {
                self.metrics.record_replica_fetch(data.len() as u64);
                pb::ReplicaFetchResponse {
                    error: pb::ReplicaError::ReplicaNone as i32,
                    message: String::new(),
                    records: data,
                    high_watermark,
                    log_start_offset,
                    diverging_end_offset: -1,
                }
            }
            Ok(ReplicaFetch::Diverging { end_offset }) => pb::ReplicaFetchResponse {
                diverging_end_offset: end_offset,
                ..replica_error(
                    pb::ReplicaError::ReplicaDiverging,
                    format!("truncate to {end_offset}"),
                )
            },
            Ok(ReplicaFetch::WrongEpoch { ours }) => replica_error(
                pb::ReplicaError::ReplicaFencedEpoch,
                match ours {
                    Some(e) => format!(
                        "{}-{} is at leader epoch {e}, the follower asked for {}",
                        r.topic, r.partition, r.leader_epoch
                    ),
                    None => format!("this node does not lead {}-{}", r.topic, r.partition),
                },
            ),
            Err(e) => replica_error(
                pb::ReplicaError::ReplicaNotLeader,
                Error::from_storage(&r.topic, r.partition, e).to_string(),
            ),
        }
    }
}
