use std::path::PathBuf;

/// Everything that can go wrong in the storage crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed; names the file and what was being done.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A batch or record does not parse or fails its CRC.
    #[error("corrupt batch: {0}")]
    CorruptBatch(String),
    /// A record the log's policy does not accept (e.g. keyless in a
    /// compacted log).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The attributes name a codec this build does not support.
    #[error("unsupported compression codec id {0}")]
    UnsupportedCodec(u8),
    /// The batch is larger than the configured maximum.
    #[error("batch of {size} bytes exceeds the maximum of {max}")]
    BatchTooLarge { size: usize, max: usize },
    /// Asked for an offset outside `[log_start, log_end]`.
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// An idempotent producer skipped or reused a sequence number.
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    /// An idempotent producer wrote with an epoch older than the current one.
    #[error("producer {producer_id} is fenced: epoch {epoch} is older than {current}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// A replicated batch does not start at the log end.
    #[error("replicated batch starts at offset {got}, but the log ends at {expected}")]
    OffsetMismatch { expected: i64, got: i64 },
    /// Need more bytes to decode (not a failure for streaming decoders).
    #[error("need {0} more bytes")]
    Incomplete(usize),
}

impl Error {
    /// True when the underlying I/O error is "no space left on device".
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
