//! Changes to a topic that exists: its configs (`alter-config`) and its
//! partition count (`add-partitions`), both through the metadata quorum.
//!
//! A config change is checked against the topic-config rules as a whole
//! (the topic's configs after the change), then every replica applies it
//! to its open log and the leader's role takes `min.insync.replicas`
//! (`replica/reconcile.rs`). New partitions are placed by the same rules
//! as a new topic's, with the topic's replication factor; each replica
//! opens as the metadata names it.

use std::collections::BTreeMap;

use fjord_raft::{MetadataRequest, place_replicas};
use tracing::info;

use super::{APPLY_WAIT, Admin};
use crate::api::TopicDescription;
use crate::replica::topic_config::{TOPIC_CONFIG_KEYS, log_config};
use crate::{Error, Result};

/// Partitions a topic may have at most.
const MAX_PARTITIONS: u32 = 10_000;

impl Admin {
    /// Sets the configs of `set` and removes those named in `delete` (a
    /// removed config goes back to its default); returns the topic as it
    /// is then.
    ///
    /// # Errors
    /// `UnknownTopic`; `InvalidRequest` for nothing to change, an unknown
    /// key, a key both set and deleted, or a value the topic-config rules
    /// refuse (checked on the topic's configs after the change);
    /// `NoQuorum`.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<TopicDescription> {
        if set.is_empty() && delete.is_empty() {
            return Err(Error::InvalidRequest(
                "nothing to change: give a config to set or delete".into(),
            ));
        }
        if let Some(key) = delete
            .iter()
            .find(|k| !TOPIC_CONFIG_KEYS.contains(&k.as_str()))
        {
            return Err(Error::InvalidRequest(format!(
                "unknown topic config {key:?} (known: {})",
                TOPIC_CONFIG_KEYS.join(", ")
            )));
        }
        if let Some(key) = delete.iter().find(|k| set.contains_key(*k)) {
            return Err(Error::InvalidRequest(format!(
                "config {key} is both set and deleted"
            )));
        }
        let (mut configs, replication_factor) = self
            .quorum
            .read(|s| {
                s.topics.get(name).map(|t| {
                    let rf = t
                        .partitions
                        .first()
                        .map_or(1, |p| p.target.as_ref().unwrap_or(&p.replicas).len() as u32);
                    (t.configs.clone(), rf)
                })
            })
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        for key in &delete {
            configs.remove(key);
        }
        configs.extend(set.clone());
        log_config(&configs, self.default_flush, replication_factor.max(1))?;
        let request = MetadataRequest::AlterTopicConfig {
            name: name.to_string(),
            set: set.clone(),
            delete: delete.clone(),
        };
        self.propose_for(name, request).await?;
        self.quorum
            .await_applied(APPLY_WAIT, |s| {
                s.topics.get(name).is_some_and(|t| t.configs == configs)
            })
            .await;
        self.replicas.reconcile().await;
        info!(topic = %name, ?set, ?delete, "topic configs altered (by an admin request)");
        self.describe_local(name)
    }

    /// Grows a topic to `partitions` partitions in all, placing the new
    /// ones like a new topic's with the topic's replication factor.
    /// Records with a key then go to murmur2(key) % the new count, so a
    /// key's later records may land in another partition than its earlier
    /// ones (as in Kafka).
    ///
    /// # Errors
    /// `UnknownTopic`; `InvalidRequest` for a count that does not grow
    /// the topic or exceeds 10000, an internal topic (their counts are
    /// fixed: groups and gateways find their partitions by hash), or too
    /// few live nodes for the replication factor; `NoQuorum`.
    pub async fn add_partitions(&self, name: &str, partitions: u32) -> Result<TopicDescription> {
        if name.starts_with("__") {
            return Err(Error::InvalidRequest(format!(
                "internal topic {name} keeps its partition count (records are found in it by hash)"
            )));
        }
        let state = self.quorum.state();
        let topic = state
            .topics
            .get(name)
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        let current = topic.partitions.len() as u32;
        if partitions <= current {
            return Err(Error::InvalidRequest(format!(
                "topic {name} has {current} partitions; add-partitions only grows a topic \
                 (asked for {partitions} in all)"
            )));
        }
        if partitions > MAX_PARTITIONS {
            return Err(Error::InvalidRequest(format!(
                "partitions must be at most {MAX_PARTITIONS}, got {partitions}"
            )));
        }
        let replication_factor = topic
            .partitions
            .first()
            .map_or(1, |p| p.target.as_ref().unwrap_or(&p.replicas).len() as u32);
        let replicas = place_replicas(&state, partitions - current, replication_factor)
            .map_err(Error::InvalidRequest)?;
        let request = MetadataRequest::AddPartitions {
            name: name.to_string(),
            first: current,
            replicas,
        };
        self.propose_for(name, request).await?;
        let wanted = partitions as usize;
        self.quorum
            .await_applied(APPLY_WAIT, |s| {
                s.topics
                    .get(name)
                    .is_some_and(|t| t.partitions.len() >= wanted)
            })
            .await;
        self.replicas.await_local_leaders(name, APPLY_WAIT).await;
        info!(topic = %name, from = current, to = partitions, "partitions added (by an admin request)");
        self.describe_local(name)
    }

    /// Proposes a change to topic `name`, naming a topic deleted meanwhile
    /// as unknown.
    async fn propose_for(&self, name: &str, request: MetadataRequest) -> Result<()> {
        match self.quorum.propose(request).await {
            Err(Error::InvalidRequest(reason)) if reason.contains("unknown topic") => {
                Err(Error::UnknownTopic(name.to_string()))
            }
            other => other.map(|_| ()),
        }
    }
}
