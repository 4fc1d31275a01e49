use std::time::Duration;

/// When appended bytes are fsync'd (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every append is flushed before it is acknowledged (group commit:
    /// appends that arrive while a flush runs share the next one).
    EveryBatch,
    /// Flushed at most this long after the append.
    Interval(Duration),
    /// Left to the operating system (flushed on roll and close).
    Os,
}

/// What retention does with old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
}

/// Per-partition log settings (topic configs map onto these).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll the active segment once it reaches this many bytes.
    pub segment_bytes: u64,
    /// Roll the active segment once its first batch is this old.
    pub segment_ms: Option<Duration>,
    /// Bytes between sparse index entries.
    pub index_interval_bytes: u32,
    /// Maximum size of an index file (entries are preallocated).
    pub max_index_bytes: u32,
    /// Delete whole segments whose newest record is older than this.
    pub retention_ms: Option<Duration>,
    /// Delete whole oldest segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    pub flush: FlushPolicy,
    pub cleanup: CleanupPolicy,
    /// Largest batch accepted by `append`.
    pub max_batch_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval_bytes: 4096,
            max_index_bytes: 10 << 20,
            retention_ms: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes: None,
            flush: FlushPolicy::EveryBatch,
            cleanup: CleanupPolicy::Delete,
            max_batch_bytes: 8 << 20,
        }
    }
}
