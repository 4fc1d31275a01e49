//! Applying the committed metadata to this node's partitions: open the
//! replicas it holds, drop those it no longer holds, and take the role the
//! metadata names (leader at an epoch, follower of a leader, offline).
//!
//! # Safety of removals
//! A node that restarts may apply the metadata late. It removes local data
//! only when it has caught up with the quorum (a leader is known and every
//! entry in its log is applied) and, for a whole topic, only when the
//! metadata has seen that topic's creation (its id is not newer than the
//! metadata's last topic id), so stale metadata never deletes a replica.

use std::sync::Arc;

use fjord_raft::{MetadataState, TopicState};
use tracing::{info, warn};

use super::Cluster;
use crate::broker::Broker;
use crate::offsets::OFFSETS_TOPIC;
use crate::topic::{Topic, TopicMeta, open_partition, partition_dir, save_topics};
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
        let mut changed = false;
        for (name, topic) in &state.topics {
            match self.reconcile_topic(cluster, name, topic, caught_up).await {
                Ok(c) => changed |= c,
                Err(e) => warn!(topic = %name, "applying metadata failed: {e}"),
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
            changed = true;
        }
        if changed && let Err(e) = self.save_local_topics() {
            warn!("recording local topics failed: {e}");
        }
        self.apply_roles(cluster, &state);
    }

    /// Opens or drops this node's replicas of one topic; true when the
    /// local topic changed.
    async fn reconcile_topic(
        &self,
        cluster: &Arc<Cluster>,
        name: &str,
        topic: &TopicState,
        caught_up: bool,
    ) -> crate::Result<bool> {
        let me = cluster.id;
        let hosted_now: Vec<u32> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.replicas.contains(&me))
            .map(|(i, _)| i as u32)
            .collect();
        let local = self.topic(name).ok();
        if let Some(local) = &local
            && local.meta.id != topic.id
        {
            if local.meta.id > topic.id || !caught_up {
                // Our metadata is older than the local data: wait.
                return Ok(false);
            }
            // The topic was deleted and created again while we were away.
            self.drop_local_topic(local);
            return Box::pin(self.reconcile_topic(cluster, name, topic, caught_up))
                .await
                .map(|_| true);
        }
        let local_hosted: Vec<u32> = local
            .as_ref()
            .map(|t| t.hosted().map(|p| p.id).collect())
            .unwrap_or_default();
        // Keep replicas the metadata dropped until we are sure.
        let mut hosted = hosted_now.clone();
        if !caught_up {
            hosted.extend(local_hosted.iter().filter(|p| !hosted_now.contains(p)));
            hosted.sort_unstable();
        }
        if hosted == local_hosted && local.is_some() {
            return Ok(false);
        }
        if hosted.is_empty() && local.is_none() {
            return Ok(false);
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
            internal: name.starts_with("__"),
            id: topic.id,
            hosted: Some(hosted.clone()),
        };
        let log = log_config(
            &meta.configs,
            self.inner.config.default_flush,
            replication_factor.max(1),
        )?;
        let dir = &self.inner.config.data_dir;
        let mut partitions = Vec::with_capacity(meta.partitions as usize);
        for id in 0..meta.partitions {
            let existing = local
                .as_ref()
                .and_then(|t| t.partitions.get(id as usize).cloned().flatten());
            match (hosted.contains(&id), existing) {
                (true, Some(p)) => partitions.push(Some(p)),
                (true, None) => {
                    if local.is_none() {
                        // Leftovers of an earlier topic of this name.
                        let stale = partition_dir(dir, name, id);
                        if stale.exists() && !local_dir_belongs(dir, name, topic.id) {
                            let _ = std::fs::remove_dir_all(&stale);
                        }
                    }
                    info!(topic = %name, partition = id, "opening a replica");
                    partitions.push(Some(
                        open_partition(dir, &meta, id, log.clone(), true).await?,
                    ));
                }
                (false, Some(p)) => {
                    info!(topic = %name, partition = id, "dropping a replica moved away");
                    self.drop_partition(name, &p);
                    partitions.push(None);
                }
                (false, None) => partitions.push(None),
            }
        }
        let topic = Arc::new(Topic { meta, partitions });
        self.inner
            .topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), topic);
        Ok(true)
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

    pub(crate) fn save_local_topics(&self) -> crate::Result<()> {
        let metas: Vec<TopicMeta> = self
            .topics_read()
            .values()
            .map(|t| t.meta.clone())
            .collect();
        save_topics(&self.inner.config.data_dir, &metas)
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

/// Whether the partition directories of `name` in `dir` belong to the topic
/// with id `id`, per the recorded local topics.
fn local_dir_belongs(dir: &std::path::Path, name: &str, id: u64) -> bool {
    crate::topic::load_topics(dir)
        .map(|metas| metas.iter().any(|m| m.name == name && m.id == id))
        .unwrap_or(false)
}
