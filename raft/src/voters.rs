//! Which members of the quorum vote, sans-IO: the controller keeps the
//! configured number of voters while enough live nodes exist.
//!
//! The controller feeds [`plan_voters`] the committed [`MetadataState`],
//! the quorum's [`Members`], what it knows of each member (is it live,
//! when was it last heard, how far behind the leader is its copy of the
//! Raft log) and the time, and carries out the [`VoterChange`] it returns
//! (`MetadataNode::change_voters`). Nothing here does I/O or reads a
//! clock, so every rule is a unit test.
//!
//! # Rules
//! - A learner is a **candidate** when it is live, registered as an
//!   unfenced, non-draining broker, and its Raft log is at most
//!   [`CAUGHT_UP_LAG`] entries behind the leader's. No other learner is
//!   ever promoted.
//! - With fewer voters than `max_voters` (a voter was removed), the
//!   candidate with the lowest id is promoted.
//! - A voter silent for longer than `replace_after` is swapped for the
//!   candidate with the lowest id in one membership change; it stays a
//!   learner, and is promoted again like any other once it is back and a
//!   voter is missing. Without a candidate it stays a voter: demoting it
//!   alone would not let the quorum survive one more loss.
//! - No change leaves the voters without a live majority.
//! - One change at a time (Raft changes membership one step after the
//!   other); the controller asks again on its next round.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::membership::Members;
use crate::metadata::MetadataState;

/// Raft log entries a learner may be behind the leader and still count as
/// caught up: a live learner is a few entries behind at most.
pub const CAUGHT_UP_LAG: u64 = 16;

/// What the controller knows of one member of the quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberHealth {
    /// Heard within its session timeout (as the controller fences).
    pub live: bool,
    /// When the controller last heard it (or began to lead, if it has not
    /// heard it since).
    pub last_heard: Instant,
    /// Raft log entries its copy is behind the leader's; `None` when the
    /// leader does not know.
    pub log_lag: Option<u64>,
}

/// How many voters the quorum keeps, and when a silent one is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoterPolicy {
    /// Voters to keep (1, 3 or 5).
    pub max_voters: usize,
    /// A voter silent this long is swapped for a caught-up learner.
    pub replace_after: Duration,
}

/// A change to the quorum's voters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoterChange {
    /// A learner becomes a voter.
    Promote { learner: u64 },
    /// A silent voter becomes a learner and a learner a voter, in one step.
    Replace { voter: u64, learner: u64 },
}

impl VoterChange {
    /// The voter set after the change.
    pub fn voters_after(&self, voters: &BTreeSet<u64>) -> BTreeSet<u64> {
        let mut next = voters.clone();
        match *self {
            VoterChange::Promote { learner } => {
                next.insert(learner);
            }
            VoterChange::Replace { voter, learner } => {
                next.remove(&voter);
                next.insert(learner);
            }
        }
        next
    }
}

impl std::fmt::Display for VoterChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VoterChange::Promote { learner } => write!(f, "promote learner {learner} to voter"),
            VoterChange::Replace { voter, learner } => write!(
                f,
                "replace silent voter {voter} with learner {learner} (node {voter} stays a learner)"
            ),
        }
    }
}

/// The change that brings the voters back to `policy.max_voters`, if one
/// is needed and can be made (see the module's rules).
pub fn plan_voters(
    state: &MetadataState,
    members: &Members,
    health: &BTreeMap<u64, MemberHealth>,
    policy: &VoterPolicy,
    now: Instant,
) -> Option<VoterChange> {
    let voters: BTreeSet<u64> = members.voters.keys().copied().collect();
    let live = |id: &u64| health.get(id).is_some_and(|h| h.live);
    let candidate = members
        .learners
        .keys()
        .copied()
        .filter(|id| !voters.contains(id))
        .find(|id| health.get(id).is_some_and(|h| is_candidate(state, h, *id)))?;
    let change = if voters.len() < policy.max_voters {
        VoterChange::Promote { learner: candidate }
    } else {
        let silent = voters.iter().copied().find(|id| {
            health.get(id).is_none_or(|h| {
                !h.live && now.saturating_duration_since(h.last_heard) >= policy.replace_after
            })
        })?;
        VoterChange::Replace {
            voter: silent,
            learner: candidate,
        }
    };
    let after = change.voters_after(&voters);
    let live_after = after.iter().filter(|id| live(id)).count();
    (live_after * 2 > after.len()).then_some(change)
}

/// A learner that may become a voter.
fn is_candidate(state: &MetadataState, health: &MemberHealth, id: u64) -> bool {
    let registered = state
        .brokers
        .get(&id)
        .is_some_and(|b| !b.fenced && !b.draining);
    registered && health.live && health.log_lag.is_some_and(|lag| lag <= CAUGHT_UP_LAG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::tests::cluster;
    use crate::metadata::MetadataRequest;

    const POLICY: VoterPolicy = VoterPolicy {
        max_voters: 3,
        replace_after: Duration::from_secs(60),
    };

    fn members(voters: &[u64], learners: &[u64]) -> Members {
        let addr = |id: &u64| (*id, format!("127.0.0.1:{}", 9400 + id));
        Members {
            voters: voters.iter().map(addr).collect(),
            learners: learners.iter().map(addr).collect(),
        }
    }

    /// Every node live and caught up, heard at `t0`.
    fn healthy(ids: &[u64], t0: Instant) -> BTreeMap<u64, MemberHealth> {
        ids.iter()
            .map(|id| {
                let h = MemberHealth {
                    live: true,
                    last_heard: t0,
                    log_lag: Some(0),
                };
                (*id, h)
            })
            .collect()
    }

    fn silence(health: &mut BTreeMap<u64, MemberHealth>, id: u64) {
        if let Some(h) = health.get_mut(&id) {
            h.live = false;
        }
    }

    #[test]
    fn a_removed_voter_is_replaced_by_a_live_caught_up_learner() {
        let s = cluster(&[None, None, None, None]);
        let t0 = Instant::now();
        let health = healthy(&[1, 3, 4], t0);
        // Node 2 was removed: voters 1 and 3 are left, 4 is a learner.
        let plan = plan_voters(&s, &members(&[1, 3], &[4]), &health, &POLICY, t0);
        assert_eq!(plan, Some(VoterChange::Promote { learner: 4 }));
        // Three voters already: nothing to do.
        let full = members(&[1, 3, 4], &[]);
        assert_eq!(plan_voters(&s, &full, &health, &POLICY, t0), None);
    }

    #[test]
    fn a_learner_behind_silent_fenced_draining_or_unregistered_is_never_promoted() {
        let mut s = cluster(&[None, None, None, None]);
        let t0 = Instant::now();
        let two_voters = members(&[1, 3], &[4]);
        let mut health = healthy(&[1, 3, 4], t0);
        let plan = |s: &MetadataState, health: &BTreeMap<u64, MemberHealth>| {
            plan_voters(s, &two_voters, health, &POLICY, t0)
        };
        if let Some(h) = health.get_mut(&4) {
            h.log_lag = Some(CAUGHT_UP_LAG + 1);
        }
        assert_eq!(plan(&s, &health), None, "behind");
        if let Some(h) = health.get_mut(&4) {
            h.log_lag = None;
        }
        assert_eq!(plan(&s, &health), None, "lag unknown");
        let mut health = healthy(&[1, 3, 4], t0);
        silence(&mut health, 4);
        assert_eq!(plan(&s, &health), None, "silent");
        let health = healthy(&[1, 3, 4], t0);
        s.apply(&MetadataRequest::SetDraining {
            id: 4,
            draining: true,
        });
        assert_eq!(plan(&s, &health), None, "draining");
        s.apply(&MetadataRequest::SetDraining {
            id: 4,
            draining: false,
        });
        s.apply(&MetadataRequest::FenceBroker { id: 4 });
        assert_eq!(plan(&s, &health), None, "fenced");
        let unregistered = cluster(&[None, None, None]);
        assert_eq!(plan(&unregistered, &health), None, "not a broker");
    }

    #[test]
    fn a_voter_silent_past_the_limit_is_swapped_for_a_learner_and_not_before() {
        let s = cluster(&[None, None, None, None, None]);
        let t0 = Instant::now();
        let m = members(&[1, 2, 3], &[4, 5]);
        let mut health = healthy(&[1, 2, 3, 4, 5], t0);
        silence(&mut health, 2);
        let soon = t0 + Duration::from_secs(59);
        assert_eq!(plan_voters(&s, &m, &health, &POLICY, soon), None);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            plan_voters(&s, &m, &health, &POLICY, later),
            Some(VoterChange::Replace {
                voter: 2,
                learner: 4
            })
        );
        // Without a candidate the silent voter stays.
        let lone = members(&[1, 2, 3], &[]);
        assert_eq!(plan_voters(&s, &lone, &health, &POLICY, later), None);
    }

    #[test]
    fn no_plan_leaves_the_voters_without_a_live_majority() {
        let s = cluster(&[None, None, None, None, None]);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(3600);
        // Every split of five nodes into voters and learners, every
        // liveness, both quorum sizes.
        for max_voters in [3, 5] {
            let policy = VoterPolicy {
                max_voters,
                ..POLICY
            };
            for roles in 0..3u32.pow(5) {
                for alive in 0..32u32 {
                    let (mut voters, mut learners) = (Vec::new(), Vec::new());
                    let mut health = BTreeMap::new();
                    for id in 1..=5u64 {
                        match roles / 3u32.pow(id as u32 - 1) % 3 {
                            0 => voters.push(id),
                            1 => learners.push(id),
                            _ => continue,
                        }
                        let h = MemberHealth {
                            live: alive & (1 << (id - 1)) != 0,
                            last_heard: t0,
                            log_lag: Some(0),
                        };
                        health.insert(id, h);
                    }
                    let m = members(&voters, &learners);
                    let Some(change) = plan_voters(&s, &m, &health, &policy, later) else {
                        continue;
                    };
                    let after = change.voters_after(&voters.iter().copied().collect());
                    let live = after.iter().filter(|id| health[id].live).count();
                    assert!(live * 2 > after.len(), "{change} of {m:?} / {health:?}");
                    assert!(
                        after.len() <= max_voters.max(voters.len()),
                        "{change} of {m:?}"
                    );
                    let learner = match change {
                        VoterChange::Promote { learner } | VoterChange::Replace { learner, .. } => {
                            learner
                        }
                    };
                    assert!(health[&learner].live && learners.contains(&learner));
                }
            }
        }
    }
}
