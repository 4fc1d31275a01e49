//! The cluster's background work: heartbeats to the controller, the
//! controller's rounds, applying metadata to local replicas, leaders' ISR
//! checks and ISR proposals, and the controlled shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use fjord_raft::MetadataRequest;
use tracing::{info, warn};

use super::{Cluster, lock, with_cluster_id};
use crate::broker::Broker;

impl Broker {
    pub(super) fn spawn_cluster_loops(&self, cluster: &Arc<Cluster>) {
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
        let cluster = Arc::clone(self.cluster());
        cluster
            .leaving
            .store(true, std::sync::atomic::Ordering::Release);
        let leads = |broker: &Broker| {
            broker
                .all_topic_partitions()
                .iter()
                .any(|(_, p)| matches!(&*p.role(), crate::partition::Role::Leader { .. }))
        };
        let me = cluster.id;
        let others = cluster
            .node
            .read_state(|s| s.brokers.values().any(|b| b.id != me && !b.fenced));
        if !others || !leads(self) || !cluster.node.has_quorum() {
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
