//! Role changes of a [`Partition`] (the cluster side).

use std::time::Duration;

use bytes::Bytes;
use fjord_storage::{Compression, LogConfig};

use super::Partition;
use crate::api::NewRecord;
use crate::batch::build_batch;
use crate::metrics::Metrics;

fn records(n: usize) -> Bytes {
    let records = (0..n)
        .map(|i| NewRecord {
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Vec::new(),
            timestamp_ms: 0,
        })
        .collect();
    build_batch("t", 0, records, Compression::None).expect("a batch")
}

#[tokio::test]
async fn a_new_leader_serves_reads_only_once_its_copied_tail_is_below_the_hw() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let p = Partition::open(dir.path().join("t-0"), 0, LogConfig::default())
        .expect("the partition opens");
    assert!(p.become_follower(1, 2).is_some());
    // Copied from the leader and acknowledged there, not flushed here yet.
    p.append_replicated(records(5)).expect("the copy appends");
    assert_eq!(p.read_log().log_end_offset(), 5);
    assert!(p.read_log().recovery_point() < 5);

    // The leader dies; this replica leads alone.
    let (became, actions) = p.become_leader(1, 2, &[1, 2], &[1], 1, Duration::from_secs(10));
    assert!(became);
    for action in actions {
        if let crate::replica::replication::ReplicationAction::AdvanceHighWatermark(hw) = action {
            p.advance_hw(hw);
        }
    }
    // Answering now would give an end offset below acknowledged records.
    assert!(!p.serves_reads());

    let actions = p
        .flush_copied_tail(2, &Metrics::default())
        .await
        .expect("the tail flushes");
    let mut proposed = false;
    for action in actions {
        match action {
            crate::replica::replication::ReplicationAction::AdvanceHighWatermark(hw) => {
                p.advance_hw(hw);
            }
            crate::replica::replication::ReplicationAction::ProposeIsr(_) => proposed = true,
        }
    }
    assert!(!proposed);
    assert_eq!(p.high_watermark(), 5);
    assert!(p.serves_reads());
}

#[tokio::test]
async fn a_leader_deposed_after_its_write_says_the_outcome_is_unknown_not_that_it_does_not_lead() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let p = Partition::open(dir.path().join("t-0"), 0, LogConfig::default())
        .expect("the partition opens");
    // Leader at epoch 1 with a follower in the ISR: nothing commits alone.
    let (became, _) = p.become_leader(1, 1, &[1, 2], &[1, 2], 1, Duration::from_secs(10));
    assert!(became);
    let (info, epoch, _) = p
        .append_as_leader(records(3), crate::api::Acks::All, &Metrics::default())
        .await
        .expect("the leader appends");
    // Written here, then the role goes to node 2 before the HW passed it:
    // the new leader may hold it, so asking again could append it twice.
    assert!(p.become_follower(2, 2).is_some());
    let r = p
        .await_committed(info.last_offset, epoch, Duration::from_secs(10))
        .await;
    assert!(matches!(r, Err(super::Refusal::Deposed)), "{r:?}");
}
