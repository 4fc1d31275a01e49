//! The quorum's background work: heartbeats to the controller, and the
//! controller's rounds (fencing, elections, reassignments).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use fjord_raft::MetadataRequest;
use tracing::{info, warn};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Quorum, lock, with_cluster_id};

impl Quorum {
    /// Starts the heartbeats to the controller and the controller's rounds
    /// (which run while this node is the controller), until `stop`.
    pub(crate) fn spawn_loops(self: &Arc<Self>, tracker: &TaskTracker, stop: &CancellationToken) {
        let quorum = Arc::clone(self);
        let until = stop.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(quorum.config.heartbeat_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = until.cancelled() => break,
                    _ = tick.tick() => {}
                }
                send_heartbeat(&quorum).await;
            }
        });
        let quorum = Arc::clone(self);
        let until = stop.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = until.cancelled() => break,
                    _ = tick.tick() => {}
                }
                // A round waits on proposals: a shutdown cuts it short
                // (what it proposed may still commit, and is redone by the
                // next controller if not).
                tokio::select! {
                    biased;
                    _ = until.cancelled() => break,
                    _ = controller_round(&quorum) => {}
                }
            }
        });
    }

    /// Registers this node as a broker through the quorum (it must be the
    /// controller, or reach it) and waits until that is applied here.
    pub(crate) async fn register_self(&self) {
        register_if_needed(self, self.id, &self.advertised, self.config.rack.clone()).await;
        let me = self.id;
        self.await_applied(Duration::from_secs(5), |s| s.brokers.contains_key(&me))
            .await;
    }

    /// Stops heartbeating and standing for election (a controlled
    /// shutdown).
    pub(crate) fn leave(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::Release);
        self.node.stop_campaigning();
    }
}

async fn send_heartbeat(cluster: &Quorum) {
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
    cluster: &Quorum,
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
        Err(crate::Error::ShuttingDown) => {}
        Err(e) => warn!(broker = id, "registering the broker failed: {e}"),
    }
}

/// One round of the controller: fence lapsed brokers, elect leaders,
/// complete reassignments, keep the quorum's voters.
async fn controller_round(cluster: &Quorum) {
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
        match cluster.propose(request).await {
            Ok(_) => {}
            Err(crate::Error::ShuttingDown) => return,
            Err(e) => {
                warn!("controller proposal failed: {e}");
                return;
            }
        }
    }
    unregister_removed(cluster).await;
    cluster.keep_voters().await;
}

/// Controller side: drops the registration of a broker that is no longer
/// a member of the quorum (a heartbeat that raced `remove-node` may have
/// registered it again after its removal was proposed).
async fn unregister_removed(cluster: &Quorum) {
    let members = cluster.node.members();
    let state = cluster.node.state();
    let removed: Vec<u64> = state
        .brokers
        .keys()
        .copied()
        .filter(|id| !members.voters.contains_key(id) && !members.learners.contains_key(id))
        .filter(|id| !state.holds_replicas(*id))
        .collect();
    for id in removed {
        info!(broker = id, "unregistering a broker that left the quorum");
        if let Err(e) = cluster
            .propose(MetadataRequest::UnregisterBroker { id })
            .await
        {
            warn!(broker = id, "unregistering a removed broker failed: {e}");
        }
    }
}
