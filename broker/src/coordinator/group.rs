//! Consumer-group membership: the coordinator's decision core.
//!
//! Sans-IO: every method takes the current time and returns what must be
//! said to waiting members; the coordinator (`coordinator.rs`) owns the
//! clock, the channels and the timer.
//!
//! # Protocol
//! A member joins with its topics. A join (or a leave, or a member whose
//! session expired) starts a rebalance: the group waits until every member
//! has (re)joined or the rebalance timeout passes (members that did not
//! rejoin are dropped), then bumps the generation, assigns partitions with
//! the range assignor and answers every pending join. Members learn of a
//! rebalance from their heartbeat (`rebalance = true`) and rejoin.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

/// Group states, as `DescribeGroup` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    Stable,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A member's partitions: `(topic, partitions)`.
pub type Assignment = Vec<(String, Vec<u32>)>;

/// What a completed join tells the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    pub member_id: String,
    pub generation: i32,
    pub assignment: Assignment,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) client_id: String,
    /// Topic → partition count, as known when the member joined.
    pub(crate) topics: BTreeMap<String, u32>,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) last_seen: Instant,
    /// Waiting for the current rebalance to complete.
    pub(crate) joining: bool,
    pub(crate) assignment: Assignment,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) state: GroupState,
    pub(crate) generation: i32,
    pub(crate) members: BTreeMap<String, Member>,
    rebalance_deadline: Option<Instant>,
}

/// Range assignor: for each topic, members subscribed to it (sorted by id)
/// get contiguous ranges, the first ones one extra when it does not divide.
pub(crate) fn range_assign(members: &BTreeMap<String, Member>) -> BTreeMap<String, Assignment> {
    let mut topics: BTreeMap<&str, u32> = BTreeMap::new();
    for member in members.values() {
        for (topic, count) in &member.topics {
            let entry = topics.entry(topic.as_str()).or_insert(0);
            *entry = (*entry).max(*count);
        }
    }
    let mut out: BTreeMap<String, Assignment> =
        members.keys().map(|id| (id.clone(), Vec::new())).collect();
    for (topic, count) in topics {
        let subscribed: Vec<&String> = members
            .iter()
            .filter(|(_, m)| m.topics.contains_key(topic))
            .map(|(id, _)| id)
            .collect();
        let n = subscribed.len() as u32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, id) in subscribed.into_iter().enumerate() {
            let take = per + u32::from((i as u32) < extra);
            if take > 0
                && let Some(assignment) = out.get_mut(id)
            {
                assignment.push((topic.to_string(), (next..next + take).collect()));
            }
            next += take;
        }
    }
    out
}

impl Group {
    pub(crate) fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            members: BTreeMap::new(),
            rebalance_deadline: None,
        }
    }

    fn start_rebalance(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default();
            self.rebalance_deadline = Some(now + timeout);
            self.state = GroupState::PreparingRebalance;
        }
    }

    /// Records a join; returns the outcomes of joins completed by it.
    pub(crate) fn join(
        &mut self,
        member_id: &str,
        mut member: Member,
        now: Instant,
    ) -> Vec<JoinOutcome> {
        member.joining = true;
        member.last_seen = now;
        let changed = match self.members.get(member_id) {
            Some(old) => old.topics != member.topics || self.state != GroupState::Stable,
            None => true,
        };
        if let Some(old) = self.members.get(member_id) {
            member.assignment = old.assignment.clone();
        }
        self.members.insert(member_id.to_string(), member);
        if changed || self.state == GroupState::Stable {
            self.start_rebalance(now);
        }
        self.try_complete(now, false)
    }

    /// Completes the rebalance if everyone rejoined, or (with `expired`)
    /// dropping those who did not.
    fn try_complete(&mut self, _now: Instant, expired: bool) -> Vec<JoinOutcome> {
        if self.state != GroupState::PreparingRebalance {
            return Vec::new();
        }
        let all_joined = self.members.values().all(|m| m.joining);
        if !all_joined && !expired {
            return Vec::new();
        }
        self.members.retain(|_, m| m.joining);
        self.generation += 1;
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            return Vec::new();
        }
        let assignments = range_assign(&self.members);
        self.state = GroupState::Stable;
        let generation = self.generation;
        self.members
            .iter_mut()
            .map(|(id, m)| {
                m.joining = false;
                m.assignment = assignments.get(id).cloned().unwrap_or_default();
                JoinOutcome {
                    member_id: id.clone(),
                    generation,
                    assignment: m.assignment.clone(),
                }
            })
            .collect()
    }

    /// A heartbeat: `Ok(true)` when the member must rejoin.
    ///
    /// # Errors
    /// `UnknownMember`, or `IllegalGeneration` when the member is not in the
    /// current generation (and no rebalance is pending).
    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<bool> {
        let rebalancing = self.state == GroupState::PreparingRebalance;
        let member = self
            .members
            .get_mut(member_id)
            .ok_or_else(|| Error::UnknownMember {
                group_id: self.id.clone(),
                member_id: member_id.to_string(),
            })?;
        member.last_seen = now;
        if rebalancing {
            return Ok(true);
        }
        if generation != self.generation {
            return Err(Error::IllegalGeneration {
                group_id: self.id.clone(),
                generation,
                current: self.generation,
            });
        }
        Ok(false)
    }

    /// Checks a commit's membership: a standalone commit (empty member,
    /// generation -1) is allowed while the group has no members.
    ///
    /// # Errors
    /// `UnknownMember` or `IllegalGeneration`.
    pub(crate) fn check_commit(&self, member_id: &str, generation: i32) -> Result<()> {
        if member_id.is_empty() && generation < 0 {
            if self.members.is_empty() {
                return Ok(());
            }
            return Err(Error::IllegalGeneration {
                group_id: self.id.clone(),
                generation,
                current: self.generation,
            });
        }
        if !self.members.contains_key(member_id) {
            return Err(Error::UnknownMember {
                group_id: self.id.clone(),
                member_id: member_id.to_string(),
            });
        }
        if generation != self.generation {
            return Err(Error::IllegalGeneration {
                group_id: self.id.clone(),
                generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    /// Removes a member; returns joins completed by its departure.
    pub(crate) fn leave(&mut self, member_id: &str, now: Instant) -> Vec<JoinOutcome> {
        if self.members.remove(member_id).is_none() {
            return Vec::new();
        }
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.rebalance_deadline = None;
            return Vec::new();
        }
        self.start_rebalance(now);
        self.try_complete(now, false)
    }

    /// Expires sessions and rebalance deadlines; returns completed joins.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<JoinOutcome> {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                !m.joining && now.saturating_duration_since(m.last_seen) > m.session_timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut done = Vec::new();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "session expired");
            done.extend(self.leave(&id, now));
        }
        if self.rebalance_deadline.is_some_and(|d| now >= d) {
            done.extend(self.try_complete(now, true));
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(topics: &[(&str, u32)], now: Instant) -> Member {
        Member {
            client_id: "c".into(),
            topics: topics.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            last_seen: now,
            joining: false,
            assignment: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_members_split_partitions_and_a_leave_gives_all_to_the_other() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let done = g.join("a", member(&[("t", 4)], now), now);
        assert_eq!(done.len(), 1);
        assert_eq!(
            done[0].assignment,
            vec![("t".to_string(), vec![0, 1, 2, 3])]
        );
        assert_eq!((g.state, g.generation), (GroupState::Stable, 1));

        // b joins: a must rejoin (learns it from its heartbeat) before anyone is answered.
        assert!(g.join("b", member(&[("t", 4)], now), now).is_empty());
        assert!(g.heartbeat("a", 1, now).unwrap());
        let done = g.join("a", member(&[("t", 4)], now), now);
        assert_eq!(done.len(), 2);
        let by_id: BTreeMap<_, _> = done.into_iter().map(|o| (o.member_id.clone(), o)).collect();
        assert_eq!(by_id["a"].assignment, vec![("t".to_string(), vec![0, 1])]);
        assert_eq!(by_id["b"].assignment, vec![("t".to_string(), vec![2, 3])]);
        assert_eq!(by_id["a"].generation, 2);

        // A stale generation is refused once stable.
        assert!(matches!(
            g.heartbeat("a", 1, now),
            Err(Error::IllegalGeneration { .. })
        ));
        assert!(matches!(
            g.heartbeat("zz", 2, now),
            Err(Error::UnknownMember { .. })
        ));

        // b leaves; a rejoins and gets everything.
        assert!(g.leave("b", now).is_empty());
        let done = g.join("a", member(&[("t", 4)], now), now);
        assert_eq!(
            done[0].assignment,
            vec![("t".to_string(), vec![0, 1, 2, 3])]
        );
        assert_eq!(g.generation, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_sessions_and_missed_rejoins_are_dropped() {
        let start = Instant::now();
        let mut g = Group::new("g");
        g.join("a", member(&[("t", 2)], start), start);
        g.join("b", member(&[("t", 2)], start), start);
        g.heartbeat("a", 1, start).unwrap();
        g.join("a", member(&[("t", 2)], start), start);
        assert_eq!(g.state, GroupState::Stable);
        let generation = g.generation;
        // a keeps heartbeating, b goes silent.
        let later = start + Duration::from_secs(8);
        g.heartbeat("a", generation, later).unwrap();
        let later = start + Duration::from_secs(11);
        assert!(g.tick(later).is_empty());
        assert!(!g.members.contains_key("b"));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        // a never rejoins: after the rebalance timeout the group is empty.
        let done = g.tick(later + Duration::from_secs(11));
        assert!(done.is_empty());
        assert_eq!(g.state, GroupState::Empty);
    }

    #[test]
    fn range_assignor_gives_extra_partitions_to_the_first_members() {
        let now = Instant::now();
        let mut members = BTreeMap::new();
        for id in ["m1", "m2", "m3"] {
            members.insert(id.to_string(), member(&[("t", 7), ("u", 1)], now));
        }
        let a = range_assign(&members);
        assert_eq!(
            a["m1"],
            vec![("t".to_string(), vec![0, 1, 2]), ("u".to_string(), vec![0])]
        );
        assert_eq!(a["m2"], vec![("t".to_string(), vec![3, 4])]);
        assert_eq!(a["m3"], vec![("t".to_string(), vec![5, 6])]);
    }

    #[test]
    fn standalone_commits_only_for_groups_without_members() {
        let now = Instant::now();
        let mut g = Group::new("g");
        g.check_commit("", -1).unwrap();
        g.join("a", member(&[("t", 1)], now), now);
        assert!(g.check_commit("", -1).is_err());
        g.check_commit("a", 1).unwrap();
        assert!(g.check_commit("a", 0).is_err());
    }
}
