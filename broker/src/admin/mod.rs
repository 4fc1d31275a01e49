//! Administration: topics and their configs, users, and the cluster's
//! scaling operations, all changed through the metadata quorum.
//!
//! # Layout
//! This file: [`Admin`] and topics (create, delete, list, partition
//! counts); `topic_changes`: altering a topic's configs, adding
//! partitions; `describe`: a topic with its leaders' figures;
//! `cluster_ops`: the cluster's status, reassignments, draining and
//! rebalancing; `users`: users and their password hashes; `legacy`: a
//! previous release's single-node stores, migrated into the quorum.

mod cluster_ops;
mod describe;
pub(crate) mod legacy;
mod topic_changes;
mod users;

pub use cluster_ops::{ClusterStatus, NodeStatus, PartitionMove, UnderReplicated};
pub use users::{UserInfo, UserSpec};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_raft::{MetadataRequest, place_replicas};
use fjord_storage::FlushPolicy;
use tracing::info;

use crate::api::{TopicDescription, TopicSpec};
use crate::quorum::Quorum;
use crate::replica::ReplicaManager;
use crate::replica::topic_config::{log_config, validate_topic_name};
use crate::{Error, Result};

/// How long a change waits to be applied on this node before it answers.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// Topics, users and cluster operations; one per broker.
pub struct Admin {
    quorum: Arc<Quorum>,
    replicas: Arc<ReplicaManager>,
    default_flush: FlushPolicy,
    data_dir: PathBuf,
    /// A previous release's single-node stores, until they are migrated.
    legacy: Mutex<Option<legacy::SingleNodeStores>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    pub(crate) fn new(
        quorum: Arc<Quorum>,
        replicas: Arc<ReplicaManager>,
        default_flush: FlushPolicy,
        data_dir: PathBuf,
        legacy: Option<legacy::SingleNodeStores>,
    ) -> Admin {
        Admin {
            quorum,
            replicas,
            default_flush,
            data_dir,
            legacy: Mutex::new(legacy),
        }
    }

    /// Creates a topic.
    ///
    /// # Errors
    /// `InvalidRequest` for a bad name (names starting with `__` are
    /// reserved), partition count, replication factor or config;
    /// `TopicExists`; `NoQuorum`.
    pub async fn create_topic(&self, spec: TopicSpec) -> Result<TopicDescription> {
        self.create(spec, false).await
    }

    /// Creates an internal topic (its name starts with `__`), such as the
    /// gateways' compacted session and retained-message topics; it is
    /// hidden from `list_topics(false)` and cannot be deleted by clients.
    ///
    /// # Errors
    /// As [`Admin::create_topic`]; `InvalidRequest` for a name that does
    /// not start with `__`.
    pub async fn create_internal_topic(&self, spec: TopicSpec) -> Result<TopicDescription> {
        if !spec.name.starts_with("__") {
            return Err(Error::InvalidRequest(format!(
                "internal topic names start with \"__\": {}",
                spec.name
            )));
        }
        self.create(spec, true).await
    }

    async fn create(&self, mut spec: TopicSpec, internal: bool) -> Result<TopicDescription> {
        if spec.name.starts_with("__") && !internal {
            return Err(Error::InvalidRequest(format!(
                "topic names starting with \"__\" are reserved: {}",
                spec.name
            )));
        }
        validate_topic_name(&spec.name)?;
        if spec.partitions == 0 || spec.partitions > 10_000 {
            return Err(Error::InvalidRequest(format!(
                "partitions must be 1 to 10000, got {}",
                spec.partitions
            )));
        }
        let state = self.quorum.state();
        let live = state
            .brokers
            .values()
            .filter(|b| !b.fenced && !b.draining)
            .count() as u32;
        if spec.replication_factor == 0 {
            spec.replication_factor = live.clamp(1, 3);
        }
        log_config(&spec.configs, self.default_flush, spec.replication_factor)?;
        if state.topics.contains_key(&spec.name) {
            return Err(Error::TopicExists(spec.name));
        }
        let replicas = place_replicas(&state, spec.partitions, spec.replication_factor)
            .map_err(Error::InvalidRequest)?;
        let request = MetadataRequest::CreateTopic {
            name: spec.name.clone(),
            configs: spec.configs.clone(),
            replicas,
        };
        match self.quorum.propose(request).await {
            Err(Error::InvalidRequest(reason)) if reason.contains("already exists") => {
                return Err(Error::TopicExists(spec.name));
            }
            other => {
                other?;
            }
        }
        self.quorum
            .await_applied(APPLY_WAIT, |s| s.topics.contains_key(&spec.name))
            .await;
        self.replicas
            .await_local_leaders(&spec.name, APPLY_WAIT)
            .await;
        info!(topic = %spec.name, partitions = spec.partitions, replication_factor = spec.replication_factor, "topic created");
        self.describe_local(&spec.name)
    }

    /// Deletes a topic and its data.
    ///
    /// # Errors
    /// `UnknownTopic`; `InvalidRequest` for internal topics; `NoQuorum`.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.delete(name, false).await
    }

    /// Deletes an internal topic a gateway made for itself (an AMQP
    /// queue's): what clients may not do.
    ///
    /// # Errors
    /// As [`Admin::delete_topic`], internal topics aside.
    pub async fn delete_internal_topic(&self, name: &str) -> Result<()> {
        self.delete(name, true).await
    }

    async fn delete(&self, name: &str, internal_too: bool) -> Result<()> {
        if name.starts_with("__") && !internal_too {
            return Err(Error::InvalidRequest(format!(
                "internal topic {name} cannot be deleted"
            )));
        }
        if !self.quorum.read(|s| s.topics.contains_key(name)) {
            return Err(Error::UnknownTopic(name.to_string()));
        }
        let request = MetadataRequest::DeleteTopic {
            name: name.to_string(),
        };
        match self.quorum.propose(request).await {
            Err(Error::InvalidRequest(reason)) if reason.contains("unknown topic") => {
                Err(Error::UnknownTopic(name.to_string()))
            }
            other => other.map(|_| ()),
        }?;
        self.quorum
            .await_applied(APPLY_WAIT, |s| !s.topics.contains_key(name))
            .await;
        info!(topic = %name, "topic deleted");
        Ok(())
    }

    /// Partition count of a topic the cluster knows.
    ///
    /// # Errors
    /// `UnknownTopic`.
    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        self.quorum.partition_count(topic)
    }

    /// Every topic (internal ones only when asked), with this node's
    /// figures of its replicas (see [`Admin::describe_topic`] for the
    /// leaders').
    pub fn list_topics(&self, include_internal: bool) -> Vec<TopicDescription> {
        let names: Vec<String> = self.quorum.read(|s| s.topics.keys().cloned().collect());
        names
            .iter()
            .filter(|n| include_internal || !n.starts_with("__"))
            .filter_map(|n| self.describe_local(n).ok())
            .collect()
    }

    /// Waits up to `wait` until the quorum's voters are live, where it has
    /// three or more, so that topics created next get all their replicas
    /// (see [`Quorum::enough_live_voters`]). False when the wait ran out.
    pub async fn wait_for_voters(&self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.quorum.enough_live_voters() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
