//! A three-node metadata quorum over real gRPC on loopback: election,
//! replication to every state machine, writes to a follower refused with the
//! leader's id, and failover when the leader stops.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_proto::raft::v1::raft_service_server::RaftServiceServer;
use fjord_raft::{
    FileLogStore, GrpcNetwork, MetadataRequest, MetadataResponse, MetadataStateMachine,
    RaftRpcService, TypeConfig,
};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft};
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

struct Node {
    id: u64,
    raft: Raft<TypeConfig>,
    state: MetadataStateMachine,
    stop: Option<oneshot::Sender<()>>,
}

impl Node {
    async fn start(id: u64, listener: tokio::net::TcpListener, dir: &std::path::Path) -> Node {
        let config = Config {
            cluster_name: "fjord-test".into(),
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            ..Default::default()
        };
        let config = Arc::new(config.validate().unwrap());
        let log = FileLogStore::open(dir).unwrap();
        let state = MetadataStateMachine::open(dir).unwrap();
        let raft = Raft::new(id, config, GrpcNetwork::default(), log, state.clone())
            .await
            .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let service = RaftServiceServer::new(RaftRpcService::new(raft.clone()));
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Node {
            id,
            raft,
            state,
            stop: Some(tx),
        }
    }

    async fn stop(&mut self) {
        self.raft.shutdown().await.unwrap();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    async fn leader(&self, not: Option<u64>) -> u64 {
        let metrics = self
            .raft
            .wait(Some(Duration::from_secs(20)))
            .metrics(
                |m| m.current_leader.is_some_and(|l| Some(l) != not),
                "a leader",
            )
            .await
            .unwrap();
        metrics.current_leader.unwrap()
    }

    async fn applied(&self, index: u64) {
        self.raft
            .wait(Some(Duration::from_secs(20)))
            .applied_index_at_least(Some(index), "applied")
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_and_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = BTreeMap::new();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(
            id,
            BasicNode::new(listener.local_addr().unwrap().to_string()),
        );
        nodes.push(Node::start(id, listener, &dir.path().join(format!("n{id}"))).await);
    }
    nodes[0].raft.initialize(members).await.unwrap();
    let leader = nodes[0].leader(None).await;
    let at = |id: u64| (id - 1) as usize;

    let register = MetadataRequest::RegisterBroker {
        id: 1,
        addr: "broker-1.test:9400".into(),
        rack: None,
    };
    let written = nodes[at(leader)].raft.client_write(register).await.unwrap();
    assert_eq!(written.data, MetadataResponse::Applied);
    for node in &nodes {
        node.applied(written.log_id.index).await;
        assert!(
            node.state.state().brokers.contains_key(&1),
            "node {} has the broker",
            node.id
        );
    }

    // A follower refuses writes and names the leader.
    let follower = nodes.iter().find(|n| n.id != leader).unwrap();
    let refused = follower
        .raft
        .client_write(MetadataRequest::FenceBroker { id: 1 })
        .await
        .unwrap_err();
    match refused {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            assert_eq!(f.leader_id, Some(leader))
        }
        other => panic!("expected ForwardToLeader, got {other:?}"),
    }

    // The leader stops; the other two elect a new one and keep going.
    nodes[at(leader)].stop().await;
    let survivor = nodes.iter().find(|n| n.id != leader).unwrap();
    let new_leader = survivor.leader(Some(leader)).await;
    assert_ne!(new_leader, leader);
    let create = MetadataRequest::CreateTopic {
        name: "t".into(),
        configs: BTreeMap::new(),
        replicas: vec![vec![1]],
    };
    let written = nodes[at(new_leader)]
        .raft
        .client_write(create)
        .await
        .unwrap();
    assert_eq!(written.data, MetadataResponse::Applied);
    for node in nodes.iter().filter(|n| n.id != leader) {
        node.applied(written.log_id.index).await;
        assert!(
            node.state.state().topics.contains_key("t"),
            "node {} has the topic",
            node.id
        );
    }
    for node in nodes.iter_mut().filter(|n| n.id != leader) {
        node.stop().await;
    }
}
