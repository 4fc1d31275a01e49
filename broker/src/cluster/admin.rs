//! Cluster administration on the broker handle: topics through the quorum,
//! who leads what, joins and heartbeats (answered by the controller), the
//! cluster status, and the scaling operations (reassign, drain, remove,
//! rebalance).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_raft::{MetadataRequest, MetadataState, drain_plan, place_replicas, rebalance_plan};
use tracing::info;

use super::Cluster;
use super::loops::register_if_needed;
use crate::broker::Broker;
use crate::config::{PartitionInfo, TopicDescription, TopicSpec};
use crate::topic_config::{log_config, validate_topic_name};
use crate::{Error, Result};

/// A node as `fjord cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: u64,
    pub address: String,
    /// `voter`, `learner`, or empty when not a quorum member.
    pub role: String,
    pub live: bool,
    pub rack: Option<String>,
    pub draining: bool,
    pub leaders: u32,
    pub replicas: u32,
}

/// One partition's replica list before and after a scaling operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMove {
    pub topic: String,
    pub partition: u32,
    /// Its replicas before (the first is the preferred leader).
    pub from: Vec<u64>,
    /// Its replicas after.
    pub to: Vec<u64>,
}

/// A partition with fewer in-sync replicas than replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderReplicated {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
    pub leader: Option<u64>,
}

/// What `fjord cluster status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub node_id: u64,
    pub controller: Option<u64>,
    pub quorum: bool,
    pub nodes: Vec<NodeStatus>,
    pub under_replicated: Vec<UnderReplicated>,
    pub partitions: u64,
    pub offline_partitions: u64,
    pub reassigning: u64,
}

/// What a join or heartbeat sent to a non-controller should do instead.
#[derive(Debug)]
pub enum ControllerRedirect {
    /// Ask this address (the controller's).
    Controller(String),
    /// No controller is known.
    Unknown,
}

/// The outcome of a join request.
#[derive(Debug)]
pub enum JoinReply {
    Joined { voter: bool },
    Redirect(ControllerRedirect),
}

/// Waits (at most `wait`) for metadata to be applied on this node (after a
/// proposal that another node committed).
pub(crate) async fn wait_applied(
    cluster: &Cluster,
    wait: Duration,
    done: impl Fn(&MetadataState) -> bool,
) {
    let mut changes = cluster.node.changes();
    let deadline = tokio::time::Instant::now() + wait;
    while !cluster.node.read_state(&done) {
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

impl Broker {
    /// The error for a client request this node cannot serve: the
    /// partition's leader, or why there is none.
    pub(crate) fn not_leader(&self, topic: &str, partition: u32) -> Error {
        let cluster = self.cluster();
        let state = cluster.node.state();
        let Some(t) = state.topics.get(topic) else {
            return Error::UnknownTopic(topic.to_string());
        };
        let Some(p) = t.partitions.get(partition as usize) else {
            return Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            };
        };
        let leader = p
            .leader
            .filter(|l| *l != cluster.id)
            .and_then(|l| cluster.broker_addr(l).map(|a| (l, a)));
        Error::NotLeader {
            topic: topic.to_string(),
            partition,
            leader,
        }
    }

    /// A topic this node does not know yet may have just been created
    /// through another node: give the metadata a moment to arrive before a
    /// request calls it unknown.
    pub(crate) async fn await_topic(&self, topic: &str) {
        let cluster = self.cluster();
        // The controller's metadata is current: nothing to wait for.
        if !cluster.node.is_leader() && !cluster.node.state().topics.contains_key(topic) {
            wait_applied(cluster, Duration::from_millis(500), |s| {
                s.topics.contains_key(topic)
            })
            .await;
        }
    }

    /// Partition count of a topic the cluster knows (not only local ones).
    pub(crate) fn partition_count(&self, topic: &str) -> Result<u32> {
        self.cluster()
            .node
            .read_state(|s| s.topics.get(topic).map(|t| t.partitions.len() as u32))
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    pub(crate) async fn create_topic_in_cluster(
        &self,
        mut spec: TopicSpec,
        internal: bool,
    ) -> Result<TopicDescription> {
        self.check_open()?;
        let cluster = self.cluster();
        if spec.name.starts_with("__") && !internal {
            return Err(Error::InvalidRequest(format!(
                "topic names starting with \"__\" are reserved: {}",
                spec.name
            )));
        }
        validate_topic_name(&spec.name)?;
        if spec.partitions == 0 || spec.partitions > 10_000 {
            return Err(Error::InvalidRequest(format!(
                "partitions must be 1 to 10000, got {}",
                spec.partitions
            )));
        }
        let state = cluster.node.state();
        let live = state
            .brokers
            .values()
            .filter(|b| !b.fenced && !b.draining)
            .count() as u32;
        if spec.replication_factor == 0 {
            spec.replication_factor = live.clamp(1, 3);
        }
        log_config(
            &spec.configs,
            self.inner.config.default_flush,
            spec.replication_factor,
        )?;
        if state.topics.contains_key(&spec.name) {
            return Err(Error::TopicExists(spec.name));
        }
        let replicas = place_replicas(&state, spec.partitions, spec.replication_factor)
            .map_err(Error::InvalidRequest)?;
        let request = MetadataRequest::CreateTopic {
            name: spec.name.clone(),
            configs: spec.configs.clone(),
            replicas,
        };
        match cluster.propose(request).await {
            Err(Error::InvalidRequest(reason)) if reason.contains("already exists") => {
                return Err(Error::TopicExists(spec.name));
            }
            other => {
                other?;
            }
        }
        wait_applied(cluster, Duration::from_secs(5), |s| {
            s.topics.contains_key(&spec.name)
        })
        .await;
        self.await_local_leaders(&spec.name, Duration::from_secs(5))
            .await;
        info!(topic = %spec.name, partitions = spec.partitions, replication_factor = spec.replication_factor, "topic created");
        self.describe_topic_in_cluster(&spec.name)
    }

    /// Applies the metadata now and waits (at most `wait`) until every
    /// partition of `topic` that this node leads serves reads, so that a
    /// topic is usable here when its creation returns.
    async fn await_local_leaders(&self, topic: &str, wait: Duration) {
        let cluster = Arc::clone(self.cluster());
        self.reconcile(&cluster).await;
        let me = cluster.id;
        let led: Vec<u32> = cluster.node.read_state(|s| {
            s.topics.get(topic).map_or_else(Vec::new, |t| {
                (0..t.partitions.len() as u32)
                    .filter(|p| t.partitions[*p as usize].leader == Some(me))
                    .collect()
            })
        });
        let deadline = tokio::time::Instant::now() + wait;
        while !led
            .iter()
            .all(|p| self.partition(topic, *p).is_ok_and(|p| p.serves_reads()))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub(crate) async fn delete_topic_in_cluster(
        &self,
        name: &str,
        internal_too: bool,
    ) -> Result<()> {
        let cluster = self.cluster();
        if name.starts_with("__") && !internal_too {
            return Err(Error::InvalidRequest(format!(
                "internal topic {name} cannot be deleted"
            )));
        }
        if !cluster.node.state().topics.contains_key(name) {
            return Err(Error::UnknownTopic(name.to_string()));
        }
        match cluster
            .propose(MetadataRequest::DeleteTopic {
                name: name.to_string(),
            })
            .await
        {
            Err(Error::InvalidRequest(reason)) if reason.contains("unknown topic") => {
                Err(Error::UnknownTopic(name.to_string()))
            }
            other => other.map(|_| ()),
        }?;
        wait_applied(cluster, Duration::from_secs(5), |s| {
            !s.topics.contains_key(name)
        })
        .await;
        info!(topic = %name, "topic deleted");
        Ok(())
    }

    pub(crate) fn describe_topic_in_cluster(&self, name: &str) -> Result<TopicDescription> {
        let cluster = self.cluster();
        let state = cluster.node.state();
        let topic = state
            .topics
            .get(name)
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        let local = self.topic(name).ok();
        let partitions = topic
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let replica = local
                    .as_ref()
                    .and_then(|t| t.partitions.get(i).cloned().flatten());
                let (log_start_offset, high_watermark, log_end_offset, size_bytes) = replica
                    .map(|r| {
                        let hw = r.high_watermark();
                        let log = r.read_log();
                        (
                            log.log_start_offset(),
                            hw,
                            log.log_end_offset(),
                            log.size_bytes(),
                        )
                    })
                    .unwrap_or((-1, -1, -1, 0));
                PartitionInfo {
                    partition: i as u32,
                    leader: p.leader.unwrap_or(0) as u32,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.iter().map(|r| *r as u32).collect(),
                    isr: p.isr.iter().map(|r| *r as u32).collect(),
                    leader_address: p
                        .leader
                        .and_then(|l| cluster.broker_addr(l))
                        .unwrap_or_default(),
                    log_start_offset,
                    high_watermark,
                    log_end_offset,
                    size_bytes,
                }
            })
            .collect();
        let replication_factor = topic
            .partitions
            .first()
            .map_or(0, |p| p.target.as_ref().unwrap_or(&p.replicas).len() as u32);
        Ok(TopicDescription {
            name: name.to_string(),
            internal: name.starts_with("__"),
            replication_factor,
            configs: topic.configs.clone(),
            partitions,
        })
    }

    pub(crate) fn list_topics_in_cluster(&self, include_internal: bool) -> Vec<TopicDescription> {
        let cluster = self.cluster();
        let names: Vec<String> = cluster.node.state().topics.keys().cloned().collect();
        names
            .iter()
            .filter(|n| include_internal || !n.starts_with("__"))
            .filter_map(|n| self.describe_topic_in_cluster(n).ok())
            .collect()
    }

    /// The cluster as this node sees it.
    pub fn cluster_status(&self) -> ClusterStatus {
        let cluster = self.cluster();
        let state = cluster.node.state();
        let members = cluster.node.members();
        let liveness = cluster.liveness();
        let mut leaders: BTreeMap<u64, u32> = BTreeMap::new();
        let mut replicas: BTreeMap<u64, u32> = BTreeMap::new();
        let mut under_replicated = Vec::new();
        let (mut partitions, mut offline, mut reassigning) = (0u64, 0u64, 0u64);
        for (name, topic) in &state.topics {
            for (i, p) in topic.partitions.iter().enumerate() {
                partitions += 1;
                if p.target.is_some() {
                    reassigning += 1;
                }
                if let Some(l) = p.leader {
                    *leaders.entry(l).or_default() += 1;
                } else {
                    offline += 1;
                }
                for r in &p.replicas {
                    *replicas.entry(*r).or_default() += 1;
                }
                if p.isr.len() < p.replicas.len() || p.leader.is_none() {
                    under_replicated.push(UnderReplicated {
                        topic: name.clone(),
                        partition: i as u32,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        leader: p.leader,
                    });
                }
            }
        }
        let mut ids: Vec<u64> = state.brokers.keys().copied().collect();
        ids.extend(members.voters.keys());
        ids.extend(members.learners.keys());
        ids.sort_unstable();
        ids.dedup();
        let nodes = ids
            .into_iter()
            .map(|id| {
                let broker = state.brokers.get(&id);
                let address = broker
                    .map(|b| b.addr.clone())
                    .or_else(|| members.voters.get(&id).cloned())
                    .or_else(|| members.learners.get(&id).cloned())
                    .unwrap_or_default();
                let role = if members.voters.contains_key(&id) {
                    "voter"
                } else if members.learners.contains_key(&id) {
                    "learner"
                } else {
                    ""
                };
                NodeStatus {
                    id,
                    address,
                    role: role.to_string(),
                    live: liveness.get(&id).copied().unwrap_or(false),
                    rack: broker.and_then(|b| b.rack.clone()),
                    draining: broker.is_some_and(|b| b.draining),
                    leaders: leaders.get(&id).copied().unwrap_or(0),
                    replicas: replicas.get(&id).copied().unwrap_or(0),
                }
            })
            .collect();
        let quorum = cluster.node.has_quorum();
        ClusterStatus {
            cluster_id: cluster.cluster_id.clone(),
            node_id: cluster.id,
            controller: cluster.node.leader().map(|(id, _)| id).filter(|_| quorum),
            quorum,
            nodes,
            under_replicated,
            partitions,
            offline_partitions: offline,
            reassigning,
        }
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> String {
        self.cluster().cluster_id.clone()
    }

    /// True when the metadata quorum has a leader this node can reach.
    pub fn quorum_ok(&self) -> bool {
        self.cluster().node.has_quorum()
    }

    fn redirect(cluster: &Cluster) -> ControllerRedirect {
        match cluster.node.leader() {
            Some((_, addr)) => ControllerRedirect::Controller(addr),
            None => ControllerRedirect::Unknown,
        }
    }

    /// Controller side of a join.
    ///
    /// # Errors
    /// `Cluster` for a wrong cluster id or a node id a live node uses;
    /// `NoQuorum` when the change cannot be made.
    pub async fn handle_join(
        &self,
        node_id: u64,
        address: String,
        rack: Option<String>,
        cluster_id: &str,
    ) -> Result<JoinReply> {
        let cluster = self.cluster();
        if !cluster_id.is_empty() && cluster_id != cluster.cluster_id {
            return Err(Error::Cluster(format!(
                "wrong cluster id: this cluster is {:?}, the node says {cluster_id:?}",
                cluster.cluster_id
            )));
        }
        if node_id == 0 {
            return Err(Error::Cluster("node id 0 is not allowed".into()));
        }
        if !cluster.node.is_leader() {
            return Ok(JoinReply::Redirect(Self::redirect(cluster)));
        }
        let members = cluster.node.members();
        let known = members
            .voters
            .get(&node_id)
            .or_else(|| members.learners.get(&node_id));
        if let Some(existing) = known
            && *existing != address
        {
            let live = cluster.liveness().get(&node_id).copied().unwrap_or(false);
            if live || node_id == cluster.id {
                return Err(Error::Cluster(format!(
                    "duplicate node id: node {node_id} is already in the cluster, live at {existing}"
                )));
            }
        }
        let voter = members.voters.contains_key(&node_id)
            || members.voters.len() < cluster.config.max_voters;
        cluster
            .node
            .add_node(node_id, address.clone(), voter)
            .await
            .map_err(|e| Error::NoQuorum(format!("adding node {node_id}: {e}")))?;
        cluster.heard_from(node_id);
        register_if_needed(cluster, node_id, &address, rack).await;
        info!(node = node_id, %address, voter, "node joined");
        Ok(JoinReply::Joined { voter })
    }

    /// Controller side of a heartbeat; `Ok(Some(fenced))`, or a redirect.
    ///
    /// # Errors
    /// `Cluster` for a node that is not a member.
    pub fn handle_heartbeat(
        &self,
        node_id: u64,
        address: String,
        rack: Option<String>,
    ) -> Result<std::result::Result<bool, ControllerRedirect>> {
        let cluster = self.cluster();
        if !cluster.node.is_leader() {
            return Ok(Err(Self::redirect(cluster)));
        }
        let members = cluster.node.members();
        if !members.voters.contains_key(&node_id) && !members.learners.contains_key(&node_id) {
            return Err(Error::Cluster(format!(
                "node {node_id} is not a member of cluster {:?}",
                cluster.cluster_id
            )));
        }
        cluster.heard_from(node_id);
        let fenced = cluster
            .node
            .state()
            .brokers
            .get(&node_id)
            .is_none_or(|b| b.fenced);
        let needs_registration = cluster
            .node
            .state()
            .brokers
            .get(&node_id)
            .is_none_or(|b| b.fenced || b.addr != address || b.rack != rack);
        if needs_registration {
            let cluster = Arc::clone(cluster);
            self.inner.tracker.spawn(async move {
                register_if_needed(&cluster, node_id, &address, rack).await;
            });
        }
        Ok(Ok(fenced))
    }

    /// Moves a partition to `replicas` (the first is the preferred leader).
    ///
    /// # Errors
    /// `InvalidRequest` for unknown brokers or partitions; `NoQuorum`.
    pub async fn reassign(&self, topic: &str, partition: u32, replicas: Vec<u64>) -> Result<()> {
        let cluster = self.cluster();
        cluster
            .propose(MetadataRequest::Reassign {
                topic: topic.to_string(),
                partition,
                replicas,
            })
            .await
            .map(|_| ())
    }

    /// Moves every replica and all leadership off `node_id` and marks it
    /// draining; returns the partitions that move.
    ///
    /// # Errors
    /// `InvalidRequest` when no node can take a replica (saying why);
    /// `NoQuorum`.
    pub async fn drain_node(&self, node_id: u64) -> Result<Vec<PartitionMove>> {
        let cluster = self.cluster();
        let state = cluster.node.state();
        if !state.brokers.contains_key(&node_id) {
            return Err(Error::InvalidRequest(format!("unknown node {node_id}")));
        }
        let plan = drain_plan(&state, node_id).map_err(Error::InvalidRequest)?;
        cluster
            .propose(MetadataRequest::SetDraining {
                id: node_id,
                draining: true,
            })
            .await?;
        let moves = self.carry_out(&state, plan).await?;
        info!(node = node_id, moved = moves.len(), "draining");
        Ok(moves)
    }

    /// Takes a draining node back: it may hold replicas and lead again
    /// (a `rebalance` gives it its share).
    ///
    /// # Errors
    /// `InvalidRequest` for an unknown node; `NoQuorum`.
    pub async fn undrain_node(&self, node_id: u64) -> Result<()> {
        let cluster = self.cluster();
        if !cluster.node.state().brokers.contains_key(&node_id) {
            return Err(Error::InvalidRequest(format!("unknown node {node_id}")));
        }
        cluster
            .propose(MetadataRequest::SetDraining {
                id: node_id,
                draining: false,
            })
            .await?;
        info!(node = node_id, "no longer draining");
        Ok(())
    }

    /// Proposes a plan's reassignments; returns what each one moves.
    async fn carry_out(
        &self,
        state: &MetadataState,
        plan: Vec<MetadataRequest>,
    ) -> Result<Vec<PartitionMove>> {
        let mut moves = Vec::with_capacity(plan.len());
        for request in plan {
            if let MetadataRequest::Reassign {
                topic,
                partition,
                replicas,
            } = &request
            {
                let from = state
                    .topics
                    .get(topic)
                    .and_then(|t| t.partitions.get(*partition as usize))
                    .map(|p| p.replicas.clone())
                    .unwrap_or_default();
                moves.push(PartitionMove {
                    topic: topic.clone(),
                    partition: *partition,
                    from,
                    to: replicas.clone(),
                });
            }
            self.cluster().propose(request).await?;
        }
        Ok(moves)
    }

    /// Removes a drained node from the quorum and the metadata.
    ///
    /// # Errors
    /// `InvalidRequest` while it still holds replicas; `NoQuorum`.
    pub async fn remove_node(&self, node_id: u64) -> Result<()> {
        let cluster = self.cluster();
        if node_id == cluster.id && cluster.node.is_leader() {
            // Removing the leader works, but the answer could be lost.
            info!("removing the controller itself");
        }
        let state = cluster.node.state();
        if state.brokers.contains_key(&node_id) {
            cluster
                .propose(MetadataRequest::UnregisterBroker { id: node_id })
                .await?;
        }
        if !cluster.node.is_leader() {
            return Err(Error::NoQuorum(
                "send remove-node to the controller (see `fjord cluster status`)".into(),
            ));
        }
        cluster
            .node
            .remove_node(node_id)
            .await
            .map_err(|e| Error::NoQuorum(format!("removing node {node_id}: {e}")))?;
        info!(node = node_id, "node removed");
        Ok(())
    }

    /// Evens out replicas and leaders over the live brokers, after
    /// bringing every partition to `replication_factor` replicas when
    /// given; returns the partitions that move.
    ///
    /// # Errors
    /// `InvalidRequest` for a replication factor the live nodes cannot
    /// hold; `NoQuorum`.
    pub async fn rebalance(&self, replication_factor: Option<u32>) -> Result<Vec<PartitionMove>> {
        let state = self.cluster().node.state();
        let plan = rebalance_plan(&state, replication_factor.map(|r| r as usize))
            .map_err(Error::InvalidRequest)?;
        let moves = self.carry_out(&state, plan).await?;
        info!(moved = moves.len(), ?replication_factor, "rebalancing");
        Ok(moves)
    }
}
