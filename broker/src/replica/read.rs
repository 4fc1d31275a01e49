//! The leader's side of a read: fetching whole batches below the high
//! watermark (long-polling for more), and offset lookups.

use super::ReplicaManager;
use crate::api::{FetchRequest, FetchResult, OffsetSpec};
use crate::{Error, Result};

impl ReplicaManager {
    /// Reads whole batches below the high watermark of a partition this
    /// node leads, waiting up to `max_wait` for `min_bytes`.
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; `NotLeader`, `LeaderNotReady`;
    /// `OffsetOutOfRange` with the earliest offset and the high watermark;
    /// `Storage`.
    ///
    /// # Cancel safety
    /// Safe: a fetch only reads.
    pub(crate) async fn read(&self, request: &FetchRequest) -> Result<FetchResult> {
        let p = self.readable(&request.topic, request.partition)?;
        let deadline = tokio::time::Instant::now() + request.max_wait;
        let max_bytes = if request.max_bytes == 0 {
            1 << 20
        } else {
            request.max_bytes
        };
        let read = p
            .fetch(
                request.offset,
                max_bytes,
                request.min_bytes,
                deadline,
                &self.shutdown,
            )
            .await
            .map_err(|e| Error::from_storage(&request.topic, request.partition, e))?;
        self.metrics.record_fetch(read.data.len() as u64);
        Ok(FetchResult {
            records: read.data,
            next_offset: read.next_offset,
            high_watermark: p.high_watermark(),
            log_start_offset: read.log_start_offset,
        })
    }

    /// `(offset, timestamp)` on a partition this node leads: Earliest → log
    /// start, Latest → high watermark, LogEnd → log end, Timestamp → the first record at or
    /// after it (`None` if there is none).
    ///
    /// # Errors
    /// As [`ReplicaManager::read`].
    pub(crate) fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<Option<(i64, i64)>> {
        let p = self.readable(topic, partition)?;
        Ok(match spec {
            OffsetSpec::Earliest => Some((p.read_log().log_start_offset(), -1)),
            OffsetSpec::Latest => Some((p.high_watermark(), -1)),
            OffsetSpec::LogEnd => Some((p.read_log().log_end_offset(), -1)),
            OffsetSpec::Timestamp(ts) => p
                .offset_for_timestamp(ts)
                .map_err(|e| Error::from_storage(topic, partition, e))?
                .map(|t| (t.offset, t.timestamp_ms)),
        })
    }
}
