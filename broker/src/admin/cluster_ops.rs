//! The cluster as an operator sees and changes it: its status, and the
//! scaling operations (reassign, drain, undrain, remove, rebalance).

use std::collections::BTreeMap;

use fjord_raft::{MetadataRequest, MetadataState, drain_plan, rebalance_plan};
use tracing::info;

use super::Admin;
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
    /// The voters the answering node's quorum keeps (`--max-voters`).
    pub max_voters: u32,
    pub nodes: Vec<NodeStatus>,
    pub under_replicated: Vec<UnderReplicated>,
    pub partitions: u64,
    pub offline_partitions: u64,
    pub reassigning: u64,
}

impl Admin {
    /// The cluster as this node sees it.
    pub fn cluster_status(&self) -> ClusterStatus {
        let cluster = &self.quorum;
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
            max_voters: cluster.config.max_voters as u32,
            nodes,
            under_replicated,
            partitions,
            offline_partitions: offline,
            reassigning,
        }
    }

    /// Moves a partition to `replicas` (the first is the preferred leader).
    ///
    /// # Errors
    /// `InvalidRequest` for unknown brokers or partitions; `NoQuorum`.
    pub async fn reassign(&self, topic: &str, partition: u32, replicas: Vec<u64>) -> Result<()> {
        let cluster = &self.quorum;
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
        let cluster = &self.quorum;
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
        let cluster = &self.quorum;
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
            self.quorum.propose(request).await?;
        }
        Ok(moves)
    }

    /// Evens out replicas and leaders over the live brokers, after
    /// bringing every partition to `replication_factor` replicas when
    /// given; returns the partitions that move.
    ///
    /// # Errors
    /// `InvalidRequest` for a replication factor the live nodes cannot
    /// hold; `NoQuorum`.
    pub async fn rebalance(&self, replication_factor: Option<u32>) -> Result<Vec<PartitionMove>> {
        let state = self.quorum.state();
        let plan = rebalance_plan(&state, replication_factor.map(|r| r as usize))
            .map_err(Error::InvalidRequest)?;
        let moves = self.carry_out(&state, plan).await?;
        info!(moved = moves.len(), ?replication_factor, "rebalancing");
        Ok(moves)
    }

    /// Removes a drained node from the quorum and the metadata.
    ///
    /// # Errors
    /// `InvalidRequest` while it still holds replicas; `NoQuorum`.
    pub async fn remove_node(&self, node_id: u64) -> Result<()> {
        self.quorum.remove_node(node_id).await
    }
}
