//! Group membership at run time: the membership core of `group.rs` against
//! the clock and answers waiting joins.
//!
//! # Concurrency
//! One `std::sync::Mutex` guards the groups and the join waiters; it is
//! never held across an `.await`. A background task calls [`Memberships::tick`]
//! every 100 ms to expire sessions and rebalance deadlines.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::group::{Assignment, Group, GroupState, JoinOutcome, Member};
use crate::{Error, Result};

/// What a member asks for when it joins.
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    pub(crate) group_id: String,
    /// Empty on the first join: the coordinator assigns one.
    pub(crate) member_id: String,
    pub(crate) client_id: String,
    /// Topic → partition count.
    pub(crate) topics: BTreeMap<String, u32>,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
}

/// A member as `DescribeGroup` shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub assignment: Assignment,
}

/// Membership view of one group.
#[derive(Debug, Clone)]
pub struct Membership {
    pub state: GroupState,
    pub generation: i32,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Default)]
struct State {
    groups: BTreeMap<String, Group>,
    waiters: HashMap<(String, String), oneshot::Sender<JoinOutcome>>,
}

#[derive(Debug, Default)]
pub(crate) struct Memberships {
    state: Mutex<State>,
    next_member: AtomicU64,
}

impl State {
    fn deliver(&mut self, group: &str, outcomes: Vec<JoinOutcome>) {
        for outcome in outcomes {
            if let Some(tx) = self
                .waiters
                .remove(&(group.to_string(), outcome.member_id.clone()))
            {
                let _ = tx.send(outcome);
            }
        }
    }
}

impl Memberships {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Joins (or rejoins) and waits for the rebalance to complete.
    ///
    /// # Errors
    /// `UnknownMember` when the rebalance completed without this member
    /// (it was replaced by a newer join or the group moved on): rejoin.
    ///
    /// # Cancel safety
    /// If cancelled, the member stays registered and is dropped by the
    /// rebalance timeout or its session timeout.
    pub(crate) async fn join(&self, request: JoinRequest) -> Result<JoinOutcome> {
        let member_id = if request.member_id.is_empty() {
            let n = self.next_member.fetch_add(1, Ordering::Relaxed);
            let client = if request.client_id.is_empty() {
                "member"
            } else {
                request.client_id.as_str()
            };
            format!("{client}-{n}-{:x}", crate::clock::now_ms())
        } else {
            request.member_id.clone()
        };
        let now = Instant::now();
        let member = Member {
            client_id: request.client_id.clone(),
            topics: request.topics.clone(),
            session_timeout: request.session_timeout,
            rebalance_timeout: request.rebalance_timeout,
            last_seen: now,
            joining: true,
            assignment: Vec::new(),
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.lock();
            state
                .waiters
                .insert((request.group_id.clone(), member_id.clone()), tx);
            let group = state
                .groups
                .entry(request.group_id.clone())
                .or_insert_with(|| Group::new(&request.group_id));
            let done = group.join(&member_id, member, now);
            state.deliver(&request.group_id, done);
        }
        rx.await.map_err(|_| Error::UnknownMember {
            group_id: request.group_id,
            member_id,
        })
    }

    /// # Errors
    /// `UnknownMember` or `IllegalGeneration`: the member must rejoin.
    pub(crate) fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<bool> {
        let mut state = self.lock();
        let group = state
            .groups
            .get_mut(group_id)
            .ok_or_else(|| Error::UnknownMember {
                group_id: group_id.to_string(),
                member_id: member_id.to_string(),
            })?;
        group.heartbeat(member_id, generation, Instant::now())
    }

    pub(crate) fn leave(&self, group_id: &str, member_id: &str) {
        let mut state = self.lock();
        let Some(group) = state.groups.get_mut(group_id) else {
            return;
        };
        let done = group.leave(member_id, Instant::now());
        state
            .waiters
            .remove(&(group_id.to_string(), member_id.to_string()));
        state.deliver(group_id, done);
    }

    /// # Errors
    /// As [`Group::check_commit`].
    pub(crate) fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<()> {
        let state = self.lock();
        match state.groups.get(group_id) {
            Some(group) => group.check_commit(member_id, generation),
            None if member_id.is_empty() => Ok(()),
            None => Err(Error::UnknownMember {
                group_id: group_id.to_string(),
                member_id: member_id.to_string(),
            }),
        }
    }

    pub(crate) fn tick(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        let ids: Vec<String> = state.groups.keys().cloned().collect();
        for id in ids {
            let done = match state.groups.get_mut(&id) {
                Some(group) => group.tick(now),
                None => continue,
            };
            state.deliver(&id, done);
        }
    }

    pub(crate) fn membership(&self, group_id: &str) -> Option<Membership> {
        let state = self.lock();
        let group = state.groups.get(group_id)?;
        Some(Membership {
            state: group.state,
            generation: group.generation,
            members: group
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Forgets a group without members (deleted); `Err` with its member
    /// count when it has some.
    pub(crate) fn forget_empty(&self, group_id: &str) -> std::result::Result<(), usize> {
        let mut state = self.lock();
        match state.groups.get(group_id) {
            Some(group) if !group.members.is_empty() => Err(group.members.len()),
            Some(_) => {
                state.groups.remove(group_id);
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub(crate) fn group_ids(&self) -> Vec<String> {
        self.lock().groups.keys().cloned().collect()
    }

    /// (groups, members) for the metrics page.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (
            state.groups.len(),
            state.groups.values().map(|g| g.members.len()).sum(),
        )
    }
}
