//! Idempotent producers over gRPC: retries stored once, gaps and stale
//! epochs refused with their own error codes, ids unique across restarts.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::Node;
use fjord_proto::v1 as pb;
use fjord_storage::{BatchBuilder, Compression, Record};

fn batch(producer_id: i64, epoch: i16, sequence: i32, value: &str) -> Bytes {
    BatchBuilder::new(Compression::None)
        .push(Record::new(None, Some(Bytes::from(value.to_string())), 1))
        .producer(producer_id, epoch, sequence)
        .build()
        .unwrap()
}

#[tokio::test]
async fn retries_are_stored_once_and_gaps_and_stale_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    node.create("t", 1, &[]).await;
    let first = node
        .produce()
        .init_producer_id(pb::InitProducerIdRequest {})
        .await
        .unwrap()
        .into_inner();
    let second = node
        .produce()
        .init_producer_id(pb::InitProducerIdRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_ne!(first.producer_id, second.producer_id);
    let pid = first.producer_id;

    let sent = node
        .produce_batch("t", 0, batch(pid, 0, 0, "a"))
        .await
        .unwrap()
        .results[0]
        .clone();
    let retry = node
        .produce_batch("t", 0, batch(pid, 0, 0, "a"))
        .await
        .unwrap()
        .results[0]
        .clone();
    assert_eq!((retry.error, retry.base_offset), (0, sent.base_offset));
    assert_eq!(node.log_end("t", 0).await, 1, "a retry is not stored twice");

    let gap = node
        .produce_batch("t", 0, batch(pid, 0, 5, "gap"))
        .await
        .unwrap()
        .results[0]
        .clone();
    assert_eq!(
        gap.error,
        pb::ErrorCode::ErrorOutOfOrderSequence as i32,
        "{}",
        gap.error_message
    );
    assert!(
        gap.error_message.contains("expected sequence 1"),
        "{}",
        gap.error_message
    );
    node.produce_batch("t", 0, batch(pid, 1, 0, "epoch 1"))
        .await
        .unwrap();
    let stale = node
        .produce_batch("t", 0, batch(pid, 0, 1, "zombie"))
        .await
        .unwrap()
        .results[0]
        .clone();
    assert_eq!(
        stale.error,
        pb::ErrorCode::ErrorProducerFenced as i32,
        "{}",
        stale.error_message
    );
    assert_eq!(node.log_end("t", 0).await, 2);
    node.stop().await;

    // After a restart ids keep growing and the retry is still recognised.
    let node = Node::start(dir.path()).await;
    let third = node
        .produce()
        .init_producer_id(pb::InitProducerIdRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(third.producer_id > second.producer_id);
    let retry = node
        .produce_batch("t", 0, batch(pid, 1, 0, "epoch 1"))
        .await
        .unwrap()
        .results[0]
        .clone();
    assert_eq!((retry.error, retry.base_offset), (0, 1));
    assert_eq!(node.log_end("t", 0).await, 2);
    node.stop().await;
}
