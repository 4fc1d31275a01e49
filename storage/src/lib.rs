//! The partition log of Fjord.
//!
//! Owns everything on disk for one partition: the Kafka v2 record-batch format
//! (byte for byte), compression codecs, segment files with their sparse mmap'd
//! offset and time indexes, crash recovery, retention and compaction. It does
//! not own networking, replication decisions or topic metadata: the broker
//! drives a [`Log`] and decides what is visible (the high watermark).
//!
//! # Layout
//! - `varint`, `record`, `batch`, `builder`, `compression`: the record-batch
//!   format (encode, decode, validate, CRC-32C, codecs).
//! - `mmap`: the one module that maps files (and so the only `unsafe`).
//! - `index_file`, `segment`: one segment on disk with its offset and time
//!   indexes.
//! - `log`: the ordered segments of one partition; append, read, group-commit
//!   flush.
//! - `checkpoint`, `recovery`: what survives a crash and how open repairs it.
//! - `retention`, `compaction`: deleting old segments, keeping the latest
//!   record per key, truncation.
//! - `producer_state`: idempotent producers (retries dropped, gaps refused).
//! - `replica`: follower appends that keep the leader's offsets and epochs,
//!   and the leader-epoch lookups that find where a follower diverged.
//!
//! # Example
//! ```no_run
//! use fjord_storage::{BatchBuilder, Compression, Log, LogConfig, Record};
//! # fn main() -> fjord_storage::Result<()> {
//! let mut log = Log::open("/tmp/orders-0", LogConfig::default())?;
//! let batch = BatchBuilder::new(Compression::Zstd)
//!     .push(Record::new(Some("k".into()), Some("v".into()), 0))
//!     .build()?;
//! let info = log.append(batch, 0, 0)?;
//! log.flush()?;
//! let read = log.read(info.base_offset, 1 << 20, i64::MAX)?;
//! assert!(!read.data.is_empty());
//! # Ok(()) }
//! ```

mod batch;
mod builder;
mod checkpoint;
mod compaction;
mod compression;
mod config;
mod error;
mod index_file;
mod log;
mod mmap;
mod producer_state;
mod record;
mod recovery;
mod replica;
mod retention;
mod segment;
mod varint;

pub use batch::{BATCH_HEADER_LEN, BatchHeader, RecordBatch};
pub use builder::BatchBuilder;
pub use compression::Compression;
pub use config::{CleanupPolicy, FlushPolicy, LogConfig};
pub use error::{Error, Result};
pub use log::{AppendInfo, FlushTicket, Flushed, Log, ReadResult, RecoveryReport, TimestampOffset};
pub use record::{Record, RecordHeader};
