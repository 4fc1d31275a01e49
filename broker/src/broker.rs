//! The [`Broker`] handle: opening a node's data directory, topic
//! administration, background maintenance and shutdown.
//!
//! # Concurrency
//! `Broker` is an `Arc` around shared state; clone it freely. The topic map
//! sits behind a `std::sync::RwLock` (never held across an `.await`);
//! creating and deleting topics is serialised by an async mutex so metadata
//! writes happen one at a time. Background tasks (flush timer, retention,
//! group coordinator tick) are owned by a `TaskTracker` and stop on
//! [`Broker::shutdown`].

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::config::{BrokerConfig, PartitionInfo, TopicDescription, TopicSpec};
use crate::coordinator::Coordinator;
use crate::metrics::{Gauges, Metrics};
use crate::offsets::{OFFSETS_TOPIC, OffsetCache};
use crate::partition::Partition;
use crate::topic::{Topic, TopicMeta, load_topics, open_partitions, partition_dir, save_topics};
use crate::topic_config::{log_config, validate_topic_name};
use crate::user_store::load_users;
use crate::{Error, Result};

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: BrokerConfig,
    pub(crate) topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    pub(crate) admin: tokio::sync::Mutex<()>,
    pub(crate) producer_ids: tokio::sync::Mutex<()>,
    pub(crate) metrics: Metrics,
    pub(crate) coordinator: Coordinator,
    pub(crate) offsets: OffsetCache,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Set when the node is part of a cluster.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// A single node's users (`users.json`); empty in a cluster, whose
    /// users are in the metadata.
    pub(crate) users: RwLock<BTreeMap<String, fjord_raft::User>>,
    pub(crate) round_robin: AtomicU32,
    /// Gateways that take tunnelled connections, by protocol.
    pub(crate) tunnels: crate::tunnel::Tunnels,
    closed: AtomicBool,
    _lock: File,
}

/// The in-process broker handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

impl Broker {
    /// Opens the data directory, recovers every partition, rebuilds the
    /// consumer-offset cache and starts the background tasks.
    ///
    /// # Errors
    /// `Metadata` when the directory cannot be created or locked (another
    /// broker uses it) or `topics.json` or `users.json` is unreadable;
    /// `Storage` when a
    /// partition log cannot be opened.
    pub async fn open(config: BrokerConfig) -> Result<Broker> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Metadata(format!("create data directory {}: {e}", dir.display()))
        })?;
        let lock_path = dir.join(".lock");
        let lock = File::create(&lock_path)
            .map_err(|e| Error::Metadata(format!("create {}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|_| {
            Error::Metadata(format!(
                "data directory {} is in use by another fjord process",
                dir.display()
            ))
        })?;
        let cluster = match &config.cluster {
            Some(cluster_config) => {
                let advertised = config.advertised_grpc.ok_or_else(|| {
                    Error::Metadata("a clustered node needs its advertised gRPC address".into())
                })?;
                Some(Arc::new(
                    Cluster::open(
                        &dir,
                        u64::from(config.node_id),
                        advertised.to_string(),
                        cluster_config.clone(),
                    )
                    .await?,
                ))
            }
            None => None,
        };
        let clustered = cluster.is_some();
        let users = if clustered {
            BTreeMap::new()
        } else {
            load_users(&dir)?
        };
        let mut topics = BTreeMap::new();
        for meta in load_topics(&dir)? {
            let log = log_config(
                &meta.configs,
                config.default_flush,
                meta.replication_factor.max(1),
            )?;
            let partitions = open_partitions(&dir, &meta, log, clustered).await?;
            topics.insert(meta.name.clone(), Arc::new(Topic { meta, partitions }));
        }
        let broker = Broker {
            inner: Arc::new(Inner {
                config,
                topics: RwLock::new(topics),
                admin: tokio::sync::Mutex::new(()),
                producer_ids: tokio::sync::Mutex::new(()),
                metrics: Metrics::default(),
                coordinator: Coordinator::default(),
                offsets: OffsetCache::default(),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                round_robin: AtomicU32::new(0),
                tunnels: crate::tunnel::Tunnels::default(),
                closed: AtomicBool::new(false),
                cluster,
                users: RwLock::new(users),
                _lock: lock,
            }),
        };
        if !clustered && broker.topic(OFFSETS_TOPIC).is_err() {
            let mut spec = TopicSpec::new(
                OFFSETS_TOPIC,
                broker.inner.config.offsets_topic_partitions.max(1),
            );
            spec.configs
                .insert("cleanup.policy".into(), "compact".into());
            spec.configs
                .insert("segment.bytes".into(), (64u64 << 20).to_string());
            broker.create(spec, true).await?;
        }
        if !clustered {
            broker.load_offsets()?;
        }
        broker.spawn_background();
        info!(data_dir = %dir.display(), topics = broker.topics_read().len(), "broker open");
        Ok(broker)
    }

    fn spawn_background(&self) {
        let inner = &self.inner;
        let broker = self.clone();
        inner.tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut last_maintenance = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = broker.inner.shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                broker.inner.coordinator.tick();
                for partition in broker.all_partitions() {
                    if let Err(e) = partition.flush_if_due(&broker.inner.metrics).await {
                        warn!("timed flush failed: {e}");
                    }
                    // Followers of `flush.messages=1` topics fsync here
                    // rather than before every fetch.
                    if let Err(e) = partition.flush_follower(&broker.inner.metrics).await {
                        warn!("follower flush failed: {e}");
                    }
                }
                if last_maintenance.elapsed() >= broker.inner.config.retention_check_interval {
                    last_maintenance = tokio::time::Instant::now();
                    broker.maintain().await;
                }
            }
        });
    }

    /// Retention, compaction and rolls on every partition (blocking work on
    /// a blocking thread).
    async fn maintain(&self) {
        for (topic, partition) in self.all_topic_partitions() {
            let result = tokio::task::spawn_blocking(move || {
                partition.maintain().map(|n| (n, partition.id))
            })
            .await;
            match result {
                Ok(Ok((0, _))) => {}
                Ok(Ok((bytes, id))) => {
                    info!(topic = %topic, partition = id, bytes, "retention/compaction freed bytes")
                }
                Ok(Err(e)) => warn!(topic = %topic, "retention/compaction failed: {e}"),
                Err(e) => warn!(topic = %topic, "retention task failed: {e}"),
            }
        }
    }

    pub(crate) fn topics_read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn all_topic_partitions(&self) -> Vec<(String, Arc<Partition>)> {
        let topics = self.topics_read();
        topics
            .values()
            .flat_map(|t| t.hosted().map(|p| (t.meta.name.clone(), Arc::clone(p))))
            .collect()
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.all_topic_partitions()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        let topics = self.topics_read();
        topics
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    /// This node's replica of a partition.
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; in a cluster, `NotLeader` (naming
    /// the leader) when this node holds no replica of it.
    pub(crate) fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let local = self.topic(topic).ok().and_then(|t| {
            t.partitions
                .get(partition as usize)
                .map(|p| p.clone().ok_or(()))
        });
        match local {
            Some(Ok(p)) => Ok(p),
            _ if self.cluster().is_some() => Err(self.not_leader(topic, partition)),
            Some(Err(())) | None => match self.topic(topic) {
                Ok(_) => Err(Error::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                }),
                Err(e) => Err(e),
            },
        }
    }

    /// The partition if this node leads it and may serve reads from it.
    ///
    /// # Errors
    /// As [`Broker::leader_partition`]; `LeaderNotReady` while a new
    /// leader's high watermark catches up.
    pub(crate) fn readable_partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let p = self.leader_partition(topic, partition)?;
        if !p.serves_reads() {
            return Err(Error::LeaderNotReady {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok(p)
    }

    /// The partition if this node leads it (any replica on a single node).
    ///
    /// # Errors
    /// As [`Broker::partition`]; `NotLeader` when this node is not the
    /// leader.
    pub(crate) fn leader_partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let p = self.partition(topic, partition)?;
        if self.cluster().is_some() && !matches!(&*p.role(), crate::partition::Role::Leader { .. })
        {
            return Err(self.not_leader(topic, partition));
        }
        Ok(p)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Creates a topic.
    ///
    /// # Errors
    /// `InvalidRequest` for a bad name, partition count, replication factor
    /// or config; `TopicExists`; `Metadata`/`Storage` for disk failures.
    pub async fn create_topic(&self, spec: TopicSpec) -> Result<TopicDescription> {
        if self.cluster().is_some() {
            return self.create_topic_in_cluster(spec, false).await;
        }
        if spec.name.starts_with("__") {
            return Err(Error::InvalidRequest(format!(
                "topic names starting with \"__\" are reserved: {}",
                spec.name
            )));
        }
        self.create(spec, false).await
    }

    /// Creates an internal topic (its name starts with `__`), such as the
    /// gateways' compacted session and retained-message topics; it is
    /// hidden from `list_topics(false)` and cannot be deleted by clients.
    ///
    /// # Errors
    /// As [`Broker::create_topic`]; `InvalidRequest` for a name that does
    /// not start with `__`.
    pub async fn create_internal_topic(&self, spec: TopicSpec) -> Result<TopicDescription> {
        if !spec.name.starts_with("__") {
            return Err(Error::InvalidRequest(format!(
                "internal topic names start with \"__\": {}",
                spec.name
            )));
        }
        if self.cluster().is_some() {
            return self.create_topic_in_cluster(spec, true).await;
        }
        self.create(spec, true).await
    }

    async fn create(&self, mut spec: TopicSpec, internal: bool) -> Result<TopicDescription> {
        self.check_open()?;
        validate_topic_name(&spec.name)?;
        if spec.partitions == 0 || spec.partitions > 10_000 {
            return Err(Error::InvalidRequest(format!(
                "partitions must be 1 to 10000, got {}",
                spec.partitions
            )));
        }
        if spec.replication_factor == 0 {
            spec.replication_factor = 1;
        }
        if spec.replication_factor != 1 {
            return Err(Error::InvalidRequest(format!(
                "replication factor {} needs {} brokers, but this is a single-node broker",
                spec.replication_factor, spec.replication_factor
            )));
        }
        let log = log_config(
            &spec.configs,
            self.inner.config.default_flush,
            spec.replication_factor,
        )?;
        let _admin = self.inner.admin.lock().await;
        if self.topic(&spec.name).is_ok() {
            return Err(Error::TopicExists(spec.name));
        }
        let meta = TopicMeta {
            name: spec.name.clone(),
            partitions: spec.partitions,
            replication_factor: spec.replication_factor,
            configs: spec.configs,
            internal,
            id: 0,
            hosted: None,
        };
        let dir = &self.inner.config.data_dir;
        for id in 0..meta.partitions {
            // Leftovers of an earlier topic of this name must not come back.
            let stale = partition_dir(dir, &meta.name, id);
            if stale.exists() {
                std::fs::remove_dir_all(&stale).map_err(|e| {
                    Error::Metadata(format!("remove stale {}: {e}", stale.display()))
                })?;
            }
        }
        let mut all = self.topic_metas();
        all.push(meta.clone());
        save_topics(dir, &all)?;
        let partitions = open_partitions(dir, &meta, log, false).await?;
        let topic = Arc::new(Topic { meta, partitions });
        self.inner
            .topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(spec.name.clone(), Arc::clone(&topic));
        info!(topic = %spec.name, partitions = spec.partitions, "topic created");
        Ok(describe(&topic, self.inner.config.node_id))
    }

    fn topic_metas(&self) -> Vec<TopicMeta> {
        let topics = self.topics_read();
        topics.values().map(|t| t.meta.clone()).collect()
    }

    pub fn list_topics(&self, include_internal: bool) -> Vec<TopicDescription> {
        if self.cluster().is_some() {
            return self.list_topics_in_cluster(include_internal);
        }
        let topics = self.topics_read();
        topics
            .values()
            .filter(|t| include_internal || !t.meta.internal)
            .map(|t| describe(t, self.inner.config.node_id))
            .collect()
    }

    /// # Errors
    /// `UnknownTopic`.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        if self.cluster().is_some() {
            return self.describe_topic_in_cluster(name);
        }
        let topic = self.topic(name)?;
        Ok(describe(&topic, self.inner.config.node_id))
    }

    /// Deletes a topic and its data.
    ///
    /// # Errors
    /// `UnknownTopic`; `InvalidRequest` for internal topics; `Metadata`.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.delete_topic_as(name, false).await
    }

    /// Deletes an internal topic a gateway made for itself (an AMQP
    /// queue's): what clients may not do.
    ///
    /// # Errors
    /// As [`Broker::delete_topic`], internal topics aside.
    pub async fn delete_internal_topic(&self, name: &str) -> Result<()> {
        self.delete_topic_as(name, true).await
    }

    async fn delete_topic_as(&self, name: &str, internal_too: bool) -> Result<()> {
        self.check_open()?;
        if self.cluster().is_some() {
            return self.delete_topic_in_cluster(name, internal_too).await;
        }
        let _admin = self.inner.admin.lock().await;
        let topic = self.topic(name)?;
        if topic.meta.internal && !internal_too {
            return Err(Error::InvalidRequest(format!(
                "internal topic {name} cannot be deleted"
            )));
        }
        let remaining: Vec<TopicMeta> = self
            .topic_metas()
            .into_iter()
            .filter(|m| m.name != name)
            .collect();
        save_topics(&self.inner.config.data_dir, &remaining)?;
        self.inner
            .topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        for partition in topic.hosted() {
            partition.deleted.store(true, Ordering::Release);
            let dir = partition_dir(&self.inner.config.data_dir, name, partition.id);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                warn!(dir = %dir.display(), "could not remove a deleted partition's directory: {e}");
            }
        }
        self.inner.offsets.forget_topic(name);
        info!(topic = %name, "topic deleted");
        Ok(())
    }

    /// The gRPC address clients are told to use for this node.
    pub fn advertised_grpc(&self) -> Option<std::net::SocketAddr> {
        self.inner.config.advertised_grpc
    }

    pub fn node_id(&self) -> u32 {
        self.inner.config.node_id
    }

    /// Prometheus text exposition of the broker's metrics.
    pub fn render_metrics(&self) -> String {
        let topics = self.topics_read();
        let (groups, group_members) = self.inner.coordinator.counts();
        let gauges = Gauges {
            topics: topics.len(),
            partitions: topics.values().map(|t| t.hosted().count()).sum(),
            log_size_bytes: topics
                .values()
                .flat_map(|t| t.hosted())
                .map(|p| p.read_log().size_bytes())
                .sum(),
            groups,
            group_members,
        };
        drop(topics);
        self.inner.metrics.render(&gauges)
    }

    /// True until [`Broker::shutdown`] starts.
    pub fn is_ready(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire)
    }

    /// Flushes every partition and stops background tasks. Idempotent.
    pub async fn shutdown(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.hand_off_leadership().await;
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        if let Some(cluster) = self.cluster()
            && let Err(e) = cluster.node.shutdown().await
        {
            warn!("stopping the metadata node: {e}");
        }
        let partitions = self.all_topic_partitions();
        let flushed = tokio::task::spawn_blocking(move || {
            for (topic, partition) in partitions {
                if let Err(e) = partition.flush_now() {
                    warn!(topic = %topic, partition = partition.id, "flush on shutdown failed: {e}");
                }
            }
        })
        .await;
        if let Err(e) = flushed {
            warn!("shutdown flush task failed: {e}");
        }
        info!("broker stopped");
    }
}

pub(crate) fn describe(topic: &Topic, node_id: u32) -> TopicDescription {
    TopicDescription {
        name: topic.meta.name.clone(),
        internal: topic.meta.internal,
        replication_factor: topic.meta.replication_factor,
        configs: topic.meta.configs.clone(),
        partitions: topic
            .hosted()
            .map(|p| {
                let log = p.read_log();
                PartitionInfo {
                    partition: p.id,
                    leader: node_id,
                    leader_epoch: 0,
                    replicas: vec![node_id],
                    isr: vec![node_id],
                    leader_address: String::new(),
                    log_start_offset: log.log_start_offset(),
                    high_watermark: p.high_watermark(),
                    log_end_offset: log.log_end_offset(),
                    size_bytes: log.size_bytes(),
                }
            })
            .collect(),
    }
}
