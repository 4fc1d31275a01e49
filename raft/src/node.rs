//! A node of the metadata quorum: its Raft, its state machine, the gRPC
//! services to mount on the node's listener, and proposals from any node.
//!
//! A proposal made on a follower is forwarded to the leader over
//! `MetadataService.Propose`; the leader only ever applies proposals
//! locally, so a forward never loops. While there is no leader (an election
//! is running), or the leader a follower names cannot be reached (it just
//! died), a proposal waits and tries again, up to a bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fjord_proto::raft::v1::RaftPayload;
use fjord_proto::raft::v1::metadata_service_client::MetadataServiceClient;
use fjord_proto::raft::v1::metadata_service_server::{MetadataService, MetadataServiceServer};
use fjord_proto::raft::v1::raft_service_server::RaftServiceServer;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft};
use tonic::{Request, Response, Status};

use crate::{
    FileLogStore, GrpcNetwork, MetadataRequest, MetadataResponse, MetadataState,
    MetadataStateMachine, RaftRpcService, TypeConfig,
};

/// Errors of the quorum's public API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metadata store in {dir}: {source}")]
    Store {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
    /// No leader was elected within the wait.
    #[error("the metadata quorum has no leader (is a majority of voters up?)")]
    NoLeader,
    /// The leader could not be reached to forward a proposal.
    #[error("forwarding to the leader {leader} failed: {reason}")]
    Forward { leader: u64, reason: String },
}

/// A leader not acknowledged by a majority for this long has lost it.
const QUORUM_ACK_MAX_MS: u64 = 2_000;

/// How long a proposal waits for a leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Raft timings: the leader's heartbeat, and the range an election
/// timeout is drawn from (a follower that hears no leader for that long
/// stands for election).
const HEARTBEAT_MS: u64 = 100;
const ELECTION_MIN_MS: u64 = 400;
const ELECTION_MAX_MS: u64 = 800;

/// One node of the metadata quorum; cheap to clone.
#[derive(Clone)]
pub struct MetadataNode {
    id: u64,
    raft: Raft<TypeConfig>,
    state: MetadataStateMachine,
    cluster_id: Arc<str>,
    local_address: Option<std::net::IpAddr>,
}

impl MetadataNode {
    /// Opens the node's log and state machine in `dir` and starts its Raft.
    ///
    /// # Errors
    /// `Store` when the files cannot be opened; `Raft` when Raft refuses to
    /// start.
    pub async fn start(
        id: u64,
        dir: &Path,
        cluster_id: &str,
        local_address: Option<std::net::IpAddr>,
    ) -> Result<MetadataNode, Error> {
        let store_err = |source| Error::Store {
            dir: dir.display().to_string(),
            source,
        };
        let log = FileLogStore::open(dir).map_err(store_err)?;
        let state = MetadataStateMachine::open(dir).map_err(store_err)?;
        let config = Config {
            cluster_name: cluster_id.to_string(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_MIN_MS,
            election_timeout_max: ELECTION_MAX_MS,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| Error::Raft(e.to_string()))?);
        let network = GrpcNetwork {
            cluster_id: cluster_id.to_string(),
            local_address,
        };
        let raft = Raft::new(id, config, network, log, state.clone())
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        Ok(MetadataNode {
            id,
            raft,
            state,
            cluster_id: cluster_id.into(),
            local_address,
        })
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The current leader (the controller) and its address, if known.
    pub fn leader(&self) -> Option<(u64, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, addr))
    }

    /// Can the quorum take changes, as far as this node can tell? A
    /// leader needs a majority to have acknowledged it recently; a follower
    /// needs to know a leader.
    pub fn has_quorum(&self) -> bool {
        // Asked on every produce: read the metrics in place, no copy.
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow();
        match metrics.current_leader {
            Some(leader) if leader == self.id => {
                let voters = metrics.membership_config.membership().voter_ids().count();
                voters <= 1
                    || metrics
                        .millis_since_quorum_ack
                        .is_some_and(|ms| ms < QUORUM_ACK_MAX_MS)
            }
            Some(_) => true,
            None => false,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// A watch that wakes when the applied metadata or the leader
    /// changes (not on every Raft heartbeat).
    pub fn watch(&self) -> MetadataWatch {
        MetadataWatch {
            changes: self.raft.metrics(),
            seen: None,
        }
    }

    /// True when this node knows a leader and has applied everything its
    /// log holds: its metadata is current enough to act on as the truth
    /// (to delete data it no longer holds, say).
    pub fn caught_up(&self) -> bool {
        let receiver = self.raft.metrics();
        let m = receiver.borrow();
        m.current_leader.is_some() && m.last_applied.map(|l| l.index) >= m.last_log_index
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The committed metadata as this node has applied it.
    pub fn state(&self) -> MetadataState {
        self.state.state()
    }

    /// Reads the applied metadata in place (no copy); `read` runs under the
    /// state machine's lock, so it must be short and must not block.
    pub fn read_state<R>(&self, read: impl FnOnce(&MetadataState) -> R) -> R {
        self.state.read(read)
    }

    /// The gRPC services other nodes call: Raft RPCs and forwarded proposals.
    pub fn services(
        &self,
    ) -> (
        RaftServiceServer<RaftRpcService>,
        MetadataServiceServer<ProposeService>,
    ) {
        let raft = RaftServiceServer::new(
            RaftRpcService::new(self.raft.clone()).with_cluster_id(self.cluster_id.to_string()),
        )
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
        (
            raft,
            MetadataServiceServer::new(ProposeService { node: self.clone() }),
        )
    }

    /// Forms the quorum of `voters` (id → gRPC address). Done once, on one
    /// node; a quorum that exists already is left as it is.
    ///
    /// # Errors
    /// `Raft` for anything but "already initialized".
    pub async fn initialize(&self, voters: BTreeMap<u64, String>) -> Result<(), Error> {
        let members: BTreeMap<u64, BasicNode> = voters
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// Applies `request` through the quorum, from any node.
    ///
    /// # Errors
    /// `NoLeader` when no leader appears in time; `Forward` when the leader
    /// cannot be reached; `Raft` when Raft fails.
    pub async fn propose(&self, request: MetadataRequest) -> Result<MetadataResponse, Error> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            match self.propose_local(request.clone()).await {
                Ok(response) => return Ok(response),
                Err(Some((leader, addr))) => {
                    match forward(
                        leader,
                        &addr,
                        &self.cluster_id,
                        self.local_address,
                        &request,
                    )
                    .await
                    {
                        Ok(response) => return Ok(response),
                        // The leader may have just died: retry while an
                        // election can still name another one.
                        Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                        Err(e) => {
                            tracing::debug!("{e}; retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                Err(None) if tokio::time::Instant::now() < deadline => {
                    let _ = self
                        .raft
                        .wait(Some(Duration::from_millis(500)))
                        .metrics(|m| m.current_leader.is_some(), "a leader")
                        .await;
                }
                Err(None) => return Err(Error::NoLeader),
            }
        }
    }

    /// Writes on this node if it leads; else names the leader, if known.
    async fn propose_local(
        &self,
        request: MetadataRequest,
    ) -> Result<MetadataResponse, Option<(u64, String)>> {
        match self.raft.client_write(request).await {
            Ok(written) => Ok(written.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(f
                .leader_id
                .zip(f.leader_node)
                .map(|(id, node)| (id, node.addr))),
            Err(e) => {
                tracing::warn!("metadata proposal failed: {e}");
                Err(None)
            }
        }
    }

    /// Stops standing for election: a node on its way out must not start
    /// elections (each a round of vote requests, to nodes that may be
    /// gone) nor take leadership. It still votes, and follows or leads as
    /// it did.
    pub fn stop_campaigning(&self) {
        self.raft.runtime_config().elect(false);
    }

    /// Stops this node's Raft.
    ///
    /// # Errors
    /// `Raft` when the shutdown fails.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| Error::Raft(e.to_string()))
    }
}

async fn forward(
    leader: u64,
    addr: &str,
    cluster_id: &str,
    local_address: Option<std::net::IpAddr>,
    request: &MetadataRequest,
) -> Result<MetadataResponse, Error> {
    let fail = |reason: String| Error::Forward { leader, reason };
    let json = serde_json::to_vec(request).map_err(|e| fail(e.to_string()))?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| fail(e.to_string()))?
        .local_address(local_address)
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut client = MetadataServiceClient::new(channel);
    let mut call = Request::new(RaftPayload { json: json.into() });
    if let Ok(value) = cluster_id.parse() {
        call.metadata_mut()
            .insert(crate::network::CLUSTER_ID_HEADER, value);
    }
    let reply = client
        .propose(call)
        .await
        .map_err(|e| fail(e.message().to_string()))?;
    let result: Result<MetadataResponse, String> =
        serde_json::from_slice(&reply.into_inner().json).map_err(|e| fail(e.to_string()))?;
    result.map_err(fail)
}

/// Wakes on applied metadata and leader changes.
pub struct MetadataWatch {
    changes: tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, BasicNode>>,
    seen: Option<(Option<u64>, Option<u64>)>,
}

impl MetadataWatch {
    /// Returns once the applied metadata or the leader moved on from what
    /// the last call saw (at once, the first time); `false` once the node
    /// has stopped.
    ///
    /// # Cancel safety
    /// Safe: it only waits.
    pub async fn changed(&mut self) -> bool {
        loop {
            let now = {
                let m = self.changes.borrow_and_update();
                (m.last_applied.map(|l| l.index), m.current_leader)
            };
            if self.seen != Some(now) {
                self.seen = Some(now);
                return true;
            }
            if self.changes.changed().await.is_err() {
                return false;
            }
        }
    }
}

/// `MetadataService`: proposals forwarded by followers.
#[derive(Clone)]
pub struct ProposeService {
    node: MetadataNode,
}

#[tonic::async_trait]
impl MetadataService for ProposeService {
    async fn propose(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        crate::service::check_cluster_id(&self.node.cluster_id, &request)?;
        let request: MetadataRequest = serde_json::from_slice(&request.into_inner().json)
            .map_err(|e| Status::invalid_argument(format!("not a metadata request: {e}")))?;
        // Only local: a node that lost leadership meanwhile answers with an
        // error, and the proposer tries again.
        let result = self
            .node
            .propose_local(request)
            .await
            .map_err(|leader| match leader {
                Some((id, _)) => format!("node {} is not the leader (node {id} is)", self.node.id),
                None => format!("node {} is not the leader and knows none", self.node.id),
            });
        let json = serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(RaftPayload { json: json.into() }))
    }
}
