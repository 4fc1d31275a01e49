//! The gRPC API against a real broker: topics, produce/fetch, bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Node, batch, recrc};
use fjord_proto::v1 as pb;
use fjord_storage::Compression;
use tonic::Code;

#[tokio::test]
async fn topics_are_created_listed_described_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    node.create("orders", 3, &[("retention.ms", "60000")]).await;
    let list = node
        .topics()
        .list_topics(pb::ListTopicsRequest {
            include_internal: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.topics
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        vec!["orders"]
    );
    // The consumer offsets' topic is made on a group's first commit (as in
    // Kafka), and listed only with the internal topics.
    node.groups()
        .commit_offsets(pb::CommitOffsetsRequest {
            group_id: "g".into(),
            member_id: String::new(),
            generation: -1,
            offsets: vec![pb::OffsetCommit {
                topic: "orders".into(),
                partition: 0,
                offset: 0,
                metadata: String::new(),
            }],
        })
        .await
        .unwrap();
    let all = node
        .topics()
        .list_topics(pb::ListTopicsRequest {
            include_internal: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        all.topics
            .iter()
            .any(|t| t.name == "__consumer_offsets" && t.internal)
    );
    let d = node
        .topics()
        .describe_topic(pb::DescribeTopicRequest {
            name: "orders".into(),
            local_only: false,
        })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap();
    assert_eq!(d.partitions.len(), 3);
    assert_eq!(
        d.configs.get("retention.ms").map(String::as_str),
        Some("60000")
    );
    assert!(!d.partitions[0].leader_address.is_empty() || d.partitions[0].leader == 1);

    let create =
        |name: &str, partitions: u32, rf: u32, configs: &[(&str, &str)]| pb::CreateTopicRequest {
            name: name.into(),
            partitions,
            replication_factor: rf,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
    for (request, code, words) in [
        (
            create("orders", 1, 1, &[]),
            Code::AlreadyExists,
            "already exists",
        ),
        (
            create("bad name", 1, 1, &[]),
            Code::InvalidArgument,
            "only ASCII",
        ),
        (create("x", 0, 1, &[]), Code::InvalidArgument, "partitions"),
        (create("x", 1, 3, &[]), Code::InvalidArgument, "single-node"),
        (
            create("x", 1, 1, &[("retention.ms", "soon")]),
            Code::InvalidArgument,
            "retention.ms",
        ),
        (
            create("x", 1, 1, &[("made.up", "1")]),
            Code::InvalidArgument,
            "unknown topic config",
        ),
        (
            create("__mine", 1, 1, &[]),
            Code::InvalidArgument,
            "reserved",
        ),
    ] {
        let e = node.topics().create_topic(request).await.unwrap_err();
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(e.message().contains(words), "{}", e.message());
    }
    let e = node
        .topics()
        .delete_topic(pb::DeleteTopicRequest {
            name: "__consumer_offsets".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    node.topics()
        .delete_topic(pb::DeleteTopicRequest {
            name: "orders".into(),
        })
        .await
        .unwrap();
    let e = node
        .topics()
        .describe_topic(pb::DescribeTopicRequest {
            name: "orders".into(),
            local_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(!dir.path().join("orders-0").exists());
    node.stop().await;
}

#[tokio::test]
async fn batches_and_records_round_trip_with_offsets_and_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    node.create("t", 2, &[]).await;
    let r = node
        .produce_batch("t", 0, batch(Compression::Zstd, &["a", "b"]))
        .await
        .unwrap();
    assert_eq!((r.results[0].base_offset, r.results[0].last_offset), (0, 1));
    let r = node
        .produce_batch("t", 0, batch(Compression::Lz4, &["c"]))
        .await
        .unwrap();
    assert_eq!(r.results[0].base_offset, 2);
    let records = node
        .produce()
        .produce(pb::ProduceRequest {
            topic: "t".into(),
            records: vec![pb::ProduceRecord {
                partition: Some(0),
                value: Some(Bytes::from("d")),
                headers: vec![pb::Header {
                    key: "h".into(),
                    value: Some(Bytes::from("v")),
                }],
                timestamp_ms: 1_800_000_000_000,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(records.results[0].base_offset, 3);
    let got = node.fetch_values("t", 0, 1).await;
    assert_eq!(
        got,
        vec![
            (1, Bytes::from("b")),
            (2, Bytes::from("c")),
            (3, Bytes::from("d"))
        ]
    );

    let lookup = |spec: pb::OffsetSpec, ts: i64| pb::ListOffsetsRequest {
        topic: "t".into(),
        partition: 0,
        spec: spec as i32,
        timestamp_ms: ts,
    };
    let mut f = node.fetch();
    assert_eq!(
        f.list_offsets(lookup(pb::OffsetSpec::Earliest, 0))
            .await
            .unwrap()
            .into_inner()
            .offset,
        0
    );
    assert_eq!(
        f.list_offsets(lookup(pb::OffsetSpec::Latest, 0))
            .await
            .unwrap()
            .into_inner()
            .offset,
        4
    );
    let by_time = f
        .list_offsets(lookup(pb::OffsetSpec::Timestamp, 1_750_000_000_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (by_time.offset, by_time.timestamp_ms),
        (3, 1_800_000_000_000)
    );
    assert_eq!(
        f.list_offsets(lookup(pb::OffsetSpec::Timestamp, 1_900_000_000_000))
            .await
            .unwrap()
            .into_inner()
            .offset,
        -1
    );
    node.stop().await;
}

#[tokio::test]
async fn bad_batches_are_rejected_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    node.create("t", 1, &[]).await;
    node.produce_batch("t", 0, batch(Compression::None, &["ok"]))
        .await
        .unwrap();
    let good = batch(Compression::None, &["x", "y"]).to_vec();
    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let mut bad_length = good.clone();
    bad_length[8..12].copy_from_slice(&(good.len() as i32 + 100).to_be_bytes());
    let mut short_length = good.clone();
    short_length[8..12].copy_from_slice(&10i32.to_be_bytes());
    let mut bad_codec = good.clone();
    bad_codec[22] = 7;
    recrc(&mut bad_codec);
    let mut bad_record = good.clone();
    bad_record[61] = 0x7e; // the first record's length no longer matches its fields
    recrc(&mut bad_record);
    for (name, bytes, words) in [
        ("wrong CRC", bad_crc, "CRC"),
        ("length past the end", bad_length, "more bytes"),
        ("length too small", short_length, "too small"),
        ("unknown codec", bad_codec, "codec"),
        ("record that does not parse", bad_record, "record"),
    ] {
        let e = node
            .produce_batch("t", 0, Bytes::from(bytes.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name}: {}", e.message());
        assert!(e.message().contains(words), "{name}: {}", e.message());
        assert!(
            e.message().contains("t-0"),
            "{name}: names the partition: {}",
            e.message()
        );
        assert_eq!(node.log_end("t", 0).await, 1, "{name}: nothing appended");
        // Only the second of two batches is bad: nothing at all is appended.
        let e = node
            .produce()
            .produce(pb::ProduceRequest {
                topic: "t".into(),
                batches: vec![
                    pb::PartitionBatch {
                        partition: 0,
                        batch: Bytes::from(good.clone()),
                    },
                    pb::PartitionBatch {
                        partition: 0,
                        batch: Bytes::from(bytes),
                    },
                ],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(
            node.log_end("t", 0).await,
            1,
            "{name}: nothing of a half-bad request appended"
        );
    }
    let e = node
        .produce_batch("nope", 0, Bytes::from(good.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = node
        .produce_batch("t", 9, Bytes::from(good.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = node
        .produce_batch("__consumer_offsets", 0, Bytes::from(good))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // The broker is still healthy and accepts good writes.
    assert_eq!(
        node.produce_batch("t", 0, batch(Compression::None, &["after"]))
            .await
            .unwrap()
            .results[0]
            .base_offset,
        1
    );
    node.stop().await;
}

#[tokio::test]
async fn fetch_out_of_range_carries_earliest_and_latest() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    node.create("t", 1, &[]).await;
    node.produce_batch("t", 0, batch(Compression::None, &["a", "b", "c"]))
        .await
        .unwrap();
    let e = node
        .fetch()
        .fetch(pb::FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: 10,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    assert_eq!(e.metadata().get("fjord-earliest-offset").unwrap(), "0");
    assert_eq!(e.metadata().get("fjord-latest-offset").unwrap(), "3");
    let e = node
        .fetch()
        .fetch(pb::FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    let e = node
        .fetch()
        .fetch(pb::FetchRequest {
            topic: "t".into(),
            partition: 5,
            offset: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    node.stop().await;
}

#[tokio::test]
async fn a_waiting_fetch_and_a_tail_are_woken_by_produce() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    node.create("t", 1, &[]).await;
    let mut fetch = node.fetch();
    let waiting = tokio::spawn(async move {
        fetch
            .fetch(pb::FetchRequest {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                max_wait_ms: 30_000,
                min_bytes: 1,
                decode: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    });
    let mut tail = node
        .fetch()
        .tail(pb::TailRequest {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            decode: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    node.produce_batch("t", 0, batch(Compression::None, &["wake"]))
        .await
        .unwrap();
    let woken = waiting.await.unwrap();
    assert_eq!(woken.decoded[0].value.as_deref(), Some(&b"wake"[..]));
    let first = tail.message().await.unwrap().unwrap();
    assert_eq!(first.decoded[0].value.as_deref(), Some(&b"wake"[..]));
    node.produce_batch("t", 0, batch(Compression::None, &["more"]))
        .await
        .unwrap();
    let second = tail.message().await.unwrap().unwrap();
    assert_eq!(
        (second.decoded[0].offset, second.decoded[0].value.as_deref()),
        (1, Some(&b"more"[..]))
    );
    // An empty fetch with no wait answers at once.
    let empty = node
        .fetch()
        .fetch(pb::FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: 2,
            max_wait_ms: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(empty.into_inner().records.is_empty());
    drop(tail);
    tokio::time::timeout(Duration::from_secs(30), node.stop())
        .await
        .unwrap();
}
