use std::path::PathBuf;

use bytes::Bytes;

use crate::{LogConfig, Result};

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
    /// Index files rebuilt because they were missing or corrupt.
    pub rebuilt_indexes: Vec<PathBuf>,
    /// Human-readable problems found (file name and what was wrong).
    pub problems: Vec<String>,
}

/// A pending fsync, taken under the log's lock and run outside it.
#[derive(Debug)]
pub struct FlushTicket {
    _private: (),
}

/// Proof that a `FlushTicket` completed.
#[derive(Debug)]
pub struct Flushed {
    pub up_to_offset: i64,
}

impl FlushTicket {
    /// Runs the `fdatasync` (call from a blocking thread).
    pub fn sync(self) -> Result<Flushed> {
        todo!("storage: sync")
    }
}

/// One partition's log: ordered segments in one directory.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
}

impl Log {
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log> {
        let _ = (dir.into(), config);
        todo!("storage: open")
    }
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn recovery_report(&self) -> &RecoveryReport {
        todo!()
    }
    /// Validates `batch`, assigns offsets from the log end, stamps the leader
    /// epoch, writes it, and flushes if the policy is `EveryBatch`... see docs.
    pub fn append(&mut self, batch: Bytes, leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let _ = (batch, leader_epoch, now_ms);
        todo!()
    }
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadResult> {
        let _ = (offset, max_bytes, max_offset);
        todo!()
    }
    pub fn flush(&mut self) -> Result<()> {
        todo!()
    }
    pub fn flush_ticket(&mut self) -> Option<FlushTicket> {
        todo!()
    }
    pub fn complete_flush(&mut self, flushed: Flushed) {
        let _ = flushed;
        todo!()
    }
    pub fn log_start_offset(&self) -> i64 {
        todo!()
    }
    pub fn log_end_offset(&self) -> i64 {
        todo!()
    }
    pub fn recovery_point(&self) -> i64 {
        todo!()
    }
    pub fn size_bytes(&self) -> u64 {
        todo!()
    }
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<TimestampOffset>> {
        let _ = timestamp_ms;
        todo!()
    }
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<u64> {
        let _ = now_ms;
        todo!()
    }
    pub fn compact(&mut self) -> Result<u64> {
        todo!()
    }
    pub fn maybe_roll(&mut self, now_ms: i64) -> Result<bool> {
        let _ = now_ms;
        todo!()
    }
    pub fn close(self) -> Result<()> {
        todo!()
    }
    pub fn delete(self) -> Result<()> {
        todo!()
    }
}
