//! The cluster metadata the quorum agrees on, and the commands that change
//! it.
//!
//! `MetadataState::apply` is a pure function of (state, command): every
//! replica applies the same committed commands in the same order and ends in
//! the same state. A command that breaks a rule (a topic that exists, a
//! leader outside the ISR, a stale leader epoch) changes nothing and answers
//! [`MetadataResponse::Rejected`] with the reason; it is not a storage error.
//!
//! # Invariants
//! - A partition's leader, when it has one, is in its ISR; the ISR is a
//!   subset of its replicas.
//! - A partition's leader epoch grows by one with every leader change, so a
//!   stale leader's ISR change (carrying its old epoch) is refused.
//!
//! # Compatibility
//! States and requests are stored as JSON (the Raft log and snapshots).
//! Fields added later carry `#[serde(default)]`, so data written before
//! them still loads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::user::User;

/// A broker as the quorum knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: u64,
    /// Its gRPC address (`host:port`).
    pub addr: String,
    pub rack: Option<String>,
    /// Fenced brokers lead nothing and are left out of new ISRs.
    pub fenced: bool,
    /// Being drained: takes no new replicas and gives up leadership.
    #[serde(default)]
    pub draining: bool,
}

/// Placement and leadership of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<u64>,
    pub leader: Option<u64>,
    pub leader_epoch: i32,
    pub isr: Vec<u64>,
    /// A reassignment in progress: the replica list to end with. Meanwhile
    /// `replicas` holds the old and the new ones; once every target replica
    /// is in the ISR the controller completes it.
    #[serde(default)]
    pub target: Option<Vec<u64>>,
}

/// A topic: configs and partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    /// Unique per creation, so a node that missed a delete and a re-create
    /// of the same name does not keep the old data.
    #[serde(default)]
    pub id: u64,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionState>,
}

/// Everything the metadata log describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataState {
    pub brokers: BTreeMap<u64, BrokerInfo>,
    pub topics: BTreeMap<String, TopicState>,
    /// The id the next topic gets.
    #[serde(default)]
    pub next_topic_id: u64,
    /// Users the gateways authenticate, by name.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
}

/// A change to the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRequest {
    /// Adds a broker or updates its address and rack; unfences it.
    RegisterBroker {
        id: u64,
        addr: String,
        rack: Option<String>,
    },
    /// The controller saw the broker's heartbeats lapse.
    FenceBroker {
        id: u64,
    },
    /// Creates a topic with the given replica list per partition; each
    /// partition starts led by its first replica, all replicas in sync.
    CreateTopic {
        name: String,
        configs: BTreeMap<String, String>,
        replicas: Vec<Vec<u64>>,
    },
    DeleteTopic {
        name: String,
    },
    /// Makes `leader` the partition's leader (it must be in the ISR unless
    /// `unclean`), bumping the leader epoch.
    ElectLeader {
        topic: String,
        partition: u32,
        leader: u64,
        unclean: bool,
    },
    /// No replica may lead (none in sync is live): the partition goes
    /// offline with no leader, and the epoch bump fences the old leader.
    ClearLeader {
        topic: String,
        partition: u32,
    },
    /// The leader of `leader_epoch` changes the ISR.
    UpdateIsr {
        topic: String,
        partition: u32,
        leader_epoch: i32,
        isr: Vec<u64>,
    },
    /// Starts moving a partition to `replicas` (first = preferred leader):
    /// the new ones are added and catch up; [`MetadataRequest::CompleteReassign`]
    /// drops the old ones.
    Reassign {
        topic: String,
        partition: u32,
        replicas: Vec<u64>,
    },
    /// Every target replica is in the ISR: drop the others, moving
    /// leadership into the target if needed.
    CompleteReassign {
        topic: String,
        partition: u32,
    },
    /// Marks a broker as leaving (or not).
    SetDraining {
        id: u64,
        draining: bool,
    },
    /// Forgets a broker that holds no replicas.
    UnregisterBroker {
        id: u64,
    },
    /// Adds a user or replaces the one of that name (its password already
    /// hashed by the proposer).
    PutUser {
        user: User,
    },
    DeleteUser {
        name: String,
    },
    /// Sets configs of a topic and removes others (checked by the
    /// proposer against the topic-config rules).
    AlterTopicConfig {
        name: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// Adds partitions `first`, `first + 1`, ... to a topic that has
    /// `first` partitions, with the given replica lists; each starts led
    /// by its first replica, all replicas in sync.
    AddPartitions {
        name: String,
        first: u32,
        replicas: Vec<Vec<u64>>,
    },
}

/// What applying a request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataResponse {
    Applied,
    /// A new leader epoch (after `ElectLeader`).
    LeaderEpoch(i32),
    /// Nothing changed, for this reason.
    Rejected(String),
}

impl MetadataState {
    /// A topic with a replica on broker `id`, if any.
    fn topic_held_by(&self, id: u64) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.partitions.iter().any(|p| p.replicas.contains(&id)))
            .map(|(name, _)| name.as_str())
    }

    /// True while broker `id` holds a replica of some partition.
    pub fn holds_replicas(&self, id: u64) -> bool {
        self.topic_held_by(id).is_some()
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<&mut PartitionState, String> {
        self.topics
            .get_mut(topic)
            .ok_or_else(|| format!("unknown topic {topic}"))?
            .partitions
            .get_mut(partition as usize)
            .ok_or_else(|| format!("unknown partition {topic}-{partition}"))
    }

    /// Applies one committed command.
    pub fn apply(&mut self, request: &MetadataRequest) -> MetadataResponse {
        match self.try_apply(request) {
            Ok(response) => response,
            Err(reason) => MetadataResponse::Rejected(reason),
        }
    }

    fn try_apply(&mut self, request: &MetadataRequest) -> Result<MetadataResponse, String> {
        match request {
            MetadataRequest::RegisterBroker { id, addr, rack } => {
                let draining = self.brokers.get(id).is_some_and(|b| b.draining);
                self.brokers.insert(
                    *id,
                    BrokerInfo {
                        id: *id,
                        addr: addr.clone(),
                        rack: rack.clone(),
                        fenced: false,
                        draining,
                    },
                );
            }
            MetadataRequest::FenceBroker { id } => {
                let broker = self
                    .brokers
                    .get_mut(id)
                    .ok_or_else(|| format!("unknown broker {id}"))?;
                broker.fenced = true;
            }
            MetadataRequest::CreateTopic {
                name,
                configs,
                replicas,
            } => {
                if self.topics.contains_key(name) {
                    return Err(format!("topic {name} already exists"));
                }
                if replicas.is_empty() {
                    return Err(format!("topic {name} needs at least one partition"));
                }
                let mut partitions = Vec::with_capacity(replicas.len());
                for (i, set) in replicas.iter().enumerate() {
                    partitions.push(self.new_partition(name, i, set)?);
                }
                self.next_topic_id += 1;
                self.topics.insert(
                    name.clone(),
                    TopicState {
                        id: self.next_topic_id,
                        configs: configs.clone(),
                        partitions,
                    },
                );
            }
            MetadataRequest::DeleteTopic { name } => {
                self.topics
                    .remove(name)
                    .ok_or_else(|| format!("unknown topic {name}"))?;
            }
            MetadataRequest::ElectLeader {
                topic,
                partition,
                leader,
                unclean,
            } => {
                let fenced = self.brokers.get(leader).is_none_or(|b| b.fenced);
                let p = self.partition_mut(topic, *partition)?;
                if !p.replicas.contains(leader) {
                    return Err(format!(
                        "broker {leader} is not a replica of {topic}-{partition}"
                    ));
                }
                if fenced {
                    return Err(format!("broker {leader} is fenced"));
                }
                if !p.isr.contains(leader) {
                    if !unclean {
                        return Err(format!(
                            "broker {leader} is not in the ISR of {topic}-{partition} (unclean election is off)"
                        ));
                    }
                    p.isr = vec![*leader];
                }
                p.leader = Some(*leader);
                p.leader_epoch += 1;
                return Ok(MetadataResponse::LeaderEpoch(p.leader_epoch));
            }
            MetadataRequest::ClearLeader { topic, partition } => {
                let p = self.partition_mut(topic, *partition)?;
                if p.leader.is_none() {
                    return Err(format!("{topic}-{partition} has no leader already"));
                }
                p.leader = None;
                p.leader_epoch += 1;
                return Ok(MetadataResponse::LeaderEpoch(p.leader_epoch));
            }
            MetadataRequest::UpdateIsr {
                topic,
                partition,
                leader_epoch,
                isr,
            } => {
                let p = self.partition_mut(topic, *partition)?;
                if *leader_epoch != p.leader_epoch {
                    return Err(format!(
                        "stale leader epoch {leader_epoch} for {topic}-{partition} (current {})",
                        p.leader_epoch
                    ));
                }
                if let Some(outside) = isr.iter().find(|b| !p.replicas.contains(b)) {
                    return Err(format!(
                        "broker {outside} is not a replica of {topic}-{partition}"
                    ));
                }
                if p.leader.is_some_and(|l| !isr.contains(&l)) {
                    return Err(format!(
                        "the ISR of {topic}-{partition} must contain its leader"
                    ));
                }
                p.isr = isr.clone();
            }
            MetadataRequest::Reassign {
                topic,
                partition,
                replicas,
            } => {
                if replicas.is_empty() {
                    return Err("a partition needs at least one replica".into());
                }
                if let Some(missing) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                    return Err(format!("unknown broker {missing}"));
                }
                let mut unique = replicas.clone();
                unique.sort_unstable();
                unique.dedup();
                if unique.len() != replicas.len() {
                    return Err("the replica list names a broker twice".into());
                }
                let p = self.partition_mut(topic, *partition)?;
                // The target first (preferred leader order), then the
                // replicas being moved away, which keep serving until the
                // new ones have caught up.
                let mut all = replicas.clone();
                all.extend(p.replicas.iter().filter(|r| !replicas.contains(r)));
                p.replicas = all;
                p.target = Some(replicas.clone());
            }
            MetadataRequest::CompleteReassign { topic, partition } => {
                let p = self.partition_mut(topic, *partition)?;
                let target = p
                    .target
                    .clone()
                    .ok_or_else(|| format!("{topic}-{partition} is not being reassigned"))?;
                if let Some(behind) = target.iter().find(|r| !p.isr.contains(r)) {
                    return Err(format!(
                        "broker {behind} has not caught up on {topic}-{partition}"
                    ));
                }
                p.replicas = target.clone();
                p.isr.retain(|r| target.contains(r));
                p.target = None;
                if p.leader.is_some_and(|l| !target.contains(&l)) {
                    p.leader = Some(target[0]);
                    p.leader_epoch += 1;
                    return Ok(MetadataResponse::LeaderEpoch(p.leader_epoch));
                }
            }
            MetadataRequest::SetDraining { id, draining } => {
                let broker = self
                    .brokers
                    .get_mut(id)
                    .ok_or_else(|| format!("unknown broker {id}"))?;
                broker.draining = *draining;
            }
            MetadataRequest::UnregisterBroker { id } => {
                if let Some(name) = self.topic_held_by(*id) {
                    return Err(format!(
                        "broker {id} still holds replicas (of {name}); drain it first"
                    ));
                }
                self.brokers
                    .remove(id)
                    .ok_or_else(|| format!("unknown broker {id}"))?;
            }
            MetadataRequest::PutUser { user } => return self.put_user(user),
            MetadataRequest::DeleteUser { name } => return self.delete_user(name),
            MetadataRequest::AlterTopicConfig { name, set, delete } => {
                return self.alter_topic_config(name, set, delete);
            }
            MetadataRequest::AddPartitions {
                name,
                first,
                replicas,
            } => return self.add_partitions(name, *first, replicas),
        }
        Ok(MetadataResponse::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_brokers(n: u64) -> MetadataState {
        let mut s = MetadataState::default();
        for id in 1..=n {
            s.apply(&MetadataRequest::RegisterBroker {
                id,
                addr: format!("127.0.0.1:{}", 9400 + id),
                rack: None,
            });
        }
        s
    }

    fn create(s: &mut MetadataState, name: &str, replicas: Vec<Vec<u64>>) -> MetadataResponse {
        s.apply(&MetadataRequest::CreateTopic {
            name: name.into(),
            configs: BTreeMap::new(),
            replicas,
        })
    }

    #[test]
    fn topics_start_led_by_their_first_replica_and_reject_bad_placements() {
        let mut s = state_with_brokers(3);
        assert_eq!(
            create(&mut s, "t", vec![vec![2, 3, 1], vec![3, 1, 2]]),
            MetadataResponse::Applied
        );
        let p = &s.topics["t"].partitions[0];
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (Some(2), 0, vec![2, 3, 1])
        );
        assert!(
            matches!(create(&mut s, "t", vec![vec![1]]), MetadataResponse::Rejected(r) if r.contains("already exists"))
        );
        for (replicas, words) in [
            (vec![], "at least one"),
            (vec![vec![]], "no replicas"),
            (vec![vec![9]], "unknown broker 9"),
            (vec![vec![1, 1]], "twice"),
        ] {
            assert!(
                matches!(create(&mut s, "u", replicas), MetadataResponse::Rejected(r) if r.contains(words))
            );
        }
        assert!(!s.topics.contains_key("u"));
    }

    #[test]
    fn leaders_come_from_the_isr_and_epochs_fence_stale_leaders() {
        let mut s = state_with_brokers(3);
        create(&mut s, "t", vec![vec![1, 2, 3]]);
        let shrink = |epoch, isr: Vec<u64>| MetadataRequest::UpdateIsr {
            topic: "t".into(),
            partition: 0,
            leader_epoch: epoch,
            isr,
        };
        assert_eq!(s.apply(&shrink(0, vec![1, 2])), MetadataResponse::Applied);
        // 3 left the ISR: it cannot be elected cleanly.
        let elect = |leader, unclean| MetadataRequest::ElectLeader {
            topic: "t".into(),
            partition: 0,
            leader,
            unclean,
        };
        assert!(
            matches!(s.apply(&elect(3, false)), MetadataResponse::Rejected(r) if r.contains("not in the ISR"))
        );
        assert_eq!(s.apply(&elect(2, false)), MetadataResponse::LeaderEpoch(1));
        // The old leader (epoch 0) can no longer change the ISR.
        assert!(
            matches!(s.apply(&shrink(0, vec![1])), MetadataResponse::Rejected(r) if r.contains("stale leader epoch"))
        );
        assert!(
            matches!(s.apply(&shrink(1, vec![1])), MetadataResponse::Rejected(r) if r.contains("must contain its leader"))
        );
        assert_eq!(s.apply(&shrink(1, vec![2])), MetadataResponse::Applied);
        // Fenced brokers lead nothing; unclean election resets the ISR.
        s.apply(&MetadataRequest::FenceBroker { id: 1 });
        assert!(
            matches!(s.apply(&elect(1, true)), MetadataResponse::Rejected(r) if r.contains("fenced"))
        );
        assert_eq!(s.apply(&elect(3, true)), MetadataResponse::LeaderEpoch(2));
        assert_eq!(s.topics["t"].partitions[0].isr, vec![3]);
    }
}
