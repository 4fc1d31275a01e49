//! A writer process killed with SIGKILL mid-append: what reopens is a prefix
//! of what was written, with every acknowledged (flushed) batch present.
//!
//! The child is this test binary re-executed with `FJORD_KILL_WRITER_DIR`
//! set: it appends batches of 3 records forever, flushing each, and prints
//! the last offset of each flushed batch.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use bytes::Bytes;
use fjord_storage::{BatchBuilder, Compression, Log, LogConfig, Record, RecordBatch};

const CHILD_ENV: &str = "FJORD_KILL_WRITER_DIR";

fn value(i: u64) -> Bytes {
    Bytes::from(format!("record-{i:08}-{}", "x".repeat((i % 50) as usize)))
}

#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let config = LogConfig {
        segment_bytes: 64 << 10,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir, config).unwrap();
    let mut next = 0u64;
    loop {
        let mut b = BatchBuilder::new(if next.is_multiple_of(2) {
            Compression::None
        } else {
            Compression::Lz4
        });
        for _ in 0..3 {
            b.add(Record::new(None, Some(value(next)), 1));
            next += 1;
        }
        let info = log.append(b.build().unwrap(), 0, 1).unwrap();
        log.flush().unwrap();
        println!("{}", info.last_offset);
    }
}

#[test]
fn sigkill_mid_append_leaves_a_prefix_with_every_flushed_batch() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = -1i64;
        // Wait (on output, not time) for some acknowledged batches.
        let want = 200 + round * 300;
        while acked < want {
            let line = lines.next().expect("writer exited early").unwrap();
            if let Ok(offset) = line.trim().parse::<i64>() {
                acked = offset;
            }
        }
        Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        for line in lines.map_while(Result::ok) {
            if let Ok(offset) = line.trim().parse::<i64>() {
                acked = acked.max(offset);
            }
        }

        let log = Log::open(
            dir.path(),
            LogConfig {
                segment_bytes: 64 << 10,
                ..LogConfig::default()
            },
        )
        .unwrap();
        assert!(
            log.log_end_offset() > acked,
            "round {round}: end {} but {acked} was acknowledged",
            log.log_end_offset()
        );
        let mut offset = 0;
        let mut expect = 0u64;
        while offset < log.log_end_offset() {
            let r = log.read(offset, 1 << 20, i64::MAX).unwrap();
            for batch in RecordBatch::iter_batches(r.data) {
                for rec in RecordBatch::parse(batch.unwrap().bytes)
                    .unwrap()
                    .records()
                    .unwrap()
                {
                    assert_eq!(rec.offset as u64, expect);
                    assert_eq!(
                        rec.value.unwrap(),
                        value(expect),
                        "round {round}: offset {expect}"
                    );
                    expect += 1;
                }
            }
            offset = r.next_offset;
        }
        assert_eq!(expect as i64, log.log_end_offset());
    }
}
