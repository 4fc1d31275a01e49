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
//!   format (encode, decode, validate, CRC-32C).
//! - `segment`, `offset_index`, `time_index`, `mmap`: one segment on disk.
//! - `log`: the ordered segments of one partition; append, read, flush.
//! - `recovery`, `retention`, `compaction`: what happens on open and later.
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
mod compression;
mod config;
mod error;
mod log;
mod record;

pub use batch::{BatchHeader, RecordBatch};
pub use builder::BatchBuilder;
pub use compression::Compression;
pub use config::{CleanupPolicy, FlushPolicy, LogConfig};
pub use error::{Error, Result};
pub use log::{AppendInfo, FlushTicket, Flushed, Log, ReadResult, RecoveryReport, TimestampOffset};
pub use record::{Record, RecordHeader};
