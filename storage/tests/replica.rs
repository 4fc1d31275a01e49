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

/// The leader's batches from `offset` on, back to back, as one buffer.
fn run_from(leader: &Log, offset: i64) -> bytes::Bytes {
    let mut out = Vec::new();
    let mut at = offset;
    while at < leader.log_end_offset() {
        let r = leader.read(at, 1 << 20, i64::MAX).unwrap();
        out.extend_from_slice(&r.data);
        at = r.next_offset;
    }
    out.into()
}

#[test]
fn a_run_of_batches_is_written_across_segment_rolls_as_the_leader_stored_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader = Log::open(dir.path().join("l"), LogConfig::default()).unwrap();
    for i in 0..40 {
        leader
            .append(
                batch(&format!("{i}{}", "v".repeat(100)), 3, 1000 + i),
                (i / 10) as i32,
                1,
            )
            .unwrap();
    }
    let run = run_from(&leader, 0);
    // The follower's segments are small, so the run rolls several times.
    let mut follower = Log::open(dir.path().join("f"), common::small_segments()).unwrap();
    assert!(run.len() > 3 * 4096, "{} bytes", run.len());
    assert_eq!(follower.append_replicated(run, 1).unwrap(), 40);
    assert_eq!(follower.log_end_offset(), 120);
    assert!(
        follower.segment_count() >= 4,
        "{}",
        follower.segment_count()
    );
    assert_eq!(raw(&leader), raw(&follower), "byte for byte the same");
    assert_eq!(read_all(&leader), read_all(&follower));
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
    for offset in [0, 1, 59, 61, 119] {
        let (l, f) = (
            leader.read(offset, 1, i64::MAX).unwrap(),
            follower.read(offset, 1, i64::MAX).unwrap(),
        );
        assert_eq!(l.data, f.data, "the batch holding {offset}");
    }
    let timestamp = follower.offset_for_timestamp(1025).unwrap().unwrap();
    assert_eq!(timestamp.offset, 75);
    // Its indexes and epochs survive a reopen.
    drop(follower);
    let follower = Log::open(dir.path().join("f"), common::small_segments()).unwrap();
    assert_eq!(follower.log_end_offset(), 120);
    assert_eq!(read_all(&leader), read_all(&follower));
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
}

#[test]
fn a_bad_batch_in_a_run_keeps_the_batches_before_it_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader = Log::open(dir.path().join("l"), LogConfig::default()).unwrap();
    for i in 0..3 {
        leader.append(batch(&format!("v{i}"), 2, 1), 0, 1).unwrap();
    }
    let good = run_from(&leader, 0);
    let first = RecordBatch::iter_batches(good.clone())
        .next()
        .unwrap()
        .unwrap()
        .bytes
        .len();
    type Case = (&'static str, Vec<u8>, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        (
            "a flipped byte in the second batch",
            {
                let mut v = good.to_vec();
                let at = first + 70;
                v[at] ^= 0xff;
                v
            },
            |e| matches!(e, Error::CorruptBatch(m) if m.contains("CRC")),
        ),
        (
            "a gap: the second batch left out",
            {
                let mut v = good[..first].to_vec();
                let third_at = good.len() - (good.len() - first) / 2;
                v.extend_from_slice(&good[third_at..]);
                v
            },
            |e| {
                matches!(
                    e,
                    Error::OffsetMismatch {
                        expected: 2,
                        got: 4
                    }
                )
            },
        ),
        (
            "half a batch at the end",
            {
                let mut v = good[..first].to_vec();
                v.extend_from_slice(&good[first..first + 30]);
                v
            },
            |e| matches!(e, Error::CorruptBatch(m) if m.contains("after the last whole batch")),
        ),
    ];
    for (i, (what, bytes, expected)) in cases.into_iter().enumerate() {
        let mut follower =
            Log::open(dir.path().join(format!("f{i}")), LogConfig::default()).unwrap();
        match follower.append_replicated(bytes.into(), 1) {
            Err(e) if expected(&e) => {}
            other => panic!("{what}: unexpected {other:?}"),
        }
        assert_eq!(follower.log_end_offset(), 2, "{what}: only the first batch");
        assert_eq!(raw(&follower), good[..first].to_vec(), "{what}");
        // The rest still appends once it comes whole.
        assert_eq!(
            follower.append_replicated(good.slice(first..), 1).unwrap(),
            2,
            "{what}"
        );
        assert_eq!(raw(&follower), good.to_vec(), "{what}");
    }
}
