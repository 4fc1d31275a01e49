//! Log behaviour: append/read, rolls, reopen, lookups, retention, compaction.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{batch, read_all, small_segments};
use fjord_storage::{
    BatchBuilder, CleanupPolicy, Compression, Error, Log, LogConfig, Record, RecordBatch,
};

#[test]
fn append_assigns_offsets_and_reads_back_across_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    let mut expected = Vec::new();
    for i in 0..100 {
        let info = log
            .append(batch(&format!("b{i}"), 5, 1000 + i), 3, 42)
            .unwrap();
        assert_eq!(info.base_offset, i * 5);
        assert_eq!(info.last_offset, i * 5 + 4);
        for j in 0..5 {
            expected.push(format!("b{i}-{j}"));
        }
    }
    assert!(log.segment_count() > 3, "small segments must roll");
    log.flush().unwrap();
    let got: Vec<String> = read_all(&log)
        .into_iter()
        .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
        .collect();
    assert_eq!(got, expected);
    log.close().unwrap();

    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), 500);
    assert!(log.recovery_report().truncated.is_empty());
    let got: Vec<String> = read_all(&log)
        .into_iter()
        .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
        .collect();
    assert_eq!(got, expected);
    assert_eq!(log.leader_epochs(), vec![(3, 0)]);
    let stored = log.read(0, 1 << 20, i64::MAX).unwrap();
    let first = RecordBatch::parse(stored.data).unwrap();
    assert_eq!(first.header.partition_leader_epoch, 3);
}

#[test]
fn read_respects_max_offset_and_returns_first_batch_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for i in 0..4 {
        log.append(batch(&format!("b{i}"), 10, 1), 0, 1).unwrap();
    }
    // Upper bound (a high watermark) of 20: only the first two batches.
    let r = log.read(0, 1 << 20, 20).unwrap();
    assert_eq!(r.next_offset, 20);
    let count: usize = RecordBatch::iter_batches(r.data)
        .map(|b| b.unwrap().records().unwrap().len())
        .sum();
    assert_eq!(count, 20);
    // max_bytes of 1 still returns one whole batch (starting at the batch holding 15).
    let r = log.read(15, 1, i64::MAX).unwrap();
    let batches: Vec<_> = RecordBatch::iter_batches(r.data)
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].header.base_offset, 10);
    assert_eq!(r.next_offset, 20);
    // At the end: empty; past it or before the start: out of range.
    assert!(log.read(40, 100, i64::MAX).unwrap().data.is_empty());
    match log.read(41, 100, i64::MAX) {
        Err(Error::OffsetOutOfRange {
            offset: 41,
            log_start: 0,
            log_end: 40,
        }) => {}
        other => panic!("expected out of range, got {other:?}"),
    }
}

#[test]
fn compressed_batches_round_trip_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let mut b = BatchBuilder::new(codec);
        for i in 0..50 {
            b.add(
                Record::new(
                    None,
                    Some(Bytes::from(format!("{codec:?}-{i}").repeat(20))),
                    7,
                )
                .with_header("h", Some(Bytes::from_static(b"v"))),
            );
        }
        log.append(b.build().unwrap(), 0, 1).unwrap();
    }
    let all = read_all(&log);
    assert_eq!(all.len(), 150);
    assert_eq!(all[149].1, Bytes::from("Zstd-49".repeat(20)));
    let r = log.read(60, 1 << 20, i64::MAX).unwrap();
    let b = RecordBatch::iter_batches(r.data).next().unwrap().unwrap();
    assert_eq!(b.compression().unwrap(), Compression::Lz4);
    assert_eq!(b.records().unwrap()[0].headers[0].key, "h");
}

#[test]
fn invalid_batches_are_rejected_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            max_batch_bytes: 10_000,
            ..LogConfig::default()
        },
    )
    .unwrap();
    log.append(batch("ok", 2, 1), 0, 1).unwrap();
    let good = batch("x", 3, 1).to_vec();

    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x40;
    let mut bad_len = good.clone();
    bad_len[8..12].copy_from_slice(&1_000_000i32.to_be_bytes());
    let mut bad_codec = good.clone();
    bad_codec[22] = 7;
    let crc = crc32c::crc32c(&bad_codec[21..]);
    bad_codec[17..21].copy_from_slice(&crc.to_be_bytes());
    let mut bad_record = good.clone();
    bad_record[61] = 0x7f; // first record's length varint now lies
    let crc = crc32c::crc32c(&bad_record[21..]);
    bad_record[17..21].copy_from_slice(&crc.to_be_bytes());
    let huge = BatchBuilder::new(Compression::None)
        .push(Record::new(None, Some(Bytes::from(vec![0u8; 20_000])), 1))
        .build()
        .unwrap();

    for (name, bytes, check) in [
        ("crc", Bytes::from(bad_crc), "CRC"),
        ("length", Bytes::from(bad_len), "more bytes"),
        ("codec", Bytes::from(bad_codec), "codec"),
        ("record", Bytes::from(bad_record), "record"),
        ("huge", huge, "exceeds"),
        (
            "garbage",
            Bytes::from_static(b"definitely not a batch"),
            "bytes",
        ),
    ] {
        let err = log.append(bytes, 0, 1).unwrap_err();
        assert!(err.to_string().contains(check), "{name}: {err}");
        assert_eq!(log.log_end_offset(), 2, "{name}: nothing appended");
    }
    let mut compacted = Log::open(
        dir.path().join("c"),
        LogConfig {
            cleanup: CleanupPolicy::Compact,
            ..LogConfig::default()
        },
    )
    .unwrap();
    let keyless = BatchBuilder::new(Compression::None)
        .push(Record::new(None, Some("v".into()), 1))
        .build()
        .unwrap();
    assert!(matches!(
        compacted.append(keyless, 0, 1),
        Err(Error::InvalidRecord(_))
    ));
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..50 {
        log.append(batch("t", 2, 1_000 + i * 10), 0, 1).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, 0);
    let hit = log.offset_for_timestamp(1_205).unwrap().unwrap();
    assert_eq!((hit.offset, hit.timestamp_ms), (42, 1_210));
    assert_eq!(log.offset_for_timestamp(1_490).unwrap().unwrap().offset, 98);
    assert!(log.offset_for_timestamp(1_491).unwrap().is_none());
}

#[test]
fn retention_by_size_and_time_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(8192),
        retention_ms: None,
        ..small_segments()
    };
    let mut log = Log::open(dir.path(), config).unwrap();
    for i in 0..100 {
        log.append(batch(&format!("r{i}"), 5, 1), 0, 1).unwrap();
    }
    let before = log.size_bytes();
    let deleted = log.enforce_retention(10).unwrap();
    assert!(deleted > 0 && log.size_bytes() == before - deleted);
    assert!(log.size_bytes() < 8192 + 4096);
    assert!(log.log_start_offset() > 0);
    assert_eq!(log.log_end_offset(), 500);
    let start = log.log_start_offset();
    assert!(matches!(
        log.read(0, 100, i64::MAX),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log).first().unwrap().0, start);

    let mut log = Log::open(
        dir.path().join("t"),
        LogConfig {
            retention_ms: Some(Duration::from_secs(1)),
            ..small_segments()
        },
    )
    .unwrap();
    for i in 0..40 {
        log.append(batch("old", 5, 1_000 + i), 0, 1).unwrap();
    }
    for _ in 0..40 {
        log.append(batch("new", 5, 100_000), 0, 1).unwrap();
    }
    log.enforce_retention(100_500).unwrap();
    let all = read_all(&log);
    assert!(all.iter().all(|(_, v)| v.starts_with(b"new")) || log.log_start_offset() > 0);
    assert!(
        !all.iter()
            .any(|(o, v)| v.starts_with(b"old") && *o < log.log_start_offset())
    );
    assert!(
        log.log_start_offset() >= 150,
        "old segments dropped: start {}",
        log.log_start_offset()
    );
}

#[test]
fn compaction_keeps_the_latest_record_per_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup: CleanupPolicy::Compact,
        ..small_segments()
    };
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    for round in 0..30 {
        let mut b = BatchBuilder::new(Compression::None);
        for key in 0..5 {
            b.add(Record::new(
                Some(format!("key{key}").into()),
                Some(format!("round{round}").into()),
                1,
            ));
        }
        log.append(b.build().unwrap(), 0, 1).unwrap();
    }
    let before = log.size_bytes();
    let removed = log.compact().unwrap();
    assert!(removed > 0 && log.size_bytes() < before);
    let latest = read_all(&log);
    // Each key's latest value survives at its original offset (145..150).
    for key in 0..5i64 {
        assert!(
            latest
                .iter()
                .any(|(o, v)| *o == 145 + key && v == &Bytes::from("round29"))
        );
    }
    assert!(latest.len() < 150);
    assert_eq!(log.log_end_offset(), 150);
    log.close().unwrap();
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(read_all(&log), latest);
}

#[test]
fn reads_point_into_the_segment_mapping_without_copying() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for i in 0..10 {
        log.append(batch(&format!("z{i}"), 10, 1), 0, 1).unwrap();
    }
    log.flush().unwrap();
    let a = log.read(0, 1 << 20, i64::MAX).unwrap();
    let b = log.read(0, 1 << 20, i64::MAX).unwrap();
    // Two reads share the same bytes: both are views of the mapping.
    assert_eq!(a.data.as_ptr(), b.data.as_ptr());
    // A read further in is the same mapping at the batch's file position.
    let third = log.read(20, 1 << 20, i64::MAX).unwrap();
    let first_two: usize = RecordBatch::iter_batches(a.data.clone())
        .take(2)
        .map(|b| b.unwrap().bytes.len())
        .sum();
    assert_eq!(third.data.as_ptr(), a.data[first_two..].as_ptr());
    // The buffers outlive further appends (which may remap the segment).
    log.append(batch("later", 1, 1), 0, 1).unwrap();
    assert_eq!(RecordBatch::iter_batches(a.data).count(), 10);
}

#[test]
fn idempotent_producer_retries_are_stored_once_even_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let produce = |seq: i32, epoch: i16, tag: &str| {
        BatchBuilder::new(Compression::None)
            .push(Record::new(None, Some(Bytes::from(format!("{tag}-a"))), 1))
            .push(Record::new(None, Some(Bytes::from(format!("{tag}-b"))), 1))
            .producer(42, epoch, seq)
            .build()
            .unwrap()
    };
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let first = log.append(produce(0, 0, "one"), 0, 1).unwrap();
    let retry = log.append(produce(0, 0, "one"), 0, 1).unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (first.base_offset, first.last_offset)
    );
    assert_eq!(log.log_end_offset(), 2, "the retry was not stored again");
    log.append(produce(2, 0, "two"), 0, 1).unwrap();
    assert!(matches!(
        log.append(produce(9, 0, "gap"), 0, 1),
        Err(Error::OutOfOrderSequence {
            expected: 4,
            got: 9,
            ..
        })
    ));
    log.append(produce(0, 1, "new-epoch"), 0, 1).unwrap();
    assert!(matches!(
        log.append(produce(4, 0, "zombie"), 0, 1),
        Err(Error::ProducerFenced { .. })
    ));
    assert_eq!(log.log_end_offset(), 6);
    log.flush().unwrap();
    drop(log);
    // The table is rebuilt from the log: a late retry is still recognised.
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let retry = log.append(produce(0, 1, "new-epoch"), 0, 1).unwrap();
    assert_eq!((retry.base_offset, log.log_end_offset()), (4, 6));
    let values: Vec<_> = read_all(&log).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values.len(), 6);
}

/// Allocated size of a file on disk, in bytes.
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn the_active_segment_allocates_ahead_without_growing_and_sealing_gives_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p-0");
    let mut log = Log::open(&path, LogConfig::default()).unwrap();
    let mut written = 0;
    for i in 0..10 {
        let b = batch(&format!("{i}"), 20, 1);
        written += b.len() as u64;
        log.append(b, 0, 1).unwrap();
    }
    let first = path.join("00000000000000000000.log");
    // The length is what was written; the blocks may run ahead of it.
    assert_eq!(std::fs::metadata(&first).unwrap().len(), written);
    let ahead = allocated(&first);
    log.roll().unwrap();
    // Sealed: no more than the written bytes' blocks stay allocated.
    assert_eq!(std::fs::metadata(&first).unwrap().len(), written);
    let sealed = allocated(&first);
    assert!(
        sealed <= written.next_multiple_of(4096),
        "{sealed} of {written} ({ahead} before)"
    );
    log.append(batch("after", 1, 1), 0, 1).unwrap();
    drop(log);
    let log = Log::open(&path, LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 201);
    assert!(
        log.recovery_report().truncated.is_empty(),
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(read_all(&log).len(), 201);
}
