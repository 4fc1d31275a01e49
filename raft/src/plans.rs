//! Scaling plans, sans-IO: the reassignments that drain a broker, even out
//! replicas and preferred leaders over the live brokers, and change
//! topics' replication factors.
//!
//! Each plan is a list of [`MetadataRequest::Reassign`]s computed from the
//! committed [`MetadataState`]; the caller proposes them. A reassignment
//! adds the new replicas, waits until they are in sync, then drops the
//! old ones (see `metadata.rs`), so a plan never loses a replica that is
//! still needed.
//!
//! # Rules
//! - A new replica goes to the live, non-draining broker holding the
//!   fewest replicas, preferring racks the partition does not use yet; ties
//!   go to the lower broker id.
//! - Lowering a partition's replication factor drops the replicas on the
//!   most loaded brokers, never the partition's current leader.

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::{MetadataRequest, MetadataState, PartitionState};

/// The brokers a plan may place replicas on: live and not draining.
fn usable(state: &MetadataState) -> Vec<u64> {
    state
        .brokers
        .values()
        .filter(|b| !b.fenced && !b.draining)
        .map(|b| b.id)
        .collect()
}

/// The replica list a partition is heading for.
fn heading(p: &PartitionState) -> &Vec<u64> {
    p.target.as_ref().unwrap_or(&p.replicas)
}

/// Replicas per broker, counting reassignments' targets.
fn replica_load(state: &MetadataState) -> BTreeMap<u64, usize> {
    let mut load = BTreeMap::new();
    for topic in state.topics.values() {
        for p in &topic.partitions {
            for r in heading(p) {
                *load.entry(*r).or_default() += 1;
            }
        }
    }
    load
}

/// The usable broker outside `current` (and not `except`) that should take
/// a new replica of a partition: fewest replicas, other racks first.
fn pick_new_replica(
    state: &MetadataState,
    current: &[u64],
    except: Option<u64>,
    load: &BTreeMap<u64, usize>,
) -> Option<u64> {
    let racks: BTreeSet<Option<&str>> = current
        .iter()
        .filter(|r| Some(**r) != except)
        .filter_map(|r| state.brokers.get(r))
        .map(|b| b.rack.as_deref())
        .collect();
    state
        .brokers
        .values()
        .filter(|b| Some(b.id) != except && !b.fenced && !b.draining && !current.contains(&b.id))
        .min_by_key(|b| {
            let rack = b.rack.as_deref();
            (
                rack.is_some() && racks.contains(&rack),
                load.get(&b.id).copied().unwrap_or(0),
                b.id,
            )
        })
        .map(|b| b.id)
}

/// Reassignments that move every replica off broker `id` onto the live,
/// non-draining brokers holding the fewest replicas (preferring racks the
/// partition does not use).
///
/// # Errors
/// When some partition has no broker left to move to, saying why in an
/// operator's terms.
pub fn drain_plan(state: &MetadataState, id: u64) -> Result<Vec<MetadataRequest>, String> {
    let mut load = replica_load(state);
    let mut out = Vec::new();
    for (name, topic) in &state.topics {
        for (i, p) in topic.partitions.iter().enumerate() {
            let current = heading(p);
            if !current.contains(&id) {
                continue;
            }
            let replacement = pick_new_replica(state, current, Some(id), &load).ok_or_else(|| {
                format!(
                    "node {id} cannot be drained: no other live node can take its replica of {name}-{i}, \
                     whose {} replicas need {} nodes besides node {id} and every such live node holds one already \
                     (add a node first, or lower the topic's replication factor with `fjord cluster rebalance --replication-factor`)",
                    current.len(),
                    current.len()
                )
            })?;
            *load.entry(replacement).or_default() += 1;
            let replicas = current
                .iter()
                .map(|r| if *r == id { replacement } else { *r })
                .collect();
            out.push(MetadataRequest::Reassign {
                topic: name.clone(),
                partition: i as u32,
                replicas,
            });
        }
    }
    Ok(out)
}

/// One partition's replica list before and after a plan.
struct Move {
    topic: String,
    partition: u32,
    old: Vec<u64>,
    next: Vec<u64>,
}

/// Reassignments that bring every partition to `replication_factor`
/// replicas (when given), then even out replicas and preferred leaders
/// over the live, non-draining brokers (after a node joins): a replica
/// moves from the most loaded broker of a partition to the least loaded
/// broker not in it while that narrows the spread; then each partition's
/// preferred leader (first replica) is the replica leading the fewest
/// partitions so far.
///
/// # Errors
/// A replication factor of 0, or larger than the live brokers.
pub fn rebalance_plan(
    state: &MetadataState,
    replication_factor: Option<usize>,
) -> Result<Vec<MetadataRequest>, String> {
    let brokers = usable(state);
    if brokers.is_empty() {
        return Ok(Vec::new());
    }
    let mut moves: Vec<Move> = Vec::new();
    for (name, topic) in &state.topics {
        for (i, p) in topic.partitions.iter().enumerate() {
            moves.push(Move {
                topic: name.clone(),
                partition: i as u32,
                old: heading(p).clone(),
                next: heading(p).clone(),
            });
        }
    }
    if let Some(rf) = replication_factor {
        resize(state, &brokers, &mut moves, rf)?;
    }
    even_out_replicas(&brokers, &mut moves);
    even_out_leaders(&brokers, &mut moves);
    Ok(moves
        .into_iter()
        .filter(|m| m.next != m.old)
        .map(|m| MetadataRequest::Reassign {
            topic: m.topic,
            partition: m.partition,
            replicas: m.next,
        })
        .collect())
}

/// Adds or drops replicas until every partition has `rf`.
fn resize(
    state: &MetadataState,
    brokers: &[u64],
    moves: &mut [Move],
    rf: usize,
) -> Result<(), String> {
    if rf == 0 {
        return Err("a replication factor must be at least 1".into());
    }
    if rf > brokers.len() {
        return Err(format!(
            "replication factor {rf} needs {rf} live nodes; {} are live (and not draining)",
            brokers.len()
        ));
    }
    let mut load = replica_load(state);
    for m in moves.iter_mut() {
        while m.next.len() < rf {
            let Some(b) = pick_new_replica(state, &m.next, None, &load) else {
                return Err(format!(
                    "no live node can take another replica of {}-{}",
                    m.topic, m.partition
                ));
            };
            *load.entry(b).or_default() += 1;
            m.next.push(b);
        }
        let leader = state
            .topics
            .get(&m.topic)
            .and_then(|t| t.partitions.get(m.partition as usize))
            .and_then(|p| p.leader);
        while m.next.len() > rf {
            let Some(pos) = m
                .next
                .iter()
                .enumerate()
                .filter(|(_, b)| Some(**b) != leader)
                .max_by_key(|(_, b)| (load.get(b).copied().unwrap_or(0), **b))
                .map(|(pos, _)| pos)
            else {
                break;
            };
            let dropped = m.next.remove(pos);
            if let Some(n) = load.get_mut(&dropped) {
                *n = n.saturating_sub(1);
            }
        }
    }
    Ok(())
}

/// Moves replicas from the most to the least loaded broker while the
/// spread is more than one.
fn even_out_replicas(brokers: &[u64], moves: &mut [Move]) {
    let mut load: BTreeMap<u64, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    for m in moves.iter() {
        for r in &m.next {
            *load.entry(*r).or_default() += 1;
        }
    }
    for _ in 0..moves.len() * brokers.len() {
        let (Some((&max_b, &max_n)), Some((&min_b, &min_n))) = (
            load.iter()
                .max_by_key(|(b, n)| (**n, std::cmp::Reverse(**b))),
            load.iter()
                .filter(|(b, _)| brokers.contains(b))
                .min_by_key(|(b, n)| (**n, **b)),
        ) else {
            break;
        };
        if max_n <= min_n + 1 {
            break;
        }
        let Some(m) = moves
            .iter_mut()
            .find(|m| m.next.contains(&max_b) && !m.next.contains(&min_b))
        else {
            break;
        };
        for r in m.next.iter_mut() {
            if *r == max_b {
                *r = min_b;
            }
        }
        *load.entry(max_b).or_default() -= 1;
        *load.entry(min_b).or_default() += 1;
    }
}

/// Evens out preferred leaders: greedily first, then moves a partition's
/// preferred leader to another of its replicas while that narrows the
/// spread.
fn even_out_leaders(brokers: &[u64], moves: &mut [Move]) {
    let mut leaders: BTreeMap<u64, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    for m in moves.iter_mut() {
        if let Some(pos) = m
            .next
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| (leaders.get(b).copied().unwrap_or(usize::MAX), **b))
            .map(|(pos, _)| pos)
        {
            m.next.swap(0, pos);
            *leaders.entry(m.next[0]).or_default() += 1;
        }
    }
    let mut improved = true;
    while improved {
        improved = false;
        for m in moves.iter_mut() {
            let current = leaders.get(&m.next[0]).copied().unwrap_or(0);
            let better = m
                .next
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, b)| brokers.contains(b))
                .min_by_key(|(_, b)| (leaders.get(b).copied().unwrap_or(0), **b))
                .filter(|(_, b)| leaders.get(b).copied().unwrap_or(0) + 1 < current)
                .map(|(pos, _)| pos);
            if let Some(pos) = better {
                if let Some(n) = leaders.get_mut(&m.next[0]) {
                    *n -= 1;
                }
                m.next.swap(0, pos);
                *leaders.entry(m.next[0]).or_default() += 1;
                improved = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::place_replicas;
    use crate::controller::tests::{cluster, counts, create, settle};
    use crate::metadata::MetadataResponse;

    #[test]
    fn rebalance_gives_a_new_broker_its_share_and_drain_empties_one() {
        let mut s = cluster(&[None, None, None]);
        let placed = place_replicas(&s, 12, 3).unwrap();
        create(&mut s, "t", placed, &[]);
        s.apply(&MetadataRequest::RegisterBroker {
            id: 4,
            addr: "127.0.0.1:9404".into(),
            rack: None,
        });
        let plan = rebalance_plan(&s, None).unwrap();
        assert!(!plan.is_empty());
        settle(&mut s, plan);
        let (leaders, replicas) = counts(&s);
        assert_eq!(
            replicas.values().copied().collect::<Vec<_>>(),
            vec![9, 9, 9, 9]
        );
        assert_eq!(
            leaders.values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3, 3]
        );
        assert!(
            rebalance_plan(&s, None).unwrap().is_empty(),
            "a balanced cluster stays put"
        );

        // Draining broker 4 moves all its replicas and leaderships away.
        s.apply(&MetadataRequest::SetDraining {
            id: 4,
            draining: true,
        });
        let plan = drain_plan(&s, 4).unwrap();
        assert_eq!(plan.len(), 9);
        settle(&mut s, plan);
        let (leaders, replicas) = counts(&s);
        assert!(!replicas.contains_key(&4) && !leaders.contains_key(&4));
        assert_eq!(
            s.apply(&MetadataRequest::UnregisterBroker { id: 4 }),
            MetadataResponse::Applied
        );
    }

    #[test]
    fn a_drain_that_no_node_can_take_says_why_in_an_operators_terms() {
        let mut s = cluster(&[None, None, None]);
        create(&mut s, "__amqp_acks", vec![vec![1, 2, 3]], &[]);
        let e = drain_plan(&s, 2).unwrap_err();
        assert!(e.contains("__amqp_acks-0"), "{e}");
        assert!(e.contains("add a node first"), "{e}");
    }

    #[test]
    fn a_single_nodes_topics_grow_to_three_replicas_spread_over_the_new_nodes() {
        let mut s = cluster(&[None]);
        create(&mut s, "orders", vec![vec![1]; 6], &[]);
        create(&mut s, "__mqtt_sessions", vec![vec![1]], &[]);
        for id in [2, 3] {
            s.apply(&MetadataRequest::RegisterBroker {
                id,
                addr: format!("127.0.0.1:940{id}"),
                rack: None,
            });
        }
        assert!(
            rebalance_plan(&s, Some(4))
                .unwrap_err()
                .contains("3 are live")
        );
        let plan = rebalance_plan(&s, Some(3)).unwrap();
        assert_eq!(plan.len(), 7);
        settle(&mut s, plan);
        for p in s.topics.values().flat_map(|t| &t.partitions) {
            let mut r = p.replicas.clone();
            r.sort_unstable();
            assert_eq!(r, vec![1, 2, 3]);
        }
        let (leaders, replicas) = counts(&s);
        assert_eq!(
            replicas.values().copied().collect::<Vec<_>>(),
            vec![7, 7, 7]
        );
        assert!(leaders.values().all(|n| *n >= 2), "{leaders:?}");

        // And back down to one replica each, leaders kept.
        let before: Vec<Option<u64>> = s.topics["orders"]
            .partitions
            .iter()
            .map(|p| p.leader)
            .collect();
        let plan = rebalance_plan(&s, Some(1)).unwrap();
        settle(&mut s, plan);
        for (p, leader) in s.topics["orders"].partitions.iter().zip(before) {
            assert_eq!(p.replicas.len(), 1);
            assert_eq!(p.leader, leader);
        }
    }
}
