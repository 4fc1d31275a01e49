//! Consumer groups over gRPC, restarts, retention and a full disk.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Node, batch, eventually};
use fjord_proto::v1 as pb;
use fjord_storage::Compression;
use tonic::Code;

fn join(group: &str, member: &str, session_ms: u32) -> pb::JoinGroupRequest {
    pb::JoinGroupRequest {
        group_id: group.into(),
        member_id: member.into(),
        client_id: "test".into(),
        topics: vec!["t".into()],
        session_timeout_ms: session_ms,
        rebalance_timeout_ms: 10_000,
    }
}

fn partitions(r: &pb::JoinGroupResponse) -> Vec<u32> {
    r.assignment
        .iter()
        .flat_map(|a| a.partitions.clone())
        .collect()
}

#[tokio::test]
async fn members_split_partitions_rebalance_on_leave_and_stale_generations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    node.create("t", 4, &[]).await;
    let mut g = node.groups();
    let a = g
        .join_group(join("g", "", 10_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(partitions(&a), vec![0, 1, 2, 3]);

    // b's join waits until a rejoins; a learns of it from its heartbeat.
    let mut gb = node.groups();
    let b_join = tokio::spawn(async move {
        gb.join_group(join("g", "", 10_000))
            .await
            .unwrap()
            .into_inner()
    });
    let mut hb = pb::HeartbeatRequest {
        group_id: "g".into(),
        member_id: a.member_id.clone(),
        generation: a.generation,
    };
    assert!(
        eventually(10, || {
            let (mut g, hb) = (node.groups(), hb.clone());
            async move { g.heartbeat(hb).await.unwrap().into_inner().rebalance }
        })
        .await
    );
    let a2 = g
        .join_group(join("g", &a.member_id, 10_000))
        .await
        .unwrap()
        .into_inner();
    let b = b_join.await.unwrap();
    assert_eq!(a2.generation, b.generation);
    let mut all = [partitions(&a2), partitions(&b)].concat();
    all.sort();
    assert_eq!(all, vec![0, 1, 2, 3]);
    assert_eq!(partitions(&a2).len(), 2);

    // The old generation is refused for heartbeats and commits.
    let e = g.heartbeat(hb.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let stale_commit = pb::CommitOffsetsRequest {
        group_id: "g".into(),
        member_id: a.member_id.clone(),
        generation: a.generation,
        offsets: vec![pb::OffsetCommit {
            topic: "t".into(),
            partition: 0,
            offset: 5,
            metadata: String::new(),
        }],
    };
    assert_eq!(
        g.commit_offsets(stale_commit).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    hb.generation = a2.generation;
    assert!(!g.heartbeat(hb).await.unwrap().into_inner().rebalance);

    // b leaves; a rejoins and owns everything again.
    g.leave_group(pb::LeaveGroupRequest {
        group_id: "g".into(),
        member_id: b.member_id.clone(),
    })
    .await
    .unwrap();
    let a3 = g
        .join_group(join("g", &a.member_id, 10_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(partitions(&a3), vec![0, 1, 2, 3]);
    let d = g
        .describe_group(pb::DescribeGroupRequest {
            group_id: "g".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((d.state.as_str(), d.members.len()), ("Stable", 1));
    node.stop().await;
}

#[tokio::test]
async fn a_member_that_stops_heartbeating_is_expired() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    node.create("t", 1, &[]).await;
    node.groups()
        .join_group(join("quiet", "", 1_000))
        .await
        .unwrap();
    assert!(
        eventually(20, || {
            let mut g = node.groups();
            async move {
                let d = g
                    .describe_group(pb::DescribeGroupRequest {
                        group_id: "quiet".into(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                d.members.is_empty()
            }
        })
        .await
    );
    node.stop().await;
}

#[tokio::test]
async fn offsets_and_topics_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    node.create("t", 2, &[]).await;
    for _ in 0..3 {
        node.produce_batch("t", 1, batch(Compression::None, &["a", "b"]))
            .await
            .unwrap();
    }
    let commit = pb::CommitOffsetsRequest {
        group_id: "standalone".into(),
        member_id: String::new(),
        generation: -1,
        offsets: vec![
            pb::OffsetCommit {
                topic: "t".into(),
                partition: 1,
                offset: 4,
                metadata: "m".into(),
            },
            pb::OffsetCommit {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                metadata: String::new(),
            },
        ],
    };
    node.groups().commit_offsets(commit.clone()).await.unwrap();
    let mut later = commit;
    later.offsets.truncate(1);
    later.offsets[0].offset = 5;
    node.groups().commit_offsets(later).await.unwrap();
    let bad = pb::CommitOffsetsRequest {
        group_id: "standalone".into(),
        member_id: String::new(),
        generation: -1,
        offsets: vec![pb::OffsetCommit {
            topic: "missing".into(),
            partition: 0,
            offset: 1,
            metadata: String::new(),
        }],
    };
    assert_eq!(
        node.groups().commit_offsets(bad).await.unwrap_err().code(),
        Code::NotFound
    );
    node.stop().await;

    let node = Node::start(dir.path()).await;
    assert_eq!(node.log_end("t", 1).await, 6);
    let offsets = node
        .groups()
        .fetch_offsets(pb::FetchOffsetsRequest {
            group_id: "standalone".into(),
            partitions: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .offsets;
    let p1 = offsets.iter().find(|o| o.partition == 1).unwrap();
    assert_eq!((p1.offset, p1.metadata.as_str()), (5, "m"));
    assert_eq!(offsets.iter().find(|o| o.partition == 0).unwrap().offset, 0);
    let d = node
        .groups()
        .describe_group(pb::DescribeGroupRequest {
            group_id: "standalone".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let lag = d.offsets.iter().find(|o| o.partition == 1).unwrap();
    assert_eq!(
        (lag.committed_offset, lag.log_end_offset, lag.lag),
        (5, 6, 1)
    );
    let groups = node
        .groups()
        .list_groups(pb::ListGroupsRequest {})
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert!(
        groups
            .iter()
            .any(|g| g.group_id == "standalone" && g.state == "Empty")
    );
    node.stop().await;
}

#[tokio::test]
async fn retention_by_size_runs_on_its_timer() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with(dir.path(), |c| {
        c.retention_check_interval = Duration::from_millis(50)
    })
    .await;
    node.create(
        "r",
        1,
        &[("segment.bytes", "2048"), ("retention.bytes", "4096")],
    )
    .await;
    let values: Vec<String> = (0..10).map(|i| format!("{i:0>100}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    for _ in 0..20 {
        node.produce_batch("r", 0, batch(Compression::None, &values))
            .await
            .unwrap();
    }
    assert!(
        eventually(20, || {
            let mut t = node.topics();
            async move {
                let d = t
                    .describe_topic(pb::DescribeTopicRequest {
                        name: "r".into(),
                        local_only: false,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                d.topic.unwrap().partitions[0].log_start_offset > 0
            }
        })
        .await
    );
    assert_eq!(node.log_end("r", 0).await, 200);
    node.stop().await;
}

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_produce_cleanly_and_writes_resume_when_space_frees() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("skipped: needs root to mount tmpfs");
        return;
    }
    let _guard = Tmpfs(dir.path().to_path_buf());
    let node = Node::start(dir.path()).await;
    node.create("full", 1, &[]).await;
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1_000_000]).unwrap();
    let big = "x".repeat(100_000);
    let mut appended = 0;
    let failure = loop {
        let r = node
            .produce_batch("full", 0, batch(Compression::None, &[&big]))
            .await
            .unwrap();
        let result = &r.results[0];
        if result.error != pb::ErrorCode::ErrorNone as i32 {
            break result.clone();
        }
        appended += 1;
        assert!(appended < 100, "the disk never filled");
    };
    assert_eq!(failure.error, pb::ErrorCode::ErrorStorage as i32);
    assert!(
        failure.error_message.contains("No space left"),
        "{}",
        failure.error_message
    );
    // Nothing partial is visible: exactly the acknowledged batches, whole.
    assert_eq!(node.log_end("full", 0).await, appended);
    let mut offset = 0;
    while offset < appended {
        let got = node.fetch_values("full", 0, offset).await;
        assert!(got.iter().all(|(_, v)| v.len() == big.len()));
        offset += got.len() as i64;
    }
    assert_eq!(offset, appended);
    std::fs::remove_file(&filler).unwrap();
    let after = node
        .produce_batch("full", 0, batch(Compression::None, &["small"]))
        .await
        .unwrap();
    assert_eq!(
        after.results[0].error,
        pb::ErrorCode::ErrorNone as i32,
        "{}",
        after.results[0].error_message
    );
    assert_eq!(after.results[0].base_offset, appended);
    let mut health =
        fjord_proto::v1::health_service_client::HealthServiceClient::new(node.channel.clone());
    assert!(
        health
            .check(pb::HealthCheckRequest {})
            .await
            .unwrap()
            .into_inner()
            .serving
    );
    node.stop().await;
}
