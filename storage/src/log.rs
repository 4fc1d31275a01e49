//! One partition's log: ordered segments in one directory.
//!
//! # Invariants
//! Segments are contiguous: each starts at the previous one's `next_offset`
//! or later (compaction leaves gaps inside segments, never overlaps). Only
//! the last segment is appended to. `log_start <= recovery_point <= log_end`.
//!
//! # Concurrency
//! Appends, flush bookkeeping, retention and compaction take `&mut self`;
//! `read` and lookups take `&self`, so an owner may wrap the log in a
//! `RwLock` and serve reads while no append holds it. The `fdatasync` of a
//! group commit runs outside any lock via [`FlushTicket`].
//!
//! # Crash
//! See `recovery.rs`: a torn tail is cut, indexes are rebuilt, and every
//! batch below the flushed recovery point survives.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::batch::{BatchHeader, RecordBatch, STAMPED_LEN, stamp};
use crate::checkpoint;
use crate::index_file::io_err;
use crate::producer_state::{ProducerState, Verdict};
use crate::recovery;
use crate::segment::Segment;
use crate::{CleanupPolicy, Error, FlushPolicy, LogConfig, Result};

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Broker time of the append, ms since the epoch.
    pub log_append_time_ms: i64,
    pub max_timestamp_ms: i64,
}

/// Whole batches read from one segment.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Concatenated whole batches; points into the segment mapping (no copy).
    pub data: Bytes,
    /// Offset after the last batch in `data` (the requested offset if empty).
    pub next_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// Answer to a lookup by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// What recovery found and did when the log was opened.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Bytes cut from a torn or corrupt tail, with the file.
    pub truncated: Vec<(PathBuf, u64)>,
    /// Index files rebuilt because they were missing, corrupt or unflushed.
    pub rebuilt_indexes: Vec<PathBuf>,
    /// Human-readable problems found (file name and what was wrong).
    pub problems: Vec<String>,
}

/// A pending fsync, taken under the log's lock and run outside it.
#[derive(Debug)]
pub struct FlushTicket {
    file: File,
    path: PathBuf,
    up_to_offset: i64,
}

/// Proof that a `FlushTicket` completed.
#[derive(Debug)]
pub struct Flushed {
    pub up_to_offset: i64,
}

impl FlushTicket {
    /// Runs the `fdatasync` (call from a blocking thread).
    ///
    /// # Errors
    /// `Io` naming the segment file.
    pub fn sync(self) -> Result<Flushed> {
        self.file
            .sync_data()
            .map_err(|e| io_err("fsync segment", &self.path, e))?;
        Ok(Flushed {
            up_to_offset: self.up_to_offset,
        })
    }
}

/// One partition's log: ordered segments in one directory.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    recovery_point: i64,
    leader_epochs: Vec<(i32, i64)>,
    producers: ProducerState,
    report: RecoveryReport,
    _lock: File,
}

impl Log {
    /// Opens (creating if needed) the log in `dir` and recovers it.
    ///
    /// # Errors
    /// `Io` when the directory cannot be created, listed or locked (another
    /// process has it open), or a file cannot be read or repaired.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create partition directory", &dir, e))?;
        let lock_path = dir.join(".lock");
        let lock =
            File::create(&lock_path).map_err(|e| io_err("create lock file", &lock_path, e))?;
        lock.try_lock().map_err(|e| {
            let source = match e {
                std::fs::TryLockError::Error(e) => e,
                std::fs::TryLockError::WouldBlock => {
                    std::io::Error::new(std::io::ErrorKind::WouldBlock, "locked by another process")
                }
            };
            io_err("lock partition directory", &lock_path, source)
        })?;
        let recovered = recovery::recover(&dir, &config)?;
        let mut segments: BTreeMap<i64, Segment> = recovered
            .segments
            .into_iter()
            .map(|s| (s.base_offset, s))
            .collect();
        if segments.is_empty() {
            segments.insert(0, Segment::create(&dir, 0, &config)?);
        }
        let log_start_offset = segments.keys().next().copied().unwrap_or(0);
        let mut log = Log {
            dir,
            config,
            segments,
            log_start_offset,
            recovery_point: 0,
            leader_epochs: Vec::new(),
            producers: ProducerState::default(),
            report: recovered.report,
            _lock: lock,
        };
        let end = log.log_end_offset();
        log.leader_epochs = checkpoint::read_leader_epochs(&log.dir)
            .into_iter()
            .filter(|(_, s)| *s < end)
            .collect();
        let max_index = log.config.max_index_bytes as usize;
        log.active_mut().unseal(max_index)?;
        // Everything that survived recovery is on disk now; make it durable.
        log.active()
            .sync_handle()?
            .0
            .sync_data()
            .map_err(|e| io_err("fsync segment", log.active().log_path(), e))?;
        log.recovery_point = end;
        log.rebuild_producers()?;
        checkpoint::write_recovery_point(&log.dir, end)?;
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Changes settings that apply from now on (retention, flush, roll).
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    pub(crate) fn active(&self) -> &Segment {
        // The map is never empty: open and every removal keep one segment.
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Validates `batch`, assigns offsets from the log end, stamps the
    /// leader epoch and writes it. Nothing is flushed here: with
    /// `EveryBatch` the caller group-commits via [`Log::flush_ticket`].
    ///
    /// # Errors
    /// `BatchTooLarge`, `CorruptBatch`, `UnsupportedCodec`, `InvalidRecord`
    /// (a keyless record in a compacted log): nothing is written. `Io`: the
    /// write failed (e.g. disk full) and was undone; the log is unchanged.
    pub fn append(&mut self, batch: Bytes, leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let header = self.validate(&batch)?;
        if let Verdict::Duplicate {
            base_offset,
            last_offset,
        } = self.producers.check(&header)?
        {
            // A producer's retry: it is stored already, at these offsets.
            return Ok(AppendInfo {
                base_offset,
                last_offset,
                log_append_time_ms: now_ms,
                max_timestamp_ms: header.max_timestamp,
            });
        }
        let base_offset = self.log_end_offset();
        self.write_batch(&batch, header, base_offset, leader_epoch, now_ms)
    }

    /// Checks a batch against the format and this log's limits and policy.
    pub(crate) fn validate(&self, batch: &Bytes) -> Result<BatchHeader> {
        if batch.len() > self.config.max_batch_bytes {
            return Err(Error::BatchTooLarge {
                size: batch.len(),
                max: self.config.max_batch_bytes,
            });
        }
        let parsed = RecordBatch::parse_checked(batch.clone())?;
        if parsed.bytes.len() != batch.len() {
            return Err(Error::CorruptBatch(format!(
                "{} bytes after the batch",
                batch.len() - parsed.bytes.len()
            )));
        }
        let records = parsed.records()?;
        if self.config.cleanup == CleanupPolicy::Compact && records.iter().any(|r| r.key.is_none())
        {
            return Err(Error::InvalidRecord(
                "records in a compacted log need a key".into(),
            ));
        }
        Ok(parsed.header)
    }

    /// Writes a validated batch at `base_offset` (the log end) stamped with
    /// `leader_epoch`, recording a new epoch.
    pub(crate) fn write_batch(
        &mut self,
        batch: &Bytes,
        mut header: BatchHeader,
        base_offset: i64,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.maybe_roll_for(batch.len() as u64, now_ms)?;
        // The base offset and leader epoch lie before the part the CRC
        // covers: only the first 16 bytes change, and the rest is written
        // from the producer's buffer as it is.
        let mut head = [0u8; STAMPED_LEN];
        head.copy_from_slice(&batch[..STAMPED_LEN]);
        stamp(&mut head, base_offset, leader_epoch);
        header.base_offset = base_offset;
        header.partition_leader_epoch = leader_epoch;
        let len = batch.len();
        self.active_mut().append_run(
            &[&head, &batch[STAMPED_LEN..]],
            &[(header.clone(), len)],
            now_ms,
        )?;
        self.record_written(&header)?;
        Ok(AppendInfo {
            base_offset,
            last_offset: header.last_offset(),
            log_append_time_ms: now_ms,
            max_timestamp_ms: header.max_timestamp,
        })
    }

    /// Takes note of a batch just written: its producer's sequence and, if
    /// it starts a new leader epoch, the epoch (checkpointed).
    pub(crate) fn record_written(&mut self, header: &BatchHeader) -> Result<()> {
        self.producers.record(header);
        let epoch = header.partition_leader_epoch;
        if self.leader_epochs.last().is_none_or(|(e, _)| *e < epoch) && epoch >= 0 {
            self.leader_epochs.push((epoch, header.base_offset));
            checkpoint::write_leader_epochs(&self.dir, &self.leader_epochs)?;
        }
        Ok(())
    }

    pub(crate) fn maybe_roll_for(&mut self, incoming: u64, now_ms: i64) -> Result<()> {
        let active = self.active();
        let full = active.size > 0 && active.size + incoming > self.config.segment_bytes;
        let too_big_for_index = active.size + incoming > u64::from(u32::MAX);
        let old = self
            .config
            .segment_ms
            .zip(active.first_append_ms)
            .is_some_and(|(ms, first)| {
                active.size > 0 && now_ms.saturating_sub(first) >= ms.as_millis() as i64
            });
        if full || old || (too_big_for_index && active.size > 0) {
            self.roll()?;
        }
        Ok(())
    }

    /// Seals the active segment (flushing it) and starts a new one.
    ///
    /// # Errors
    /// `Io` if the flush or the new files fail.
    pub fn roll(&mut self) -> Result<()> {
        let next = self.log_end_offset();
        if self.active().size == 0 {
            return Ok(());
        }
        self.active_mut().seal()?;
        self.recovery_point = next;
        let segment = Segment::create(&self.dir, next, &self.config)?;
        self.segments.insert(next, segment);
        checkpoint::write_recovery_point(&self.dir, next)
    }

    /// Rolls when the active segment is older than `segment_ms`.
    ///
    /// # Errors
    /// As [`Log::roll`].
    pub fn maybe_roll(&mut self, now_ms: i64) -> Result<bool> {
        let before = self.segments.len();
        self.maybe_roll_for(0, now_ms)?;
        Ok(self.segments.len() > before)
    }

    /// Whole batches from the one containing `offset`, from one segment,
    /// at most `max_bytes` (the first batch always whole), only batches whose
    /// last offset is below `max_offset`.
    ///
    /// # Errors
    /// `OffsetOutOfRange` outside `[log_start, log_end]`; `Io` if mapping fails.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadResult> {
        let (start, end) = (self.log_start_offset, self.log_end_offset());
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start: start,
                log_end: end,
            });
        }
        let empty = ReadResult {
            data: Bytes::new(),
            next_offset: offset,
            log_start_offset: start,
            log_end_offset: end,
        };
        // Compaction can leave a segment without the offset: try later ones.
        for (_, segment) in self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .chain(self.segments.range(offset + 1..))
        {
            if segment.next_offset <= offset {
                continue;
            }
            return Ok(match segment.read(offset, max_bytes, max_offset)? {
                Some((data, next_offset)) => ReadResult {
                    data,
                    next_offset,
                    ..empty
                },
                None => empty,
            });
        }
        Ok(empty)
    }

    /// A ticket to fsync everything appended so far, or `None` if all of it
    /// is flushed already.
    ///
    /// # Errors
    /// `Io` if the file handle cannot be duplicated.
    pub fn flush_ticket(&mut self) -> Result<Option<FlushTicket>> {
        let end = self.log_end_offset();
        if end <= self.recovery_point {
            return Ok(None);
        }
        let (file, path) = self.active().sync_handle()?;
        Ok(Some(FlushTicket {
            file,
            path,
            up_to_offset: end,
        }))
    }

    /// Records a completed flush.
    pub fn complete_flush(&mut self, flushed: Flushed) {
        self.recovery_point = self
            .recovery_point
            .max(flushed.up_to_offset.min(self.log_end_offset()));
    }

    /// Flushes everything appended so far, on this thread.
    ///
    /// # Errors
    /// `Io` naming the file.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(ticket) = self.flush_ticket()? {
            let flushed = ticket.sync()?;
            self.complete_flush(flushed);
        }
        Ok(())
    }

    /// Whether the flush policy wants an fsync before acknowledging.
    pub fn flushes_every_batch(&self) -> bool {
        self.config.flush == FlushPolicy::EveryBatch
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The next offset to be assigned.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Every offset below this is flushed to disk.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Leader epochs and the offset each started at.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.leader_epochs.clone()
    }

    /// The first offset whose record timestamp is at least `timestamp_ms`.
    ///
    /// # Errors
    /// `Io` or `CorruptBatch` from reading the segment.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<TimestampOffset>> {
        for segment in self.segments.values() {
            if let Some(found) = segment.offset_for_timestamp(timestamp_ms)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    pub(crate) fn segments_mut(&mut self) -> &mut BTreeMap<i64, Segment> {
        &mut self.segments
    }

    pub(crate) fn segments(&self) -> &BTreeMap<i64, Segment> {
        &self.segments
    }

    /// Rebuilds the idempotent-producer table from every batch header.
    pub(crate) fn rebuild_producers(&mut self) -> Result<()> {
        let mut state = ProducerState::default();
        for segment in self.segments.values() {
            let data = segment.data()?;
            let mut pos = 0;
            while pos < data.len() {
                let Ok(header) = BatchHeader::parse(&data[pos..]) else {
                    tracing::warn!(file = %segment.log_path().display(), pos, "producer state: unreadable batch header");
                    break;
                };
                state.record(&header);
                pos += header.total_len()?;
            }
        }
        self.producers = state;
        Ok(())
    }

    /// Forgets leader epochs that start at or after `end` (after truncation).
    pub(crate) fn truncate_epochs(&mut self, end: i64) -> Result<()> {
        self.recovery_point = self.recovery_point.min(end);
        let before = self.leader_epochs.len();
        self.leader_epochs.retain(|(_, start)| *start < end);
        if self.leader_epochs.len() != before {
            checkpoint::write_leader_epochs(&self.dir, &self.leader_epochs)?;
        }
        checkpoint::write_recovery_point(&self.dir, self.recovery_point)
    }

    pub(crate) fn set_log_start_offset(&mut self, offset: i64) {
        self.log_start_offset = offset;
        self.recovery_point = self.recovery_point.max(offset);
    }

    /// Flushes and writes the checkpoints (a clean stop).
    ///
    /// # Errors
    /// `Io` naming the file.
    pub fn close(mut self) -> Result<()> {
        self.active_mut().seal()?;
        let end = self.log_end_offset();
        checkpoint::write_recovery_point(&self.dir, end)
    }

    /// Removes the whole partition directory.
    ///
    /// # Errors
    /// `Io` naming the directory.
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(|e| io_err("delete partition directory", &dir, e))
    }
}
