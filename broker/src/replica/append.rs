//! The leader's side of a produce: checking a batch, appending it, and
//! waiting as its `acks` ask.

use std::sync::Arc;

use bytes::Bytes;
use fjord_storage::RecordBatch;

use super::ReplicaManager;
use super::partition::{Partition, Refusal};
use crate::api::{Acks, ProduceResult};
use crate::metrics::ProduceFailure;
use crate::{Error, Result};

impl ReplicaManager {
    /// Fully validates a batch for `topic-partition` without appending it
    /// (length, magic, CRC, codec, records, the topic's size limit).
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; `InvalidBatch`.
    pub(crate) fn validate_batch(&self, topic: &str, partition: u32, batch: &Bytes) -> Result<()> {
        let max = match self.replica(topic, partition) {
            Ok(p) => p.read_log().config().max_batch_bytes,
            // Not hosted here: the leader checks the size.
            Err(Error::NotLeader { .. }) => usize::MAX,
            Err(e) => return Err(e),
        };
        let invalid = |source| Error::InvalidBatch {
            topic: topic.to_string(),
            partition,
            source,
        };
        if batch.len() > max {
            return Err(invalid(fjord_storage::Error::BatchTooLarge {
                size: batch.len(),
                max,
            }));
        }
        let parsed = RecordBatch::parse(batch.clone()).map_err(invalid)?;
        if parsed.bytes.len() != batch.len() {
            return Err(invalid(fjord_storage::Error::CorruptBatch(format!(
                "{} bytes after the batch",
                batch.len() - parsed.bytes.len()
            ))));
        }
        Ok(())
    }

    /// Appends one batch to a partition this node leads and waits as
    /// `acks` asks: `None` not at all, `Leader` for the local flush, `All`
    /// for the high watermark to pass it.
    ///
    /// # Errors
    /// `NotLeader` (naming the leader) on any other node, or when this
    /// node is cut off from the controller and `acks` is not `All`;
    /// `NotEnoughReplicas`; `Timeout` (the write may still commit);
    /// `InvalidBatch`, `Sequence`; `Storage` (e.g. disk full: nothing
    /// partial is visible, and later appends work once space frees).
    pub(crate) async fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<ProduceResult> {
        let result = match self.leader(topic, partition) {
            Ok(p) => self.append_to(&p, topic, batch, acks).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            let why = match e {
                Error::InvalidBatch { .. } => ProduceFailure::InvalidBatch,
                Error::UnknownTopic(_) | Error::UnknownPartition { .. } => {
                    ProduceFailure::UnknownTopic
                }
                Error::Storage { .. } => ProduceFailure::Storage,
                _ => ProduceFailure::Other,
            };
            self.metrics.record_produce_error(why);
        }
        result
    }

    async fn append_to(
        &self,
        p: &Arc<Partition>,
        topic: &str,
        batch: Bytes,
        acks: Acks,
    ) -> Result<ProduceResult> {
        if p.deleted.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::UnknownTopic(topic.to_string()));
        }
        // Cut off from the controller, this node may be a deposed leader:
        // only `acks=all` writes, which its in-sync followers must confirm,
        // can still be acknowledged safely.
        if acks != Acks::All && self.quorum.self_fenced() {
            return Err(Error::NotLeader {
                topic: topic.to_string(),
                partition: p.id,
                leader: None,
            });
        }
        let len = batch.len() as u64;
        let (info, epoch, actions) = p
            .append_as_leader(batch, acks, &self.metrics)
            .await
            .map_err(|r| self.refused(topic, p.id, r))?;
        self.carry_out(topic, p, epoch, actions);
        if acks == Acks::All {
            let timeout = self.quorum.config.produce_timeout;
            p.await_committed(info.last_offset, epoch, timeout)
                .await
                .map_err(|r| self.refused(topic, p.id, r))?;
        }
        self.metrics
            .record_produce((info.last_offset - info.base_offset + 1) as u64, len);
        let log_start_offset = p.read_log().log_start_offset();
        if acks == Acks::None {
            return Ok(ProduceResult {
                partition: p.id,
                base_offset: -1,
                last_offset: -1,
                log_append_time_ms: -1,
                log_start_offset,
            });
        }
        Ok(ProduceResult {
            partition: p.id,
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset,
        })
    }

    /// A refused append in the broker's terms.
    fn refused(&self, topic: &str, partition: u32, refusal: Refusal) -> Error {
        match refusal {
            Refusal::NotLeader => self.quorum.not_leader(topic, partition),
            Refusal::NotEnoughReplicas { isr, required } => Error::NotEnoughReplicas {
                topic: topic.to_string(),
                partition,
                isr,
                required,
            },
            Refusal::Timeout => Error::Timeout(format!(
                "{topic}-{partition}: the in-sync replicas did not confirm the write within {:?}; it may still be committed",
                self.quorum.config.produce_timeout
            )),
            Refusal::Deposed => Error::Timeout(format!(
                "{topic}-{partition}: this node stopped leading before the in-sync replicas confirmed the write; it may still be committed"
            )),
            Refusal::Storage(e) => Error::from_storage(topic, partition, e),
        }
    }
}
