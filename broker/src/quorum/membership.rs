//! Membership of the quorum, answered by the controller: nodes joining,
//! brokers' heartbeats, nodes removed, and the voters the quorum keeps
//! (decided by `fjord_raft::plan_voters`, carried out here).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use fjord_raft::{MemberHealth, MetadataRequest, VoterPolicy, plan_voters};
use tracing::{info, warn};

use super::Quorum;

/// How long the controller waits for a voter change to commit.
const VOTER_CHANGE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
use super::loops::register_if_needed;
use crate::{Error, Result};

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

impl Quorum {
    fn redirect(&self) -> ControllerRedirect {
        let cluster = self;
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
    pub(crate) async fn handle_join(
        &self,
        node_id: u64,
        address: String,
        rack: Option<String>,
        cluster_id: &str,
    ) -> Result<JoinReply> {
        let cluster = self;
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
            return Ok(JoinReply::Redirect(self.redirect()));
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
    pub(crate) fn handle_heartbeat(
        self: &Arc<Self>,
        node_id: u64,
        address: String,
        rack: Option<String>,
    ) -> Result<std::result::Result<bool, ControllerRedirect>> {
        let cluster = self;
        if !cluster.node.is_leader() {
            return Ok(Err(self.redirect()));
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
            let cluster = Arc::clone(self);
            self.tracker.spawn(async move {
                register_if_needed(&cluster, node_id, &address, rack).await;
            });
        }
        Ok(Ok(fenced))
    }

    /// Removes a drained node from the quorum and the metadata.
    ///
    /// # Errors
    /// `InvalidRequest` while it still holds replicas; `NoQuorum`.
    pub(crate) async fn remove_node(&self, node_id: u64) -> Result<()> {
        let cluster = self;
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
        // A voter removed leaves a place a learner can take at once.
        self.keep_voters().await;
        Ok(())
    }

    /// Controller side: brings the voters back to `max_voters` when a
    /// voter was removed or has been silent for `voter_replace_after`,
    /// promoting a live learner whose Raft log has caught up (see
    /// `fjord_raft::plan_voters`). One change per call.
    pub(crate) async fn keep_voters(&self) {
        if !self.node.is_leader() {
            return;
        }
        let members = self.node.members();
        let now = Instant::now();
        let health = self.member_health(&members, now);
        let policy = VoterPolicy {
            max_voters: self.config.max_voters,
            replace_after: self.config.voter_replace_after,
        };
        let state = self.node.state();
        let Some(change) = plan_voters(&state, &members, &health, &policy, now) else {
            return;
        };
        info!(%change, "keeping the quorum's voters");
        let changed = tokio::time::timeout(VOTER_CHANGE_WAIT, self.node.change_voters(&change));
        match changed.await {
            Ok(Ok(())) => {
                let voters: Vec<u64> = self.node.members().voters.keys().copied().collect();
                info!(%change, ?voters, "quorum voters changed");
            }
            Ok(Err(e)) => {
                warn!(%change, "changing the quorum's voters failed (asked again next round): {e}")
            }
            Err(_) => {
                warn!(%change, "changing the quorum's voters did not commit within {VOTER_CHANGE_WAIT:?} (asked again next round)")
            }
        }
    }

    /// What the controller knows of each member: live (as it fences),
    /// when last heard, how far its Raft log is behind.
    fn member_health(
        &self,
        members: &fjord_raft::Members,
        now: Instant,
    ) -> BTreeMap<u64, MemberHealth> {
        let state = self.node.state();
        let lags = self.node.log_lags();
        let since = (*super::lock(&self.controller_since)).unwrap_or(now);
        let heard = super::lock(&self.heartbeats).clone();
        members
            .voters
            .keys()
            .chain(members.learners.keys())
            .map(|id| {
                let fenced = state.brokers.get(id).is_some_and(|b| b.fenced);
                let me = *id == self.id;
                let health = MemberHealth {
                    live: me || (!fenced && self.alive(*id, now)),
                    last_heard: if me {
                        now
                    } else {
                        heard.get(id).copied().unwrap_or(since).max(since)
                    },
                    log_lag: if me { Some(0) } else { lags.get(id).copied() },
                };
                (*id, health)
            })
            .collect()
    }

    /// True when topics created now get all their replicas: the quorum
    /// has fewer than three voters (a node alone, or two), or every voter
    /// is live and at least three nodes are. False before the node knows
    /// its quorum.
    pub(crate) fn enough_live_voters(&self) -> bool {
        let members = self.node.members();
        if members.voters.is_empty() {
            return false;
        }
        if members.voters.len() < 3 {
            return true;
        }
        let live = self.liveness();
        let voters_live = members
            .voters
            .keys()
            .all(|v| live.get(v).copied().unwrap_or(false));
        voters_live && self.has_quorum() && live.values().filter(|l| **l).count() >= 3
    }
}
