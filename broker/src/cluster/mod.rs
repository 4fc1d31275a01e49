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
//! # Files
//! `<data-dir>/cluster.json` records the cluster id and this node's id on
//! first start; a later start with other ids is refused. The quorum's log
//! and snapshots live in `<data-dir>/raft/`.

mod admin;
mod fetcher;
mod reconcile;

pub use admin::{ClusterStatus, ControllerRedirect, JoinReply, NodeStatus, UnderReplicated};

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

/// How long a metadata change may take before it is reported as failed.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let path = dir.join(IDENTITY_FILE);
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(identity)
        .map_err(|e| Error::Metadata(format!("encode cluster identity: {e}")))?;
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, &bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| Error::Metadata(format!("write {}: {e}", path.display())))
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

    /// True when this node has not heard from the controller for a session
    /// timeout: it must not acknowledge writes.
    pub(crate) fn self_fenced(&self) -> bool {
        if self.node.is_leader() {
            return false;
        }
        lock(&self.last_heard).elapsed() > self.config.session_timeout
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
                    "the node at {addr} is not part of a cluster (it runs as a single node)"
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
    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.as_ref()
    }

    /// Forms or joins the quorum, then starts the cluster's background
    /// loops: heartbeats, the controller, applying metadata to partitions,
    /// and ISR checks. Call once the gRPC listener serves the Raft RPCs.
    ///
    /// # Errors
    /// `Cluster` when the join is refused (wrong cluster id, duplicate node
    /// id) or the cluster cannot be reached.
    pub async fn start_cluster(&self) -> Result<()> {
        let Some(cluster) = self.cluster().cloned() else {
            return Ok(());
        };
        match &cluster.config.formation {
            Formation::Bootstrap => {
                let members = cluster.node.members();
                if members.voters.is_empty() {
                    let voters = [(cluster.id, cluster.advertised.clone())].into();
                    cluster
                        .node
                        .initialize(voters)
                        .await
                        .map_err(|e| Error::Cluster(e.to_string()))?;
                }
            }
            Formation::Peers(peers) => {
                if !peers.contains_key(&cluster.id) {
                    return Err(Error::Cluster(format!(
                        "--peers does not list this node ({})",
                        cluster.id
                    )));
                }
                if peers.keys().next() == Some(&cluster.id)
                    && cluster.node.members().voters.is_empty()
                {
                    cluster
                        .node
                        .initialize(peers.clone())
                        .await
                        .map_err(|e| Error::Cluster(e.to_string()))?;
                }
            }
            Formation::Join(addr) => {
                let known = cluster.node.members();
                if !known.voters.contains_key(&cluster.id)
                    && !known.learners.contains_key(&cluster.id)
                {
                    self.join(&cluster, addr).await?;
                }
            }
        }
        self.spawn_cluster_loops(&cluster);
        Ok(())
    }

    async fn join(&self, cluster: &Cluster, addr: &str) -> Result<()> {
        let mut target = addr.to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let request = with_cluster_id(
                &cluster.cluster_id,
                pb::JoinClusterRequest {
                    node_id: cluster.id,
                    address: cluster.advertised.clone(),
                    rack: cluster.config.rack.clone().unwrap_or_default(),
                    cluster_id: cluster.cluster_id.clone(),
                },
            );
            let result = match cluster.channel(&target) {
                Ok(channel) => ClusterServiceClient::new(channel)
                    .join(request)
                    .await
                    .map_err(Some),
                Err(_) => Err(None),
            };
            match result {
                Ok(reply) => {
                    info!(role = %reply.into_inner().role, "joined the cluster");
                    return Ok(());
                }
                Err(Some(status))
                    if matches!(
                        status.code(),
                        tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists
                    ) =>
                {
                    return Err(Error::Cluster(format!(
                        "the cluster refused this node: {}",
                        status.message()
                    )));
                }
                Err(failure) => {
                    if let Some(status) = &failure
                        && let Some(leader) = status
                            .metadata()
                            .get("fjord-leader-address")
                            .and_then(|v| v.to_str().ok())
                    {
                        target = leader.to_string();
                    } else {
                        target = addr.to_string();
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::Cluster(format!(
                            "could not join the cluster at {addr}: {}",
                            failure.map_or("unreachable".to_string(), |s| s.message().to_string())
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn spawn_cluster_loops(&self, cluster: &Arc<Cluster>) {
        let tracker = &self.inner.tracker;
        let stop = self.inner.shutdown.clone();
        // Heartbeats to the controller.
        {
            let cluster = Arc::clone(cluster);
            let stop = stop.clone();
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(cluster.config.heartbeat_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    send_heartbeat(&cluster).await;
                }
            });
        }
        // The controller's decisions.
        {
            let cluster = Arc::clone(cluster);
            let stop = stop.clone();
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    controller_round(&cluster).await;
                }
            });
        }
        // Metadata → local partitions, on every applied change (not on the
        // Raft metrics that move with each heartbeat) and periodically.
        {
            let broker = self.clone();
            let cluster = Arc::clone(cluster);
            let stop = stop.clone();
            tracker.spawn(async move {
                let mut changes = cluster.node.changes();
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let seen = |m: &openraft::RaftMetrics<u64, openraft::BasicNode>| {
                    (m.last_applied, m.current_leader)
                };
                loop {
                    let before = seen(&changes.borrow_and_update());
                    broker.reconcile(&cluster).await;
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tick.tick() => break,
                            changed = changes.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                                if seen(&changes.borrow_and_update()) != before {
                                    break;
                                }
                            }
                        }
                    }
                }
            });
        }
        // Leaders' ISR checks.
        {
            let broker = self.clone();
            let cluster = Arc::clone(cluster);
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    for (topic, partition) in broker.all_topic_partitions() {
                        if let Some((epoch, isr)) = partition.leader_tick() {
                            broker.propose_isr(&cluster, topic, &partition, epoch, isr);
                        }
                    }
                }
            });
        }
    }

    /// Controlled shutdown: stop heartbeating and fence this broker through
    /// the quorum, so the controller moves its leaderships to in-sync
    /// replicas; wait (a few seconds at most) until it leads nothing.
    pub(crate) async fn hand_off_leadership(&self) {
        let Some(cluster) = self.cluster().cloned() else {
            return;
        };
        cluster
            .leaving
            .store(true, std::sync::atomic::Ordering::Release);
        let leads = |broker: &Broker| {
            broker
                .all_topic_partitions()
                .iter()
                .any(|(_, p)| matches!(&*p.role(), crate::partition::Role::Leader { .. }))
        };
        if !leads(self) || !cluster.node.has_quorum() {
            return;
        }
        info!("controlled shutdown: handing partition leadership away");
        if let Err(e) = cluster
            .propose(MetadataRequest::FenceBroker { id: cluster.id })
            .await
        {
            warn!("controlled shutdown: {e}");
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while leads(self) && Instant::now() < deadline {
            self.reconcile(&cluster).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Proposes an ISR change for a partition this node leads, in the
    /// background; a refusal lets the partition propose again.
    pub(crate) fn propose_isr(
        &self,
        cluster: &Arc<Cluster>,
        topic: String,
        partition: &Arc<crate::partition::Partition>,
        leader_epoch: i32,
        isr: Vec<u64>,
    ) {
        let cluster = Arc::clone(cluster);
        let partition = Arc::clone(partition);
        self.inner.tracker.spawn(async move {
            let id = partition.id;
            info!(topic = %topic, partition = id, ?isr, "proposing an ISR change");
            let request = MetadataRequest::UpdateIsr {
                topic: topic.clone(),
                partition: id,
                leader_epoch,
                isr,
            };
            if let Err(e) = cluster.propose(request).await {
                warn!(topic = %topic, partition = id, "ISR change refused: {e}");
                partition.isr_rejected();
            }
        });
    }
}

async fn send_heartbeat(cluster: &Cluster) {
    if cluster.leaving.load(std::sync::atomic::Ordering::Acquire) {
        return;
    }
    if cluster.node.is_leader() {
        cluster.heard_from(cluster.id);
        cluster.heard_controller();
        register_if_needed(
            cluster,
            cluster.id,
            &cluster.advertised,
            cluster.config.rack.clone(),
        )
        .await;
        return;
    }
    let Some((_, addr)) = cluster.node.leader() else {
        return;
    };
    let Ok(channel) = cluster.channel(&addr) else {
        return;
    };
    let mut client = ClusterServiceClient::new(channel);
    let request = with_cluster_id(
        &cluster.cluster_id,
        pb::BrokerHeartbeatRequest {
            node_id: cluster.id,
            address: cluster.advertised.clone(),
            rack: cluster.config.rack.clone().unwrap_or_default(),
        },
    );
    let sent =
        tokio::time::timeout(cluster.config.session_timeout, client.heartbeat(request)).await;
    match sent {
        Ok(Ok(_)) => cluster.heard_controller(),
        Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
            warn!(
                "the controller refused this node's heartbeat: {}",
                status.message()
            );
        }
        Ok(Err(status)) => {
            tracing::debug!("heartbeat to {addr} failed: {status}");
            cluster.drop_channel(&addr);
        }
        Err(_) => {
            tracing::debug!("heartbeat to {addr} timed out");
            cluster.drop_channel(&addr);
        }
    }
}

/// Controller side: registers (or unfences, or updates) a heartbeating
/// broker.
pub(crate) async fn register_if_needed(
    cluster: &Cluster,
    id: u64,
    addr: &str,
    rack: Option<String>,
) {
    let state = cluster.node.state();
    let current = state.brokers.get(&id);
    if current.is_some_and(|b| !b.fenced && b.addr == addr && b.rack == rack) {
        return;
    }
    let request = MetadataRequest::RegisterBroker {
        id,
        addr: addr.to_string(),
        rack,
    };
    match cluster.propose(request).await {
        Ok(_) => info!(broker = id, %addr, "broker registered"),
        Err(e) => warn!(broker = id, "registering the broker failed: {e}"),
    }
}

/// One round of the controller: fence lapsed brokers, elect leaders,
/// complete reassignments.
async fn controller_round(cluster: &Cluster) {
    if !cluster.node.is_leader() {
        *lock(&cluster.controller_since) = None;
        if let Some((leader, _)) = cluster.node.leader() {
            *lock(&cluster.previous_controller) = Some(leader);
        }
        return;
    }
    {
        let mut since = lock(&cluster.controller_since);
        if since.is_none() {
            info!(node = cluster.id, "this node is now the controller");
            *since = Some(Instant::now());
        }
    }
    let state = cluster.node.state();
    let now = Instant::now();
    let requests = fjord_raft::decide(&state, |id| cluster.alive(id, now));
    for request in requests {
        tracing::info!(?request, "controller decision");
        if let Err(e) = cluster.propose(request).await {
            warn!("controller proposal failed: {e}");
            break;
        }
    }
}
