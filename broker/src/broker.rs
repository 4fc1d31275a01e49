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
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::config::{BrokerConfig, TopicDescription, TopicSpec};
use crate::coordinator::Coordinator;
use crate::legacy;
use crate::metrics::{Gauges, Metrics};
use crate::offsets::OffsetCache;
use crate::partition::Partition;
use crate::topic::{Topic, scan_marks};
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
    /// This node's membership of the metadata quorum.
    pub(crate) cluster: Arc<Cluster>,
    /// Marked partition directories not opened yet (a replica opens once
    /// the metadata says this node holds it): (topic, partition) → topic
    /// id.
    pub(crate) unopened: Mutex<BTreeMap<(String, u32), u64>>,
    /// A previous release's single-node stores, until they are migrated
    /// into the quorum.
    pub(crate) legacy: Mutex<Option<crate::legacy::SingleNodeStores>>,
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
    /// Opens the data directory and this node's Raft, and starts the
    /// background tasks. Replicas open once the metadata says this node
    /// holds them; call [`Broker::start_cluster`] next, once the gRPC
    /// listener serves the node-to-node RPCs.
    ///
    /// # Errors
    /// `Metadata` when the directory cannot be created or locked (another
    /// broker uses it) or a previous release's `topics.json` or
    /// `users.json` is unreadable; `Cluster` for an identity that does not
    /// match the data directory.
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
        let legacy = legacy::open(&dir, Cluster::has_identity(&dir)?)?;
        let unopened = scan_marks(&dir)?;
        let advertised = config
            .advertised_grpc
            .map(|a| a.to_string())
            .unwrap_or_default();
        let cluster = Arc::new(
            Cluster::open(
                &dir,
                u64::from(config.node_id),
                advertised,
                config.cluster.clone(),
            )
            .await?,
        );
        let broker = Broker {
            inner: Arc::new(Inner {
                config,
                topics: RwLock::new(BTreeMap::new()),
                unopened: Mutex::new(unopened),
                legacy: Mutex::new(legacy),
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
                _lock: lock,
            }),
        };
        broker.spawn_background();
        info!(data_dir = %dir.display(), "broker open");
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
    /// `UnknownTopic`/`UnknownPartition`; `NotLeader` (naming the leader)
    /// when this node holds no replica of it.
    pub(crate) fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let local = self.topic(topic).ok().and_then(|t| {
            t.partitions
                .get(partition as usize)
                .map(|p| p.clone().ok_or(()))
        });
        match local {
            Some(Ok(p)) => Ok(p),
            _ => Err(self.not_leader(topic, partition)),
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

    /// The partition if this node leads it.
    ///
    /// # Errors
    /// As [`Broker::partition`]; `NotLeader` when this node is not the
    /// leader.
    pub(crate) fn leader_partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let p = self.partition(topic, partition)?;
        if !matches!(&*p.role(), crate::partition::Role::Leader { .. }) {
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
    /// `InvalidRequest` for a bad name (names starting with `__` are
    /// reserved), partition count, replication factor or config;
    /// `TopicExists`; `NoQuorum`.
    pub async fn create_topic(&self, spec: TopicSpec) -> Result<TopicDescription> {
        self.create_topic_in_cluster(spec, false).await
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
        self.create_topic_in_cluster(spec, true).await
    }

    pub fn list_topics(&self, include_internal: bool) -> Vec<TopicDescription> {
        self.list_topics_in_cluster(include_internal)
    }

    /// # Errors
    /// `UnknownTopic`.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        self.describe_topic_in_cluster(name)
    }

    /// Deletes a topic and its data.
    ///
    /// # Errors
    /// `UnknownTopic`; `InvalidRequest` for internal topics; `NoQuorum`.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_open()?;
        self.delete_topic_in_cluster(name, false).await
    }

    /// Deletes an internal topic a gateway made for itself (an AMQP
    /// queue's): what clients may not do.
    ///
    /// # Errors
    /// As [`Broker::delete_topic`], internal topics aside.
    pub async fn delete_internal_topic(&self, name: &str) -> Result<()> {
        self.check_open()?;
        self.delete_topic_in_cluster(name, true).await
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
        if let Err(e) = self.cluster().node.shutdown().await {
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
