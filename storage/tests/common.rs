//! Shared helpers for the storage integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use bytes::Bytes;
use fjord_storage::{BatchBuilder, Compression, Log, LogConfig, Record, RecordBatch};

/// A batch of `n` records whose values are `"{tag}-{i}"`.
pub fn batch(tag: &str, n: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b.add(Record::new(
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(format!("{tag}-{i}"))),
            ts,
        ));
    }
    b.build().unwrap()
}

/// Every record value in the log, in offset order, with its offset.
pub fn read_all(log: &Log) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20, i64::MAX).unwrap();
        if r.data.is_empty() {
            break;
        }
        for b in RecordBatch::iter_batches(r.data) {
            for rec in b.unwrap().records().unwrap() {
                if rec.offset >= offset {
                    out.push((rec.offset, rec.value.unwrap_or_default()));
                }
            }
        }
        offset = r.next_offset;
    }
    out
}

pub fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}
