//! The controller's decisions, sans-IO: where new partitions go, which
//! brokers to fence, and whom to elect when a partition loses its leader.
//!
//! The controller (the Raft leader) feeds these functions the committed
//! [`MetadataState`] and what it observed (broker heartbeats), and proposes
//! the [`MetadataRequest`]s they return through the quorum. Nothing here
//! does I/O or reads a clock, so every rule is a unit test.
//!
//! # Rules
//! - Placement: each partition's leader is the live broker leading the
//!   fewest partitions; its followers are the live brokers holding the
//!   fewest replicas, preferring racks the partition does not use yet. Ties
//!   go to the lower broker id, so placement is deterministic.
//! - A registered, unfenced broker whose last heartbeat is older than the
//!   session timeout is fenced.
//! - A partition whose leader is fenced (or missing) gets the first replica,
//!   in replica order, that is live and in the ISR. If none is, it stays
//!   offline unless the topic sets `unclean.leader.election.enable=true`, in
//!   which case the first live replica leads and the ISR restarts from it.
//!   An offline partition has no leader (its epoch bumps, fencing the old
//!   one) until an in-sync replica comes back.
//! - Fenced followers leave the ISR of partitions whose leader is live.

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::{MetadataRequest, MetadataResponse, MetadataState};

/// Topic config that allows electing a leader outside the ISR.
pub const UNCLEAN_ELECTION: &str = "unclean.leader.election.enable";

/// Replica lists for `partitions` new partitions of `replication_factor`
/// replicas over the live (unfenced) brokers of `state`.
///
/// # Errors
/// When fewer live brokers exist than the replication factor asks for.
pub fn place_replicas(
    state: &MetadataState,
    partitions: u32,
    replication_factor: u32,
) -> Result<Vec<Vec<u64>>, String> {
    let live: Vec<&crate::BrokerInfo> = state
        .brokers
        .values()
        .filter(|b| !b.fenced && !b.draining)
        .collect();
    if replication_factor == 0 || live.len() < replication_factor as usize {
        return Err(match live.len() {
            1 => format!(
                "replication factor {replication_factor} needs {replication_factor} live brokers, but this is a single-node cluster (add nodes with `fjord serve --join`)"
            ),
            n => format!(
                "replication factor {replication_factor} needs {replication_factor} live brokers; {n} are live"
            ),
        });
    }
    // Current load, so new topics even out what exists.
    let mut leaders: BTreeMap<u64, usize> = live.iter().map(|b| (b.id, 0)).collect();
    let mut replicas: BTreeMap<u64, usize> = leaders.clone();
    for topic in state.topics.values() {
        for p in &topic.partitions {
            if let Some(l) = p.leader.and_then(|l| leaders.get_mut(&l)) {
                *l += 1;
            }
            for r in &p.replicas {
                if let Some(n) = replicas.get_mut(r) {
                    *n += 1;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(partitions as usize);
    for _ in 0..partitions {
        let leader = live
            .iter()
            .min_by_key(|b| (leaders[&b.id], replicas[&b.id], b.id))
            .map(|b| b.id)
            .ok_or("no live brokers")?;
        let mut chosen = vec![leader];
        let mut racks: BTreeSet<Option<&str>> = BTreeSet::new();
        racks.insert(state.brokers[&leader].rack.as_deref());
        while chosen.len() < replication_factor as usize {
            let next = live
                .iter()
                .filter(|b| !chosen.contains(&b.id))
                .min_by_key(|b| {
                    let rack = b.rack.as_deref();
                    let rack_used = rack.is_some() && racks.contains(&rack);
                    (rack_used, replicas[&b.id], b.id)
                })
                .map(|b| b.id)
                .ok_or("not enough live brokers")?;
            racks.insert(state.brokers[&next].rack.as_deref());
            chosen.push(next);
        }
        if let Some(n) = leaders.get_mut(&leader) {
            *n += 1;
        }
        for r in &chosen {
            if let Some(n) = replicas.get_mut(r) {
                *n += 1;
            }
        }
        out.push(chosen);
    }
    Ok(out)
}

/// What the controller proposes, given which brokers heartbeat in time.
///
/// `alive(id)` says whether broker `id`'s last heartbeat is within its
/// session timeout. The commands are returned in the order to propose them;
/// each was checked against the state as the earlier ones leave it.
pub fn decide(state: &MetadataState, alive: impl Fn(u64) -> bool) -> Vec<MetadataRequest> {
    let mut next = state.clone();
    let mut out = Vec::new();
    let mut propose = |next: &mut MetadataState, request: MetadataRequest| {
        if !matches!(next.apply(&request), MetadataResponse::Rejected(_)) {
            out.push(request);
        }
    };
    let lapsed: Vec<u64> = state
        .brokers
        .values()
        .filter(|b| !b.fenced && !alive(b.id))
        .map(|b| b.id)
        .collect();
    for id in lapsed {
        propose(&mut next, MetadataRequest::FenceBroker { id });
    }
    let topics: Vec<String> = next.topics.keys().cloned().collect();
    for name in topics {
        let Some(topic) = next.topics.get(&name).cloned() else {
            continue;
        };
        let unclean = topic
            .configs
            .get(UNCLEAN_ELECTION)
            .is_some_and(|v| v == "true");
        for (i, p) in topic.partitions.iter().enumerate() {
            let partition = i as u32;
            if p.leader.is_none_or(|l| !is_live(&next, l)) {
                let clean = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|b| p.isr.contains(b) && is_live(&next, *b));
                let choice = match clean {
                    Some(b) => Some((b, false)),
                    None if unclean => p
                        .replicas
                        .iter()
                        .copied()
                        .find(|b| is_live(&next, *b))
                        .map(|b| (b, true)),
                    None => None,
                };
                match choice {
                    Some((leader, unclean)) => {
                        propose(
                            &mut next,
                            MetadataRequest::ElectLeader {
                                topic: name.clone(),
                                partition,
                                leader,
                                unclean,
                            },
                        );
                    }
                    None if p.leader.is_some() => {
                        tracing::warn!(topic = %name, partition, "no live in-sync replica: the partition goes offline");
                        propose(
                            &mut next,
                            MetadataRequest::ClearLeader {
                                topic: name.clone(),
                                partition,
                            },
                        );
                        continue;
                    }
                    None => continue,
                }
            }
            // A live leader's ISR drops the fenced members.
            if let Some(update) = live_isr_update(&next, &name, partition) {
                propose(&mut next, update);
            }
            let Some(p) = next
                .topics
                .get(&name)
                .and_then(|t| t.partitions.get(i))
                .cloned()
            else {
                continue;
            };
            // A reassignment whose new replicas have all caught up.
            if let Some(target) = &p.target
                && target.iter().all(|r| p.isr.contains(r))
            {
                propose(
                    &mut next,
                    MetadataRequest::CompleteReassign {
                        topic: name.clone(),
                        partition,
                    },
                );
                continue;
            }
            // Leadership goes back to the preferred (first) replica once it
            // is in sync, and leaves a draining broker.
            let eligible = |b: u64| {
                p.isr.contains(&b)
                    && is_live(&next, b)
                    && !next.brokers.get(&b).is_some_and(|x| x.draining)
            };
            if let Some(leader) = p.leader
                && p.target.is_none()
            {
                let leader_draining = next.brokers.get(&leader).is_some_and(|b| b.draining);
                let better = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|b| eligible(*b))
                    .filter(|b| *b != leader);
                if let Some(better) = better
                    && (leader_draining || p.replicas.first() == Some(&better))
                {
                    propose(
                        &mut next,
                        MetadataRequest::ElectLeader {
                            topic: name.clone(),
                            partition,
                            leader: better,
                            unclean: false,
                        },
                    );
                }
            }
        }
    }
    out
}

fn is_live(state: &MetadataState, id: u64) -> bool {
    state.brokers.get(&id).is_some_and(|b| !b.fenced)
}

/// An ISR change that leaves out fenced brokers, when the ISR has any.
fn live_isr_update(state: &MetadataState, topic: &str, partition: u32) -> Option<MetadataRequest> {
    let p = state
        .topics
        .get(topic)?
        .partitions
        .get(partition as usize)?;
    let isr: Vec<u64> = p
        .isr
        .iter()
        .copied()
        .filter(|b| is_live(state, *b))
        .collect();
    (isr.len() != p.isr.len()).then(|| MetadataRequest::UpdateIsr {
        topic: topic.to_string(),
        partition,
        leader_epoch: p.leader_epoch,
        isr,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn cluster(racks: &[Option<&str>]) -> MetadataState {
        let mut s = MetadataState::default();
        for (i, rack) in racks.iter().enumerate() {
            let id = i as u64 + 1;
            s.apply(&MetadataRequest::RegisterBroker {
                id,
                addr: format!("127.0.0.1:{}", 9400 + id),
                rack: rack.map(str::to_string),
            });
        }
        s
    }

    pub(crate) fn create(
        s: &mut MetadataState,
        name: &str,
        replicas: Vec<Vec<u64>>,
        configs: &[(&str, &str)],
    ) {
        let configs = configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            s.apply(&MetadataRequest::CreateTopic {
                name: name.into(),
                configs,
                replicas
            }),
            MetadataResponse::Applied
        );
    }

    #[test]
    fn placement_spreads_leaders_and_replicas_evenly() {
        let mut s = cluster(&[None, None, None]);
        let placed = place_replicas(&s, 6, 3).unwrap();
        let mut leaders = BTreeMap::new();
        for replicas in &placed {
            assert_eq!(replicas.len(), 3);
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        // A second topic keeps evening out the load.
        let one = place_replicas(&s, 1, 1).unwrap();
        create(&mut s, "a", one, &[]);
        let next = place_replicas(&s, 2, 1).unwrap();
        assert!(
            !next
                .iter()
                .any(|r| r[0] == s.topics["a"].partitions[0].replicas[0])
        );
        assert!(place_replicas(&s, 1, 4).unwrap_err().contains("3 are live"));
    }

    #[test]
    fn placement_uses_every_rack_before_repeating_one() {
        let s = cluster(&[
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        for replicas in place_replicas(&s, 12, 3).unwrap() {
            let racks: BTreeSet<_> = replicas
                .iter()
                .map(|id| s.brokers[id].rack.clone())
                .collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
    }

    #[test]
    fn a_lapsed_leader_is_fenced_and_replaced_from_the_isr() {
        let mut s = cluster(&[None, None, None]);
        create(&mut s, "t", vec![vec![1, 2, 3], vec![2, 3, 1]], &[]);
        // Everyone alive: nothing to do.
        assert!(decide(&s, |_| true).is_empty());
        let commands = decide(&s, |id| id != 1);
        assert_eq!(commands[0], MetadataRequest::FenceBroker { id: 1 });
        for c in &commands {
            assert!(
                !matches!(s.apply(c), MetadataResponse::Rejected(_)),
                "{c:?}"
            );
        }
        let p0 = &s.topics["t"].partitions[0];
        assert_eq!(
            (p0.leader, p0.leader_epoch, p0.isr.clone()),
            (Some(2), 1, vec![2, 3])
        );
        // Partition 1 kept its leader; the fenced follower left its ISR.
        let p1 = &s.topics["t"].partitions[1];
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.clone()),
            (Some(2), 0, vec![2, 3])
        );
        // Stable again.
        assert!(decide(&s, |id| id != 1).is_empty());
    }

    #[test]
    fn without_a_live_in_sync_replica_only_unclean_election_brings_a_partition_back() {
        let mut s = cluster(&[None, None]);
        create(&mut s, "clean", vec![vec![1, 2]], &[]);
        create(
            &mut s,
            "dirty",
            vec![vec![1, 2]],
            &[(UNCLEAN_ELECTION, "true")],
        );
        for name in ["clean", "dirty"] {
            let shrink = MetadataRequest::UpdateIsr {
                topic: name.into(),
                partition: 0,
                leader_epoch: 0,
                isr: vec![1],
            };
            assert_eq!(s.apply(&shrink), MetadataResponse::Applied);
        }
        for c in decide(&s, |id| id == 2) {
            s.apply(&c);
        }
        // 2 was out of sync: "clean" goes offline, its old leader fenced by the epoch.
        let clean = &s.topics["clean"].partitions[0];
        assert_eq!((clean.leader, clean.leader_epoch), (None, 1));
        assert!(s.brokers[&1].fenced);
        let dirty = &s.topics["dirty"].partitions[0];
        assert_eq!((dirty.leader, dirty.isr.clone()), (Some(2), vec![2]));
    }

    /// Applies `requests`, then lets the controller finish what they start
    /// (every replica catches up at once).
    pub(crate) fn settle(s: &mut MetadataState, requests: Vec<MetadataRequest>) {
        for r in requests {
            assert!(
                !matches!(s.apply(&r), MetadataResponse::Rejected(_)),
                "{r:?}"
            );
        }
        for _ in 0..10 {
            // New replicas join the ISR as if they had caught up.
            for topic in s.topics.values_mut() {
                for p in &mut topic.partitions {
                    if let Some(target) = &p.target {
                        for r in target {
                            if !p.isr.contains(r) {
                                p.isr.push(*r);
                            }
                        }
                    }
                }
            }
            let more = decide(s, |_| true);
            if more.is_empty() {
                break;
            }
            for r in more {
                s.apply(&r);
            }
        }
    }

    pub(crate) fn counts(s: &MetadataState) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
        let (mut leaders, mut replicas) = (BTreeMap::new(), BTreeMap::new());
        for p in s.topics.values().flat_map(|t| &t.partitions) {
            *leaders.entry(p.leader.unwrap_or(0)).or_default() += 1;
            for r in &p.replicas {
                *replicas.entry(*r).or_default() += 1;
            }
        }
        (leaders, replicas)
    }
}
