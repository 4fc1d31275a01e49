//! The quorum's members: who votes and who learns, adding and removing
//! nodes, and the voter changes the controller decides (`voters.rs`).
//!
//! Every change here runs on the leader and goes through Raft's joint
//! consensus (openraft's `change_membership`), one at a time; a change
//! asked for while another is under way fails and is asked again later.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{BasicNode, ChangeMembers};

use crate::node::{Error, MetadataNode};
use crate::voters::VoterChange;

/// The quorum's members as this node knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// id → address.
    pub voters: BTreeMap<u64, String>,
    pub learners: BTreeMap<u64, String>,
}

fn raft_error(e: impl std::fmt::Display) -> Error {
    Error::Raft(e.to_string())
}

impl MetadataNode {
    /// Voters and learners of the latest membership this node knows.
    pub fn members(&self) -> Members {
        let metrics = self.raft().metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let mut members = Members::default();
        for (id, node) in membership.nodes() {
            if membership.voter_ids().any(|v| v == *id) {
                members.voters.insert(*id, node.addr.clone());
            } else {
                members.learners.insert(*id, node.addr.clone());
            }
        }
        members
    }

    /// Adds a node as a learner (waiting until it has caught up) and, with
    /// `voter`, promotes it. Must run on the leader.
    ///
    /// # Errors
    /// `Raft`, including "not the leader".
    pub async fn add_node(&self, id: u64, addr: String, voter: bool) -> Result<(), Error> {
        self.raft()
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(raft_error)?;
        if voter {
            self.raft()
                .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
                .await
                .map_err(raft_error)?;
        }
        Ok(())
    }

    /// Removes a node from the quorum (as voter and learner). Must run on
    /// the leader.
    ///
    /// # Errors
    /// `Raft`, including "not the leader".
    pub async fn remove_node(&self, id: u64) -> Result<(), Error> {
        let ids: BTreeSet<u64> = [id].into();
        if self.members().voters.contains_key(&id) {
            self.raft()
                .change_membership(ChangeMembers::RemoveVoters(ids.clone()), false)
                .await
                .map_err(raft_error)?;
        }
        self.raft()
            .change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await
            .map_err(raft_error)?;
        Ok(())
    }

    /// Carries out a voter change the controller decided: a learner is
    /// promoted, or a silent voter is demoted to learner while a learner
    /// takes its place (one joint change). Must run on the leader; returns
    /// once the change is committed.
    ///
    /// # Errors
    /// `Raft`: not the leader, a learner that left, another membership
    /// change under way.
    pub async fn change_voters(&self, change: &VoterChange) -> Result<(), Error> {
        let request = match *change {
            VoterChange::Promote { learner } => ChangeMembers::AddVoterIds([learner].into()),
            VoterChange::Replace { .. } => {
                let voters: BTreeSet<u64> = self.members().voters.keys().copied().collect();
                ChangeMembers::ReplaceAllVoters(change.voters_after(&voters))
            }
        };
        // `true`: a voter taken out stays a learner.
        self.raft()
            .change_membership(request, true)
            .await
            .map_err(raft_error)?;
        Ok(())
    }

    /// On the leader: how many Raft log entries each other member's copy
    /// is behind the leader's (members the leader has not reached yet
    /// count as the whole log behind). Empty on other nodes.
    pub fn log_lags(&self) -> BTreeMap<u64, u64> {
        let receiver = self.raft().metrics();
        let metrics = receiver.borrow();
        let last = metrics.last_log_index.unwrap_or(0);
        let Some(replication) = &metrics.replication else {
            return BTreeMap::new();
        };
        replication
            .iter()
            .map(|(id, matched)| {
                let at = matched.map_or(0, |m| m.index);
                (*id, last.saturating_sub(at))
            })
            .collect()
    }
}
