//! Applying the committed metadata to this node's partitions: open the
//! replicas it holds, drop those it no longer holds, and take the role the
//! metadata names (leader at an epoch, follower of a leader, offline).
//!
//! # Safety of removals
//! A node that restarts may apply the metadata late. It removes local data
//! only when it has caught up with the quorum (a leader is known and every
//! entry in its log is applied) and only when the metadata has seen the
//! creation of the topic the data belongs to (its id, from the directory's
//! mark, is not newer than the metadata's last topic id), so stale
//! metadata never deletes a replica.

use std::sync::Arc;

use fjord_raft::{MetadataState, TopicState};
use tracing::{info, warn};

use super::Cluster;
use crate::broker::Broker;
use crate::offsets::OFFSETS_TOPIC;
use crate::topic::{Topic, TopicMeta, open_partition, partition_dir};
use crate::topic_config::{log_config, min_insync};

impl Broker {
    /// Brings local partitions and roles in line with the metadata.
    pub(crate) async fn reconcile(&self, cluster: &Arc<Cluster>) {
        let _admin = self.inner.admin.lock().await;
        let state = cluster.node.state();
        let caught_up = {
            let m = cluster.node.changes().borrow().clone();
            m.current_leader.is_some() && m.last_applied.map(|l| l.index) >= m.last_log_index
        };
        for (name, topic) in &state.topics {
            if let Err(e) = self.reconcile_topic(cluster, name, topic, caught_up).await {
                warn!(topic = %name, "applying metadata failed: {e}");
            }
        }
        // Local topics the metadata no longer has.
        let gone: Vec<Arc<Topic>> = {
            let topics = self.topics_read();
            topics
                .values()
                .filter(|t| !state.topics.contains_key(&t.meta.name))
                .filter(|t| caught_up && t.meta.id <= state.next_topic_id)
                .cloned()
                .collect()
        };
        for topic in gone {
            self.drop_local_topic(&topic);
        }
        if caught_up {
            self.remove_unheld_dirs(cluster.id, &state);
        }
        self.apply_roles(cluster, &state);
    }

    /// Opens or drops this node's replicas of one topic.
    async fn reconcile_topic(
        &self,
        cluster: &Arc<Cluster>,
        name: &str,
        topic: &TopicState,
        caught_up: bool,
    ) -> crate::Result<()> {
        let me = cluster.id;
        let mut local = self.topic(name).ok();
        if let Some(l) = &local
            && l.meta.id != topic.id
        {
            if l.meta.id > topic.id || !caught_up {
                // Our metadata is older than the local data: wait.
                return Ok(());
            }
            // The topic was deleted and created again while we were away.
            self.drop_local_topic(l);
            local = None;
        }
        let replication_factor = topic
            .partitions
            .first()
            .map_or(1, |p| p.target.as_ref().unwrap_or(&p.replicas).len() as u32);
        let meta = TopicMeta {
            name: name.to_string(),
            partitions: topic.partitions.len() as u32,
            replication_factor,
            configs: topic.configs.clone(),
            id: topic.id,
        };
        let log = log_config(
            &meta.configs,
            self.inner.config.default_flush,
            replication_factor.max(1),
        )?;
        let mut changed = local.as_ref().is_none_or(|l| {
            l.meta.partitions != meta.partitions
                || l.meta.configs != meta.configs
                || l.meta.replication_factor != meta.replication_factor
        });
        let mut partitions = Vec::with_capacity(meta.partitions as usize);
        for (id, p) in topic.partitions.iter().enumerate() {
            let id = id as u32;
            let existing = local
                .as_ref()
                .and_then(|t| t.partitions.get(id as usize).cloned().flatten());
            let slot = match (p.replicas.contains(&me), existing) {
                (true, Some(p)) => Some(p),
                (true, None) if self.may_open(name, id, topic.id, caught_up) => {
                    info!(topic = %name, partition = id, "opening a replica");
                    changed = true;
                    let dir = &self.inner.config.data_dir;
                    Some(open_partition(dir, &meta, id, log.clone()).await?)
                }
                (false, Some(p)) if caught_up => {
                    info!(topic = %name, partition = id, "dropping a replica moved away");
                    self.drop_partition(name, &p);
                    changed = true;
                    None
                }
                // Keep a replica the metadata dropped until we are sure.
                (false, Some(p)) => Some(p),
                (_, None) => None,
            };
            partitions.push(slot);
        }
        if !changed || (local.is_none() && partitions.iter().all(Option::is_none)) {
            return Ok(());
        }
        let topic = Arc::new(Topic { meta, partitions });
        self.inner
            .topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), topic);
        Ok(())
    }

    /// Whether the replica of `topic`-`partition` (topic id `topic_id`)
    /// may open now: its directory is this topic's, or new, or an earlier
    /// topic's that may be removed (only once the metadata is current).
    fn may_open(&self, topic: &str, partition: u32, topic_id: u64, caught_up: bool) -> bool {
        let key = (topic.to_string(), partition);
        let mut unopened = self.unopened();
        let dir = partition_dir(&self.inner.config.data_dir, topic, partition);
        let stale = match unopened.get(&key) {
            Some(id) if *id == topic_id => {
                unopened.remove(&key);
                return true;
            }
            Some(id) if *id > topic_id => return false,
            Some(_) => true,
            None => dir.exists(),
        };
        if !stale {
            return true;
        }
        if !caught_up {
            return false;
        }
        // Leftovers of an earlier topic of this name.
        info!(dir = %dir.display(), "removing an earlier topic's partition directory");
        unopened.remove(&key);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            warn!(dir = %dir.display(), "could not remove a stale partition directory: {e}");
            return false;
        }
        true
    }

    /// Removes unopened directories whose replica the (current) metadata
    /// does not place on this node.
    fn remove_unheld_dirs(&self, me: u64, state: &MetadataState) {
        let mut unopened = self.unopened();
        let unheld: Vec<(String, u32)> = unopened
            .iter()
            .filter(|((topic, partition), id)| {
                let held = state.topics.get(topic).is_some_and(|t| {
                    t.id == **id
                        && t.partitions
                            .get(*partition as usize)
                            .is_some_and(|p| p.replicas.contains(&me))
                });
                !held && **id <= state.next_topic_id
            })
            .map(|(key, _)| key.clone())
            .collect();
        for (topic, partition) in unheld {
            unopened.remove(&(topic.clone(), partition));
            let dir = partition_dir(&self.inner.config.data_dir, &topic, partition);
            info!(dir = %dir.display(), "removing a replica this node no longer holds");
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                warn!(dir = %dir.display(), "could not remove a replica's directory: {e}");
            }
        }
    }

    fn unopened(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<(String, u32), u64>> {
        self.inner
            .unopened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn drop_partition(&self, topic: &str, partition: &Arc<crate::partition::Partition>) {
        partition.stop_role();
        partition
            .deleted
            .store(true, std::sync::atomic::Ordering::Release);
        let dir = partition_dir(&self.inner.config.data_dir, topic, partition.id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            warn!(dir = %dir.display(), "could not remove a dropped replica: {e}");
        }
    }

    fn drop_local_topic(&self, topic: &Topic) {
        info!(topic = %topic.meta.name, "removing a deleted topic's replicas");
        self.inner
            .topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&topic.meta.name);
        for p in topic.hosted() {
            self.drop_partition(&topic.meta.name, p);
        }
        self.inner.offsets.forget_topic(&topic.meta.name);
    }

    /// A new leader flushes the tail it copied as a follower at once: its
    /// reads wait for the HW to reach that tail.
    fn flush_copied_tail(
        &self,
        cluster: &Arc<Cluster>,
        topic: String,
        partition: &Arc<crate::partition::Partition>,
        leader_epoch: i32,
    ) {
        let partition = Arc::clone(partition);
        let cluster = Arc::clone(cluster);
        let broker = self.clone();
        self.inner.tracker.spawn(async move {
            match partition.flush_copied_tail(&broker.inner.metrics).await {
                Ok(Some(isr)) => {
                    broker.propose_isr(&cluster, topic, &partition, leader_epoch, isr);
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(
                        partition = partition.id,
                        "flushing a new leader's log failed: {e}"
                    );
                }
            }
        });
    }

    /// Takes the role the metadata names for every local replica.
    fn apply_roles(&self, cluster: &Arc<Cluster>, state: &MetadataState) {
        let me = cluster.id;
        for (name, partition) in self.all_topic_partitions() {
            let Some(topic) = state.topics.get(&name) else {
                continue;
            };
            let Some(p) = topic.partitions.get(partition.id as usize) else {
                continue;
            };
            match p.leader {
                Some(leader) if leader == me => {
                    let (became, propose) = partition.become_leader(
                        me,
                        p.leader_epoch,
                        &p.replicas,
                        &p.isr,
                        min_insync(&topic.configs),
                        cluster.config.replica_lag_max,
                    );
                    if became {
                        info!(topic = %name, partition = partition.id, epoch = p.leader_epoch, "leading");
                        self.flush_copied_tail(cluster, name.clone(), &partition, p.leader_epoch);
                        if name == OFFSETS_TOPIC {
                            self.load_offsets_partition(&partition, p.leader_epoch);
                        }
                    }
                    if let Some(isr) = propose {
                        self.propose_isr(cluster, name.clone(), &partition, p.leader_epoch, isr);
                    }
                }
                Some(leader) => {
                    if let Some(stop) = partition.become_follower(p.leader_epoch, leader) {
                        info!(topic = %name, partition = partition.id, epoch = p.leader_epoch, leader, "following");
                        self.spawn_fetcher(
                            cluster,
                            name.clone(),
                            Arc::clone(&partition),
                            p.leader_epoch,
                            leader,
                            stop,
                        );
                    }
                }
                None => {
                    if partition.role().epoch() != p.leader_epoch {
                        warn!(topic = %name, partition = partition.id, "offline: no in-sync replica is live");
                    }
                    partition.go_offline(p.leader_epoch);
                }
            }
        }
    }
}
