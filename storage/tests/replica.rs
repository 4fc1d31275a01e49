//! Follower logs: byte-for-byte replication and cutting a diverged tail by
//! leader epochs.
#![allow(clippy::unwrap_used)]

mod common;

use common::{batch, read_all};
use fjord_storage::{Error, Log, LogConfig, RecordBatch};

/// Copies every batch from `offset` on from `leader` into `follower`.
fn replicate(leader: &Log, follower: &mut Log) {
    let mut offset = follower.log_end_offset();
    while offset < leader.log_end_offset() {
        let read = leader.read(offset, 1 << 20, i64::MAX).unwrap();
        for b in RecordBatch::iter_batches(read.data) {
            let b = b.unwrap();
            if b.header.base_offset >= offset {
                follower.append_replicated(b.bytes, 1).unwrap();
            }
        }
        offset = read.next_offset;
    }
}

fn raw(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20, i64::MAX).unwrap();
        out.extend_from_slice(&r.data);
        offset = r.next_offset;
    }
    out
}

#[test]
fn a_diverged_follower_cuts_its_tail_at_the_leaders_epoch_end_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Log::open(dir.path().join("a"), LogConfig::default()).unwrap();
    let mut b = Log::open(dir.path().join("b"), LogConfig::default()).unwrap();
    // A leads epoch 1; B copies offsets 0..5.
    for i in 0..5 {
        a.append(batch(&format!("e1-{i}"), 1, 1), 1, 1).unwrap();
    }
    replicate(&a, &mut b);
    assert_eq!(raw(&a), raw(&b), "replicas are byte for byte the same");
    // A appends two more nobody copies, then fails; B leads epoch 2.
    a.append(batch("lost-5", 1, 1), 1, 1).unwrap();
    a.append(batch("lost-6", 1, 1), 1, 1).unwrap();
    for i in 5..8 {
        b.append(batch(&format!("e2-{i}"), 1, 1), 2, 1).unwrap();
    }
    assert_eq!(b.leader_epochs(), vec![(1, 0), (2, 5)]);
    // A comes back as a follower: its last epoch is 1; B says epoch 1 ended at 5.
    let a_epoch = a.leader_epochs().last().unwrap().0;
    let answer = b.end_offset_for_epoch(a_epoch);
    assert_eq!(answer, Some((1, 5)));
    let cut = a.divergence_point(answer);
    assert_eq!(cut, 5);
    a.truncate_to(cut).unwrap();
    assert_eq!(a.log_end_offset(), 5);
    replicate(&b, &mut a);
    assert_eq!(raw(&a), raw(&b));
    assert_eq!(a.leader_epochs(), vec![(1, 0), (2, 5)]);
    let values: Vec<_> = read_all(&a)
        .into_iter()
        .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
        .collect();
    assert!(values.iter().all(|v| !v.starts_with("lost")), "{values:?}");
    // Reopening keeps the follower's epochs.
    drop(a);
    let a = Log::open(dir.path().join("a"), LogConfig::default()).unwrap();
    assert_eq!(a.leader_epochs(), vec![(1, 0), (2, 5)]);
    assert_eq!(a.end_offset_for_epoch(1), Some((1, 5)));
    assert_eq!(a.end_offset_for_epoch(7), Some((2, 8)));
    assert_eq!(a.end_offset_for_epoch(0), None);
}

#[test]
fn replicated_batches_must_start_at_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader = Log::open(dir.path().join("l"), LogConfig::default()).unwrap();
    let mut follower = Log::open(dir.path().join("f"), LogConfig::default()).unwrap();
    leader.append(batch("x", 2, 1), 0, 1).unwrap();
    leader.append(batch("y", 2, 1), 0, 1).unwrap();
    let second = RecordBatch::iter_batches(leader.read(2, 1 << 20, i64::MAX).unwrap().data)
        .next()
        .unwrap()
        .unwrap();
    match follower.append_replicated(second.bytes, 1) {
        Err(Error::OffsetMismatch {
            expected: 0,
            got: 2,
        }) => {}
        other => panic!("expected an offset mismatch, got {other:?}"),
    }
    assert_eq!(follower.log_end_offset(), 0);
}
