//! This node's part in the metadata quorum: its Raft node, its identity,
//! connections to the other nodes, proposals, and what the metadata says
//! about liveness and leadership.
//!
//! # How the pieces meet
//! - Every node runs a [`MetadataNode`]; the Raft leader is the
//!   **controller**. Brokers send it heartbeats; it registers them, fences
//!   those whose heartbeats lapse and elects partition leaders from the ISR
//!   (`fjord_raft::decide`), proposing each change through the quorum
//!   (`loops.rs`).
//! - The replica manager (`crate::replica`) applies the committed metadata
//!   to this node's partitions.
//! - A broker that cannot reach the controller for a session timeout
//!   fences itself for `acks=0|1` writes until it is heard again
//!   ([`Quorum::self_fenced`]), so a node cut off from the quorum does not
//!   acknowledge writes on its own word. `acks=all` writes go on: they
//!   complete only once the ISR the metadata last committed has them, so
//!   they stay safe, and partitions whose ISR is intact keep serving when
//!   the quorum itself is lost.
//!
//! # Layout
//! This file: the [`Quorum`] handle, channels to other nodes, proposals,
//! liveness, leadership lookups; `identity`: `cluster.json`; `formation`:
//! bootstrap, fixed peers and joins; `loops`: heartbeats and the
//! controller's rounds; `membership`: joins, heartbeats and removals
//! answered by the controller, and the voters the quorum keeps.
//!
//! # Files
//! `<data-dir>/cluster.json` records the cluster id and this node's id on
//! first start; a later start with other ids is refused. The quorum's log
//! and snapshots live in `<data-dir>/raft/`.

mod formation;
mod identity;
mod loops;
mod membership;

pub use membership::{ControllerRedirect, JoinReply};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use fjord_raft::{
    CLUSTER_ID_HEADER, MetadataNode, MetadataRequest, MetadataResponse, MetadataState,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::api::Leader;
use crate::config::{ClusterConfig, Formation};
use crate::{Error, Result};
pub(crate) use identity::has_identity;
use identity::{Identity, new_cluster_id, read_identity, write_identity};

/// HTTP/2 flow-control window for node-to-node connections.
pub(crate) const WINDOW: u32 = 16 << 20;
/// HTTP/2 frame size this node takes: a replica fetch's megabyte goes in a
/// few frames instead of 16 KiB ones (each frame costs a header, a
/// flow-control step and a pass through the codec on both sides).
pub(crate) const FRAME: u32 = 1 << 20;

/// How long a metadata change may take before it is reported as failed.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds the cluster id to a node-to-node request.
pub(crate) fn with_cluster_id<T>(cluster_id: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = cluster_id.parse() {
        request.metadata_mut().insert(CLUSTER_ID_HEADER, value);
    }
    request
}

/// This node's part in the metadata quorum; shared by the broker's parts.
pub(crate) struct Quorum {
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
    /// The broker's tasks (the quorum spawns some of its work).
    tracker: TaskTracker,
    /// Cancelled when the broker stops (after handing leadership over):
    /// proposals still waiting give up at once.
    stopping: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("id", &self.id)
            .field("cluster_id", &self.cluster_id)
            .field("advertised", &self.advertised)
            .finish_non_exhaustive()
    }
}

impl Quorum {
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
        tracker: TaskTracker,
        stopping: CancellationToken,
    ) -> Result<Quorum> {
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
        let node = MetadataNode::start(
            node_id,
            &data_dir.join("raft"),
            &cluster_id,
            config.outbound_address,
        )
        .await
        .map_err(|e| Error::Metadata(e.to_string()))?;
        info!(cluster_id = %cluster_id, node_id, "metadata node started");
        Ok(Quorum {
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
            tracker,
            stopping,
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
    /// reason when the metadata refused the change; `ShuttingDown` once
    /// the broker stops.
    pub(crate) async fn propose(&self, request: MetadataRequest) -> Result<MetadataResponse> {
        let proposed = tokio::select! {
            biased;
            _ = self.stopping.cancelled() => return Err(Error::ShuttingDown),
            proposed = tokio::time::timeout(PROPOSE_TIMEOUT, self.node.propose(request)) => proposed,
        };
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

impl Quorum {
    /// The cluster id.
    pub(crate) fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The committed metadata as this node has applied it (a copy).
    pub(crate) fn state(&self) -> MetadataState {
        self.node.state()
    }

    /// Reads the applied metadata in place; `read` must be short.
    pub(crate) fn read<R>(&self, read: impl FnOnce(&MetadataState) -> R) -> R {
        self.node.read_state(read)
    }

    /// Who leads `topic`-`partition`, as the applied metadata says.
    pub(crate) fn leader_of(&self, topic: &str, partition: u32) -> Leader {
        let leader = self.read(|s| {
            s.topics
                .get(topic)
                .and_then(|t| t.partitions.get(partition as usize))
                .and_then(|p| p.leader)
        });
        match leader {
            Some(id) if id == self.id => Leader::Here,
            Some(id) => self
                .broker_addr(id)
                .map_or(Leader::Unknown, |addr| Leader::Node(id, addr)),
            None => Leader::Unknown,
        }
    }

    /// The error for a request this node cannot serve: the partition's
    /// leader, or why there is none.
    pub(crate) fn not_leader(&self, topic: &str, partition: u32) -> Error {
        let exists = self.read(|s| {
            s.topics
                .get(topic)
                .map(|t| (partition as usize) < t.partitions.len())
        });
        match exists {
            None => Error::UnknownTopic(topic.to_string()),
            Some(false) => Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            },
            Some(true) => Error::NotLeader {
                topic: topic.to_string(),
                partition,
                leader: match self.leader_of(topic, partition) {
                    Leader::Node(id, addr) => Some((id, addr)),
                    Leader::Here | Leader::Unknown => None,
                },
            },
        }
    }

    /// Partition count of a topic the cluster knows.
    ///
    /// # Errors
    /// `UnknownTopic`.
    pub(crate) fn partition_count(&self, topic: &str) -> Result<u32> {
        self.read(|s| s.topics.get(topic).map(|t| t.partitions.len() as u32))
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    /// A topic this node does not know yet may have just been created
    /// through another node: give the metadata a moment to arrive before a
    /// request calls it unknown. The controller's metadata is current.
    pub(crate) async fn await_topic(&self, topic: &str) {
        if !self.node.is_leader() && !self.read(|s| s.topics.contains_key(topic)) {
            self.await_applied(Duration::from_millis(500), |s| s.topics.contains_key(topic))
                .await;
        }
    }

    /// Waits (at most `wait`) until the applied metadata satisfies `done`
    /// (after a proposal that another node committed).
    pub(crate) async fn await_applied(
        &self,
        wait: Duration,
        done: impl Fn(&MetadataState) -> bool,
    ) {
        let mut changes = self.node.watch();
        let deadline = tokio::time::Instant::now() + wait;
        while !self.node.read_state(&done) {
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// True when the metadata quorum has a leader this node can reach.
    pub(crate) fn has_quorum(&self) -> bool {
        self.node.has_quorum()
    }

    /// True when this node knows a leader and has applied everything its
    /// log holds: its metadata is current enough to delete data on its
    /// word.
    pub(crate) fn caught_up(&self) -> bool {
        self.node.caught_up()
    }

    /// Wakes when the applied metadata or the leader changes.
    pub(crate) fn watch(&self) -> fjord_raft::MetadataWatch {
        self.node.watch()
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
