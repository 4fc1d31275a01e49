//! Proposals from any node of a three-node quorum: a follower forwards to
//! the leader, refusals come back as they are, and after the leader stops
//! the others keep accepting proposals.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use fjord_raft::{MetadataNode, MetadataRequest, MetadataResponse};
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

struct Running {
    node: MetadataNode,
    stop: Option<oneshot::Sender<()>>,
}

async fn start(id: u64, listener: tokio::net::TcpListener, dir: &std::path::Path) -> Running {
    let node = MetadataNode::start(id, dir, "test-cluster", None)
        .await
        .unwrap();
    let (raft, metadata) = node.services();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(raft)
            .add_service(metadata)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        node,
        stop: Some(tx),
    }
}

async fn applied_everywhere(
    nodes: &[&Running],
    check: impl Fn(&fjord_raft::MetadataState) -> bool,
) {
    for r in nodes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !check(&r.node.state()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {} never applied it",
                r.node.id()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_takes_proposals_before_and_after_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let mut voters = BTreeMap::new();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        voters.insert(id, listener.local_addr().unwrap().to_string());
        nodes.push(start(id, listener, &dir.path().join(format!("n{id}"))).await);
    }
    nodes[0].node.initialize(voters.clone()).await.unwrap();
    // Initializing again is harmless.
    nodes[0].node.initialize(voters).await.unwrap();
    let leader = nodes[0]
        .node
        .raft()
        .wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.current_leader.is_some(), "leader")
        .await
        .unwrap()
        .current_leader
        .unwrap();
    let follower = nodes.iter().find(|r| r.node.id() != leader).unwrap();

    let register = MetadataRequest::RegisterBroker {
        id: 7,
        addr: "127.0.0.1:1".into(),
        rack: None,
    };
    assert_eq!(
        follower.node.propose(register).await.unwrap(),
        MetadataResponse::Applied
    );
    let create = MetadataRequest::CreateTopic {
        name: "t".into(),
        configs: BTreeMap::new(),
        replicas: vec![vec![7]],
    };
    assert_eq!(
        follower.node.propose(create.clone()).await.unwrap(),
        MetadataResponse::Applied
    );
    // A refusal travels back through the forward unchanged.
    assert!(
        matches!(follower.node.propose(create).await.unwrap(), MetadataResponse::Rejected(r) if r.contains("already exists"))
    );
    applied_everywhere(&nodes.iter().collect::<Vec<_>>(), |s| {
        s.topics.contains_key("t")
    })
    .await;

    // The leader stops: the other two keep taking proposals.
    let gone = nodes.iter_mut().find(|r| r.node.id() == leader).unwrap();
    gone.node.shutdown().await.unwrap();
    let _ = gone.stop.take().unwrap().send(());
    let survivors: Vec<&Running> = nodes.iter().filter(|r| r.node.id() != leader).collect();
    let fence = MetadataRequest::FenceBroker { id: 7 };
    assert_eq!(
        survivors[1].node.propose(fence).await.unwrap(),
        MetadataResponse::Applied
    );
    applied_everywhere(&survivors, |s| s.brokers.get(&7).is_some_and(|b| b.fenced)).await;
    for r in nodes.iter_mut().filter(|r| r.node.id() != leader) {
        r.node.shutdown().await.unwrap();
        let _ = r.stop.take().unwrap().send(());
    }
}
