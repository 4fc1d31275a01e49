//! Applying the committed metadata to this node's partitions: open the
//! replicas it holds (a topic's new partitions too), drop those it no
//! longer holds, apply altered topic configs to the open logs, and take
//! the role the metadata names (leader at an epoch, follower of a leader,
//! offline).
//!
//! # Safety of removals
//! A node that restarts may apply the metadata late. It removes local data
//! only when it has caught up with the quorum (a leader is known and every
//! entry in its log is applied) and only when the metadata has seen the
//! creation of the topic the data belongs to (its id, from the directory's
//! mark, is not newer than the metadata's last topic id), so stale
//! metadata never deletes a replica.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_raft::{MetadataState, TopicState};
use tracing::{info, warn};

use super::ReplicaManager;
use super::partition::Partition;
use super::topic::{Topic, TopicMeta, open_partition, partition_dir};
use super::topic_config::{log_config, min_insync};

impl ReplicaManager {
    /// Brings local partitions and roles in line with the metadata.
    pub(crate) async fn reconcile(&self) {
        let _turn = self.reconciling.lock().await;
        let state = self.quorum.state();
        let caught_up = self.quorum.caught_up();
        for (name, topic) in &state.topics {
            if let Err(e) = self.reconcile_topic(name, topic, caught_up).await {
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
            self.remove_unheld_dirs(self.quorum.id, &state);
        }
        self.apply_roles(&state);
    }

    /// Opens or drops this node's replicas of one topic.
    async fn reconcile_topic(
        &self,
        name: &str,
        topic: &TopicState,
        caught_up: bool,
    ) -> crate::Result<()> {
        let me = self.quorum.id;
        let mut local = self.topics_read().get(name).cloned();
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
        let log = log_config(&meta.configs, self.default_flush, replication_factor.max(1))?;
        let mut changed = local.as_ref().is_none_or(|l| {
            l.meta.partitions != meta.partitions
                || l.meta.configs != meta.configs
                || l.meta.replication_factor != meta.replication_factor
        });
        if let Some(l) = &local
            && l.meta.configs != meta.configs
        {
            // Altered configs apply to the open logs from now on (the
            // leader's role takes `min.insync.replicas` in `apply_roles`).
            info!(topic = %name, configs = ?meta.configs, "applying altered topic configs");
            for p in l.hosted() {
                p.write_log().set_config(log.clone());
            }
        }
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
                    Some(open_partition(&self.data_dir, &meta, id, log.clone()).await?)
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
        self.topics
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
        let dir = partition_dir(&self.data_dir, topic, partition);
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
            let dir = partition_dir(&self.data_dir, &topic, partition);
            info!(dir = %dir.display(), "removing a replica this node no longer holds");
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                warn!(dir = %dir.display(), "could not remove a replica's directory: {e}");
            }
        }
    }

    fn unopened(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, u32), u64>> {
        super::lock(&self.unopened)
    }

    fn drop_partition(&self, topic: &str, partition: &Arc<Partition>) {
        partition.stop_role();
        partition
            .deleted
            .store(true, std::sync::atomic::Ordering::Release);
        let dir = partition_dir(&self.data_dir, topic, partition.id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            warn!(dir = %dir.display(), "could not remove a dropped replica: {e}");
        }
    }

    fn drop_local_topic(&self, topic: &Topic) {
        info!(topic = %topic.meta.name, "removing a deleted topic's replicas");
        self.topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&topic.meta.name);
        for p in topic.hosted() {
            self.drop_partition(&topic.meta.name, p);
        }
    }

    /// A new leader flushes the tail it copied as a follower at once: its
    /// reads wait for the HW to reach that tail.
    fn flush_copied_tail(&self, topic: String, partition: &Arc<Partition>, leader_epoch: i32) {
        let partition = Arc::clone(partition);
        let manager = self.me.clone();
        self.tracker.spawn(async move {
            let Some(manager) = manager.upgrade() else {
                return;
            };
            match partition
                .flush_copied_tail(leader_epoch, &manager.metrics)
                .await
            {
                Ok(actions) => manager.carry_out(&topic, &partition, leader_epoch, actions),
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
    fn apply_roles(&self, state: &MetadataState) {
        let me = self.quorum.id;
        for (name, partition) in self.all() {
            let Some(topic) = state.topics.get(&name) else {
                continue;
            };
            let Some(p) = topic.partitions.get(partition.id as usize) else {
                continue;
            };
            match p.leader {
                Some(leader) if leader == me => {
                    let (became, actions) = partition.become_leader(
                        me,
                        p.leader_epoch,
                        &p.replicas,
                        &p.isr,
                        min_insync(&topic.configs),
                        self.quorum.config.replica_lag_max,
                    );
                    self.carry_out(&name, &partition, p.leader_epoch, actions);
                    if became {
                        info!(topic = %name, partition = partition.id, epoch = p.leader_epoch, "leading");
                        self.flush_copied_tail(name.clone(), &partition, p.leader_epoch);
                        if let Some(hook) = super::lock(&self.hooks).get(&name) {
                            hook(&partition, p.leader_epoch);
                        }
                    }
                }
                Some(leader) => {
                    if let Some(stop) = partition.become_follower(p.leader_epoch, leader) {
                        info!(topic = %name, partition = partition.id, epoch = p.leader_epoch, leader, "following");
                        self.spawn_fetcher(
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
