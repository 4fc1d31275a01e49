//! Key-based compaction and truncation: rewriting sealed segments.
//!
//! # What compaction keeps
//! For every key, the record with the highest offset anywhere in the log
//! (including the active segment). Sealed segments are rewritten keeping
//! only those records, at their original offsets (so offsets have gaps). A
//! tombstone (null value) is kept while it is the latest record for its key,
//! so that readers replaying the log learn about the delete. The active
//! segment is never rewritten.
//!
//! # Crash
//! A rewrite goes `<base>.log.cleaned` (written, fsync'd) → rename to
//! `<base>.log.swap` → rename over `<base>.log`. Recovery deletes a
//! `.cleaned` (the old segment is intact) and finishes a `.swap` (renaming it
//! into place and dropping its stale indexes). Renaming over the old file
//! keeps the old inode alive for any reader still holding a mapping.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;

use crate::batch::RecordBatch;
use crate::builder::encode_with_offsets;
use crate::index_file::io_err;
use crate::segment::{Segment, file_stem};
use crate::{CleanupPolicy, Log, Result};

/// Atomically replaces the `.log` of segment `base` with `bytes` and returns
/// the reopened, re-indexed segment.
fn replace_segment(dir: &Path, base: i64, bytes: &[u8], log: &Log) -> Result<Segment> {
    let stem = file_stem(base);
    let cleaned = dir.join(format!("{stem}.log.cleaned"));
    let swap = dir.join(format!("{stem}.log.swap"));
    let target = dir.join(format!("{stem}.log"));
    let mut file = std::fs::File::create(&cleaned)
        .map_err(|e| io_err("create compacted segment", &cleaned, e))?;
    file.write_all(bytes)
        .map_err(|e| io_err("write compacted segment", &cleaned, e))?;
    file.sync_data()
        .map_err(|e| io_err("fsync compacted segment", &cleaned, e))?;
    std::fs::rename(&cleaned, &swap).map_err(|e| io_err("rename compacted segment", &swap, e))?;
    std::fs::rename(&swap, &target).map_err(|e| io_err("swap in compacted segment", &target, e))?;
    let max_index = log.config().max_index_bytes as usize;
    let mut segment = Segment::open(dir, base, log.config())?;
    segment.scan(true, true, max_index)?;
    segment.seal()?;
    Ok(segment)
}

impl Log {
    /// Compacts the sealed segments of a `Compact` log. Returns the bytes
    /// removed.
    ///
    /// # Errors
    /// `Io` from reading or rewriting a segment; `CorruptBatch` if a stored
    /// batch no longer decodes.
    pub fn compact(&mut self) -> Result<u64> {
        if self.config().cleanup != CleanupPolicy::Compact || self.segment_count() < 2 {
            return Ok(0);
        }
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for segment in self.segments().values() {
            for batch in RecordBatch::iter_batches(segment.data()?) {
                for record in batch?.records()? {
                    if let Some(key) = record.key {
                        latest.insert(key, record.offset);
                    }
                }
            }
        }
        let sealed: Vec<i64> = self.segments().keys().copied().collect();
        let mut removed = 0;
        for base in &sealed[..sealed.len() - 1] {
            let Some(segment) = self.segments().get(base) else {
                continue;
            };
            let data = segment.data()?;
            let mut out = Vec::with_capacity(data.len());
            let mut changed = false;
            for batch in RecordBatch::iter_batches(data.clone()) {
                let batch = batch?;
                let records = batch.records()?;
                let keep: Vec<_> = records
                    .iter()
                    .filter(|r| {
                        r.key
                            .as_ref()
                            .is_some_and(|k| latest.get(k) == Some(&r.offset))
                    })
                    .cloned()
                    .collect();
                if keep.len() == records.len() {
                    out.extend_from_slice(&batch.bytes);
                } else {
                    changed = true;
                    if !keep.is_empty() {
                        out.extend_from_slice(&encode_with_offsets(&keep, &batch.header)?);
                    }
                }
            }
            if !changed {
                continue;
            }
            removed += data.len() as u64 - out.len() as u64;
            drop(data);
            let dir = self.dir().to_path_buf();
            let segment = replace_segment(&dir, *base, &out, self)?;
            self.segments_mut().insert(*base, segment);
        }
        Ok(removed)
    }

    /// Removes every batch whose last offset is at or above `offset` (for a
    /// follower whose log diverged from its leader's). Readers holding data
    /// from before keep valid buffers: the cut segment is rewritten, not
    /// shrunk in place.
    ///
    /// # Errors
    /// `Io` from rewriting or deleting segment files.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let offset = offset.max(self.log_start_offset());
        let dir = self.dir().to_path_buf();
        let doomed: Vec<i64> = self.segments().range(offset..).map(|(b, _)| *b).collect();
        for base in doomed {
            if let Some(segment) = self.segments_mut().remove(&base) {
                segment.delete_files()?;
            }
        }
        if let Some((&base, segment)) = self.segments().range(..offset).next_back() {
            let data = segment.data()?;
            let mut keep = 0;
            for batch in RecordBatch::iter_batches(data.clone()) {
                let batch = batch?;
                if batch.last_offset() >= offset {
                    break;
                }
                keep += batch.bytes.len();
            }
            let segment = replace_segment(&dir, base, &data[..keep], self)?;
            self.segments_mut().insert(base, segment);
        }
        if self.segments().is_empty() {
            let segment = Segment::create(&dir, offset, self.config())?;
            self.segments_mut().insert(offset, segment);
            self.set_log_start_offset(offset);
        }
        let end = self.log_end_offset();
        let max_index = self.config().max_index_bytes as usize;
        if let Some(active) = self.segments_mut().values_mut().next_back() {
            active.unseal(max_index)?;
        }
        self.truncate_epochs(end)?;
        self.rebuild_producers()?;
        Ok(())
    }
}
