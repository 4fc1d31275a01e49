//! What a replica's log needs beyond appends by a leader: appending batches
//! exactly as the leader stored them, and answering "where did my epoch
//! end?" so a follower can cut a diverged tail before fetching.
//!
//! # Invariants
//! A follower's log holds the leader's batches byte for byte: the same base
//! offsets and leader epochs. After truncating to the leader's end offset
//! for the follower's last epoch, the two logs agree up to the follower's
//! end (Kafka's KIP-101/KIP-279 rule).

use bytes::Bytes;

use crate::{AppendInfo, Error, Log, Result};

impl Log {
    /// Appends a batch fetched from the leader, keeping its base offset and
    /// leader epoch.
    ///
    /// # Errors
    /// `OffsetMismatch` when the batch does not start at this log's end
    /// (nothing is written); the errors of [`Log::append`].
    pub fn append_replicated(&mut self, batch: Bytes, now_ms: i64) -> Result<AppendInfo> {
        // The leader decoded every record when it took the batch; a copy
        // only needs its CRC checked (which covers every byte after it).
        let parsed = crate::RecordBatch::parse_checked(batch.clone())?;
        if parsed.bytes.len() != batch.len() {
            return Err(Error::CorruptBatch(format!(
                "{} bytes after the batch",
                batch.len() - parsed.bytes.len()
            )));
        }
        let header = parsed.header;
        let expected = self.log_end_offset();
        if header.base_offset != expected {
            return Err(Error::OffsetMismatch {
                expected,
                got: header.base_offset,
            });
        }
        let epoch = header.partition_leader_epoch;
        if self
            .leader_epochs()
            .last()
            .is_some_and(|(last, _)| epoch < *last)
        {
            return Err(Error::CorruptBatch(format!(
                "leader epoch {epoch} is older than the log's latest epoch"
            )));
        }
        self.write_batch(&batch, header, expected, epoch, now_ms)
    }

    /// Kafka's OffsetsForLeaderEpoch: the largest epoch at or below `epoch`
    /// that this log has, and the offset where it ended (the start of the
    /// next epoch, or the log end for the latest one). `None` when the log
    /// knows no epoch that old.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let epochs = self.leader_epochs();
        let at = epochs.iter().rposition(|(e, _)| *e <= epoch)?;
        let end = epochs
            .get(at + 1)
            .map_or(self.log_end_offset(), |(_, start)| *start);
        Some((epochs[at].0, end))
    }

    /// Where a follower whose latest epoch is `follower_epoch` must cut its
    /// log, given the leader's answer for that epoch: the smaller of the two
    /// ends when the epochs match, else the leader's end (the follower's
    /// entries from its later epoch never made it to the leader).
    pub fn divergence_point(&self, leader_answer: Option<(i32, i64)>) -> i64 {
        let end = self.log_end_offset();
        match leader_answer {
            Some((_, leader_end)) => leader_end.min(end),
            None => self.log_start_offset(),
        }
    }
}
