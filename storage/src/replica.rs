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

use crate::batch::BatchHeader;
use crate::{Error, Log, RecordBatch, Result};

impl Log {
    /// Appends batches fetched from the leader (one or more, back to back,
    /// as the leader's [`Log::read`] returned them), keeping their base
    /// offsets and leader epochs. Returns how many were appended.
    ///
    /// Each batch's CRC is checked once here (it covers every byte after
    /// it; the leader decoded every record when it took the batch). Batches
    /// that fit the active segment together are written with one write:
    /// many small writes that start mid-page cost the page cache about
    /// twice as much per byte.
    ///
    /// # Errors
    /// `OffsetMismatch` when a batch does not start where the one before it
    /// (or the log) ends; `CorruptBatch` for a bad CRC, bytes after a batch
    /// or an older leader epoch; `Io`. The batches before the bad one are
    /// appended; nothing of it or after it is.
    pub fn append_replicated(&mut self, data: Bytes, now_ms: i64) -> Result<usize> {
        let mut checked: Vec<(BatchHeader, usize)> = Vec::new();
        let mut failure = None;
        let mut expected = self.log_end_offset();
        let mut epoch = self.leader_epochs().last().map(|(e, _)| *e);
        let mut used = 0;
        for batch in RecordBatch::iter_batches(data.clone()) {
            let header = match batch {
                Ok(batch) => batch.header,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if header.base_offset != expected {
                failure = Some(Error::OffsetMismatch {
                    expected,
                    got: header.base_offset,
                });
                break;
            }
            let e = header.partition_leader_epoch;
            if epoch.is_some_and(|last| e < last) {
                failure = Some(Error::CorruptBatch(format!(
                    "leader epoch {e} is older than the log's latest epoch"
                )));
                break;
            }
            let len = match header.total_len() {
                Ok(len) => len,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            epoch = Some(e);
            expected = header.last_offset() + 1;
            used += len;
            checked.push((header, len));
        }
        if failure.is_none() && used != data.len() {
            failure = Some(Error::CorruptBatch(format!(
                "{} bytes after the last whole batch",
                data.len() - used
            )));
        }
        let mut at = 0;
        let mut next = 0;
        while next < checked.len() {
            let first = checked[next].1 as u64;
            self.maybe_roll_for(first, now_ms)?;
            let size = self.active().size;
            let room = self
                .config()
                .segment_bytes
                .saturating_sub(size)
                .min(u64::from(u32::MAX).saturating_sub(size));
            let (mut end, mut len) = (next + 1, first);
            while let Some((_, more)) = checked.get(end) {
                if len + *more as u64 > room {
                    break;
                }
                len += *more as u64;
                end += 1;
            }
            let run = &checked[next..end];
            self.active_mut()
                .append_run(&[&data[at..at + len as usize]], run, now_ms)?;
            for (header, _) in run {
                self.record_written(header)?;
            }
            at += len as usize;
            next = end;
        }
        failure.map_or(Ok(checked.len()), Err)
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
