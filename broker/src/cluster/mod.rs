//! The broker in a cluster: forming or joining the metadata quorum,
//! registration and heartbeats, the controller's loop, and the node's view
//! of who leads what.
//!
//! # How the pieces meet
//! - Every node runs a [`MetadataNode`]; the Raft leader is the
//!   **controller**. Brokers send it heartbeats; it registers them, fences
//!   those whose heartbeats lapse and elects partition leaders from the ISR
//!   (`fjord_raft::decide`), proposing each change through the quorum.
//! - Each node applies the committed metadata to its own partitions
//!   (`reconcile.rs`): it opens the replicas it holds, leads those it is
//!   named leader of (at the named leader epoch) and follows the others,
//!   pulling from the leader over `ReplicaService.Fetch` (`fetcher.rs`).
//! - A broker that cannot reach the controller for a session timeout
//!   fences itself for `acks=0|1` writes until it is heard again, so a node
//!   cut off from the quorum does not acknowledge writes on its own word.
//!   `acks=all` writes go on: they complete only once the ISR the metadata
//!   last committed has them, so they stay safe, and partitions whose ISR
//!   is intact keep serving when the quorum itself is lost.
//!
//! # Layout
//! This file: settings, identity and the [`Cluster`] handle; `formation`:
//! bootstrap, fixed peers and joins; `loops`: heartbeats, controller
//! rounds, metadata application, ISR checks, controlled shutdown;
//! `reconcile`: metadata → local replicas; `fetcher`: followers; `admin`:
//! topics, status, joins and heartbeats on the controller, scaling.
//!
//! # Files
//! `<data-dir>/cluster.json` records the cluster id and this node's id on
//! first start; a later start with other ids is refused. The quorum's log
//! and snapshots live in `<data-dir>/raft/`.

mod admin;
mod fetch_stream;
mod fetcher;
mod formation;
mod loops;
mod reconcile;

pub(crate) use admin::wait_applied;
pub use admin::{
    ClusterStatus, ControllerRedirect, JoinReply, NodeStatus, PartitionMove, UnderReplicated,
};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use fjord_raft::{CLUSTER_ID_HEADER, MetadataNode, MetadataRequest, MetadataResponse};
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::broker::Broker;
use crate::{Error, Result};

/// How a node finds its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formation {
    /// Start a new cluster with this node as its only voter; others join.
    Bootstrap,
    /// A fixed set of voters (id → gRPC address, this node included); the
    /// lowest id forms the quorum.
    Peers(BTreeMap<u64, String>),
    /// Join the cluster that the node at this address belongs to.
    Join(String),
}

/// Settings of a clustered node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `None`: adopt the cluster's (joining), or make one up (bootstrap).
    pub cluster_id: Option<String>,
    pub formation: Formation,
    pub rack: Option<String>,
    pub heartbeat_interval: Duration,
    /// A broker silent for this long is fenced.
    pub session_timeout: Duration,
    /// An ISR member that has not caught up for this long leaves the ISR.
    pub replica_lag_max: Duration,
    /// How long an `acks=all` produce waits for the ISR.
    pub produce_timeout: Duration,
    /// Voters the quorum grows to as nodes join (3 or 5).
    pub max_voters: usize,
    /// Source address of connections to other nodes (`None`: the OS
    /// picks), for hosts with several addresses.
    pub outbound_address: Option<std::net::IpAddr>,
    /// Bytes per second a replica outside the ISR (a new replica of a
    /// reassignment, or one that fell behind) copies at most; `None`: no
    /// limit.
    pub catch_up_throttle: Option<u64>,
}

impl ClusterConfig {
    pub fn new(formation: Formation) -> ClusterConfig {
        ClusterConfig {
            cluster_id: None,
            formation,
            rack: None,
            heartbeat_interval: Duration::from_millis(250),
            session_timeout: Duration::from_millis(1500),
            replica_lag_max: Duration::from_secs(10),
            produce_timeout: Duration::from_secs(30),
            max_voters: 3,
            catch_up_throttle: None,
            outbound_address: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    cluster_id: String,
    node_id: u64,
}

const IDENTITY_FILE: &str = "cluster.json";

/// HTTP/2 flow-control window for node-to-node connections.
pub(crate) const WINDOW: u32 = 16 << 20;
/// HTTP/2 frame size this node takes: a replica fetch's megabyte goes in a
/// few frames instead of 16 KiB ones (each frame costs a header, a
/// flow-control step and a pass through the codec on both sides).
pub(crate) const FRAME: u32 = 1 << 20;

/// How long a metadata change may take before it is reported as failed.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    /// True when `dir` belongs to a node that was part of a cluster before
    /// (it has a cluster identity).
    ///
    /// # Errors
    /// `Metadata` when the identity file is unreadable.
    pub(crate) fn has_identity(dir: &Path) -> Result<bool> {
        read_identity(dir).map(|i| i.is_some())
    }
}

fn read_identity(dir: &Path) -> Result<Option<Identity>> {
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Metadata(format!("{} is not a cluster identity: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Metadata(format!("read {}: {e}", path.display()))),
    }
}

fn write_identity(dir: &Path, identity: &Identity) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(identity)
        .map_err(|e| Error::Metadata(format!("encode cluster identity: {e}")))?;
    crate::files::write_atomic(dir, IDENTITY_FILE, &bytes, false)
}

/// A fresh cluster id: 16 hex digits of randomness.
fn new_cluster_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Adds the cluster id to a node-to-node request.
pub(crate) fn with_cluster_id<T>(cluster_id: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = cluster_id.parse() {
        request.metadata_mut().insert(CLUSTER_ID_HEADER, value);
    }
    request
}

/// The node's cluster state; owned by the broker.
pub(crate) struct Cluster {
    pub(crate) node: MetadataNode,
    pub(crate) id: u64,
    pub(crate) cluster_id: String,
    /// This node's gRPC address as other nodes and clients reach it.
    pub(crate) advertised: String,
    pub(crate) config: ClusterConfig,
    /// Controller side: when each broker was last heard.
    heartbeats: Mutex<HashMap<u64, Instant>>,
    /// When this node last became controller (grace for heartbeats).
    controller_since: Mutex<Option<Instant>>,
    /// The last controller this node saw before it became one: it gets no
    /// grace (it lost the quorum, or died).
    previous_controller: Mutex<Option<u64>>,
    /// Broker side: when the controller last answered a heartbeat.
    last_heard: Mutex<Instant>,
    channels: Mutex<HashMap<String, Channel>>,
    /// Set by a controlled shutdown: heartbeats stop.
    leaving: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.id)
            .field("cluster_id", &self.cluster_id)
            .field("advertised", &self.advertised)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Checks and records the node's identity, learns the cluster id when
    /// joining, and starts the node's Raft (not yet part of a quorum).
    ///
    /// # Errors
    /// `Cluster` for an identity that does not match the data directory or
    /// a join target of another cluster; `Metadata` for file errors.
    pub(crate) async fn open(
        data_dir: &Path,
        node_id: u64,
        advertised: String,
        config: ClusterConfig,
    ) -> Result<Cluster> {
        let stored = read_identity(data_dir)?;
        if let Some(stored) = &stored {
            if stored.node_id != node_id {
                return Err(Error::Cluster(format!(
                    "data directory {} belongs to node {}, not node {node_id}",
                    data_dir.display(),
                    stored.node_id
                )));
            }
            if let Some(wanted) = &config.cluster_id
                && *wanted != stored.cluster_id
            {
                return Err(Error::Cluster(format!(
                    "wrong cluster id: data directory {} belongs to cluster {:?}, not {wanted:?}",
                    data_dir.display(),
                    stored.cluster_id
                )));
            }
        }
        let cluster_id = match (&stored, &config.cluster_id, &config.formation) {
            (Some(stored), _, _) => stored.cluster_id.clone(),
            (None, Some(id), _) => id.clone(),
            (None, None, Formation::Join(addr)) => {
                ask_cluster_id(addr, config.outbound_address).await?
            }
            (None, None, Formation::Peers(_)) => "fjord".to_string(),
            (None, None, Formation::Bootstrap) => new_cluster_id(),
        };
        if let Formation::Join(addr) = &config.formation
            && stored.is_none()
            && config.cluster_id.is_some()
        {
            let theirs = ask_cluster_id(addr, config.outbound_address).await?;
            if theirs != cluster_id {
                return Err(Error::Cluster(format!(
                    "wrong cluster id: the node at {addr} belongs to cluster {theirs:?}, this node was started for {cluster_id:?}"
                )));
            }
        }
        if stored.is_none() {
            write_identity(
                data_dir,
                &Identity {
                    cluster_id: cluster_id.clone(),
                    node_id,
                },
            )?;
        }
        let raft_config = openraft::Config {
            cluster_name: cluster_id.clone(),
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            ..Default::default()
        };
        let node = MetadataNode::start(
            node_id,
            &data_dir.join("raft"),
            raft_config,
            &cluster_id,
            config.outbound_address,
        )
        .await
        .map_err(|e| Error::Metadata(e.to_string()))?;
        info!(cluster_id = %cluster_id, node_id, "metadata node started");
        Ok(Cluster {
            node,
            id: node_id,
            cluster_id,
            advertised,
            config,
            heartbeats: Mutex::new(HashMap::new()),
            controller_since: Mutex::new(None),
            previous_controller: Mutex::new(None),
            last_heard: Mutex::new(Instant::now()),
            channels: Mutex::new(HashMap::new()),
            leaving: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A (lazily connecting, shared) channel to a node's gRPC listener.
    ///
    /// # Errors
    /// `Cluster` for an address that is not a valid URI.
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::Cluster(format!("bad node address {addr}: {e}")))?
            .local_address(self.config.outbound_address)
            // Replica fetches carry megabytes: HTTP/2's 64 KiB default
            // window would stall each one for several round trips.
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW * 2)
            .max_frame_size(FRAME)
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(3))
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Forgets a channel after a failure, so the next call reconnects.
    pub(crate) fn drop_channel(&self, addr: &str) {
        lock(&self.channels).remove(addr);
    }

    /// The address of broker `id` in the metadata.
    pub(crate) fn broker_addr(&self, id: u64) -> Option<String> {
        if id == self.id {
            return Some(self.advertised.clone());
        }
        self.node.state().brokers.get(&id).map(|b| b.addr.clone())
    }

    /// True when this node cannot be sure it still leads what it leads:
    /// the quorum is out of its reach (a controller that lost its majority
    /// included), or the controller has not answered it for a session
    /// timeout. It must not acknowledge writes on its own word then.
    pub(crate) fn self_fenced(&self) -> bool {
        if !self.node.has_quorum() {
            return true;
        }
        !self.node.is_leader() && lock(&self.last_heard).elapsed() > self.config.session_timeout
    }

    /// Proposes through the quorum, mapping the outcome to broker errors.
    ///
    /// # Errors
    /// `NoQuorum` when no leader can be reached; `InvalidRequest` with the
    /// reason when the metadata refused the change.
    pub(crate) async fn propose(&self, request: MetadataRequest) -> Result<MetadataResponse> {
        let proposed = tokio::time::timeout(PROPOSE_TIMEOUT, self.node.propose(request)).await;
        match proposed {
            Ok(Ok(MetadataResponse::Rejected(reason))) => Err(Error::InvalidRequest(reason)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(fjord_raft::Error::NoLeader)) | Err(_) => Err(Error::NoQuorum(
                "the metadata quorum cannot commit changes (is a majority of voters up?)".into(),
            )),
            Ok(Err(e)) => Err(Error::NoQuorum(format!("metadata change failed: {e}"))),
        }
    }

    /// Controller side: a heartbeat from `id`.
    pub(crate) fn heard_from(&self, id: u64) {
        lock(&self.heartbeats).insert(id, Instant::now());
    }

    /// Broker side: the controller answered.
    pub(crate) fn heard_controller(&self) {
        *lock(&self.last_heard) = Instant::now();
    }

    /// Controller side: is `id` within its session?
    fn alive(&self, id: u64, now: Instant) -> bool {
        if id == self.id {
            return true;
        }
        // A new controller has heard nobody yet. Live brokers find it
        // within a few heartbeats, so that is their grace, not a whole
        // session (which would double the failover time when the
        // controller dies with a partition leader).
        let grace_period = (self.config.heartbeat_interval * 4).min(self.config.session_timeout);
        let grace = lock(&self.controller_since)
            .is_none_or(|since| now.saturating_duration_since(since) < grace_period)
            && *lock(&self.previous_controller) != Some(id);
        grace
            || lock(&self.heartbeats)
                .get(&id)
                .is_some_and(|t| now.saturating_duration_since(*t) < self.config.session_timeout)
    }

    /// Liveness of every registered broker, as the controller sees it (or,
    /// on other nodes, as the metadata says).
    pub(crate) fn liveness(&self) -> BTreeMap<u64, bool> {
        let state = self.node.state();
        let now = Instant::now();
        let controller = self.node.is_leader();
        state
            .brokers
            .values()
            .map(|b| {
                (
                    b.id,
                    if controller {
                        !b.fenced && self.alive(b.id, now)
                    } else {
                        !b.fenced
                    },
                )
            })
            .collect()
    }
}

/// Reads the cluster id of the node at `addr`.
async fn ask_cluster_id(addr: &str, local: Option<std::net::IpAddr>) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let channel = Endpoint::from_shared(format!("http://{addr}"))?
                .local_address(local)
                .connect_timeout(Duration::from_secs(1))
                .connect()
                .await?;
            let mut client = ClusterServiceClient::new(channel);
            let status = client.status(pb::ClusterStatusRequest {}).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status.into_inner().cluster_id)
        };
        match attempt.await {
            Ok(id) if !id.is_empty() => return Ok(id),
            Ok(_) => {
                return Err(Error::Cluster(format!(
                    "the node at {addr} has no cluster id (it runs an older release)"
                )));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::Cluster(format!(
                    "cannot reach the node to join at {addr}: {e}"
                )));
            }
            Err(e) => {
                warn!(%addr, "waiting for the node to join: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

impl Broker {
    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }
}
