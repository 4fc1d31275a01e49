//! The replica manager: this node's partitions and their roles.
//!
//! It owns every local replica (a [`Partition`]: its log, high watermark,
//! group commit and waits), opens and drops them as the metadata says
//! (`reconcile.rs`), gives each the role the metadata names (leader at an
//! epoch, follower of a leader, offline), runs the followers' fetchers
//! (`fetcher.rs`) and answers other nodes' fetches as their leader
//! (`leader_fetch.rs`). It is the only place that carries out the
//! [`ReplicationAction`]s a leader's replication asks for
//! ([`ReplicaManager::carry_out`]): high watermark advances and ISR
//! proposals.
//!
//! # Layout
//! This file: the manager, lookups, carrying out actions, its background
//! loops; `append`, `read`: the leader's writes and reads; `leadership`:
//! waiting for leadership, handing it away on shutdown; `reconcile`:
//! metadata → local replicas; `fetcher`, `fetch_stream`: followers;
//! `leader_fetch`: the leader side of a replica fetch; `partition`,
//! `replication`: one partition and its leader's sans-IO replication
//! state; `topic`: replicas and their marks on disk; `topic_config`: topic
//! configs mapped onto the log's.
//!
//! # Concurrency
//! The replica map sits behind a `std::sync::RwLock` (never held across an
//! `.await`); applying metadata is serialised by an async mutex.

mod append;
mod fetch_stream;
mod fetcher;
mod leader_fetch;
mod leadership;
pub(crate) mod partition;
mod read;
mod reconcile;
pub(crate) mod replication;
pub(crate) mod topic;
pub(crate) mod topic_config;

pub(crate) use fetch_stream::FETCH_PATH;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use fjord_storage::FlushPolicy;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::quorum::Quorum;
use crate::{Error, Result};
use partition::{Partition, Role};
use replication::ReplicationAction;
use topic::Topic;

/// Called when this node starts leading a partition of a topic someone
/// watches (the group coordinator watches `__consumer_offsets`): the
/// partition and the epoch it leads at.
pub(crate) type LeadershipHook = Box<dyn Fn(&Arc<Partition>, i32) + Send + Sync>;

/// This node's replicas; shared by the broker's parts.
pub(crate) struct ReplicaManager {
    quorum: Arc<Quorum>,
    data_dir: PathBuf,
    default_flush: FlushPolicy,
    retention_check_interval: Duration,
    metrics: Arc<Metrics>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Marked partition directories not opened yet (a replica opens once
    /// the metadata says this node holds it): (topic, partition) → topic
    /// id.
    unopened: Mutex<BTreeMap<(String, u32), u64>>,
    /// Serialises applying the metadata.
    reconciling: tokio::sync::Mutex<()>,
    hooks: Mutex<BTreeMap<String, LeadershipHook>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Itself, for the tasks it spawns.
    me: Weak<ReplicaManager>,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What `ReplicaManager::open` needs beyond the quorum.
pub(crate) struct ReplicaSettings {
    pub(crate) data_dir: PathBuf,
    pub(crate) default_flush: FlushPolicy,
    pub(crate) retention_check_interval: Duration,
}

impl ReplicaManager {
    /// Finds the marked partition directories under the data directory;
    /// none opens until the metadata says this node holds it.
    ///
    /// # Errors
    /// `Metadata` when the data directory cannot be listed.
    pub(crate) fn open(
        quorum: Arc<Quorum>,
        settings: ReplicaSettings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Result<Arc<ReplicaManager>> {
        let unopened = topic::scan_marks(&settings.data_dir)?;
        Ok(Arc::new_cyclic(|me| ReplicaManager {
            quorum,
            data_dir: settings.data_dir,
            default_flush: settings.default_flush,
            retention_check_interval: settings.retention_check_interval,
            metrics,
            topics: RwLock::new(BTreeMap::new()),
            unopened: Mutex::new(unopened),
            reconciling: tokio::sync::Mutex::new(()),
            hooks: Mutex::new(BTreeMap::new()),
            shutdown,
            tracker,
            me: me.clone(),
        }))
    }

    /// Marked directories found after the manager opened (a migration
    /// marked them).
    ///
    /// # Errors
    /// `Metadata` when the data directory cannot be listed.
    pub(crate) fn rescan(&self) -> Result<()> {
        let found = topic::scan_marks(&self.data_dir)?;
        let opened: Vec<(String, u32)> =
            self.all().iter().map(|(t, p)| (t.clone(), p.id)).collect();
        lock(&self.unopened).extend(found.into_iter().filter(|(k, _)| !opened.contains(k)));
        Ok(())
    }

    /// Calls `hook` whenever this node starts leading a partition of
    /// `topic`.
    pub(crate) fn on_leadership(&self, topic: &str, hook: LeadershipHook) {
        lock(&self.hooks).insert(topic.to_string(), hook);
    }

    fn topics_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every local replica, with its topic.
    pub(crate) fn all(&self) -> Vec<(String, Arc<Partition>)> {
        let topics = self.topics_read();
        topics
            .values()
            .flat_map(|t| t.hosted().map(|p| (t.meta.name.clone(), Arc::clone(p))))
            .collect()
    }

    /// This node's replica of a partition.
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; `NotLeader` (naming the leader)
    /// when this node holds no replica of it.
    pub(crate) fn replica(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let local = self
            .topics_read()
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize).cloned().flatten());
        local.ok_or_else(|| self.quorum.not_leader(topic, partition))
    }

    /// The partition if this node leads it.
    ///
    /// # Errors
    /// As [`ReplicaManager::replica`]; `NotLeader` when this node is not
    /// the leader.
    pub(crate) fn leader(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let p = self.replica(topic, partition)?;
        if !matches!(&*p.role(), Role::Leader { .. }) {
            return Err(self.quorum.not_leader(topic, partition));
        }
        Ok(p)
    }

    /// The partition if this node leads it and may serve reads from it.
    ///
    /// # Errors
    /// As [`ReplicaManager::leader`]; `LeaderNotReady` while a new
    /// leader's high watermark catches up.
    pub(crate) fn readable(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let p = self.leader(topic, partition)?;
        if !p.serves_reads() {
            return Err(Error::LeaderNotReady {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok(p)
    }

    /// Carries out what a leader's replication asks for: the one place
    /// high watermarks advance and ISR changes are proposed.
    pub(crate) fn carry_out(
        &self,
        topic: &str,
        partition: &Arc<Partition>,
        epoch: i32,
        actions: Vec<ReplicationAction>,
    ) {
        for action in actions {
            match action {
                ReplicationAction::AdvanceHighWatermark(hw) => partition.advance_hw(hw),
                ReplicationAction::ProposeIsr(isr) => {
                    self.propose_isr(topic.to_string(), partition, epoch, isr);
                }
            }
        }
    }

    /// Proposes an ISR change for a partition this node leads, in the
    /// background; a refusal lets the partition propose again.
    fn propose_isr(&self, topic: String, partition: &Arc<Partition>, epoch: i32, isr: Vec<u64>) {
        let quorum = Arc::clone(&self.quorum);
        let partition = Arc::clone(partition);
        self.tracker.spawn(async move {
            let id = partition.id;
            info!(topic = %topic, partition = id, ?isr, "proposing an ISR change");
            let request = fjord_raft::MetadataRequest::UpdateIsr {
                topic: topic.clone(),
                partition: id,
                leader_epoch: epoch,
                isr,
            };
            match quorum.propose(request).await {
                Ok(_) | Err(Error::ShuttingDown) => {}
                Err(e) => {
                    warn!(topic = %topic, partition = id, "ISR change refused: {e}");
                    partition.isr_rejected();
                }
            }
        });
    }

    /// Starts applying the metadata on every change, the leaders' ISR
    /// checks, and the flush and retention timers.
    pub(crate) fn spawn_loops(self: &Arc<Self>) {
        let manager = Arc::clone(self);
        self.tracker.spawn(async move {
            let mut changes = manager.quorum.watch();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                manager.reconcile().await;
                tokio::select! {
                    biased;
                    _ = manager.shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                    alive = changes.changed() => if !alive { return },
                }
            }
        });
        let manager = Arc::clone(self);
        self.tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = manager.shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                for (topic, partition) in manager.all() {
                    if let Some((epoch, actions)) = partition.leader_tick() {
                        manager.carry_out(&topic, &partition, epoch, actions);
                    }
                }
            }
        });
        let manager = Arc::clone(self);
        self.tracker
            .spawn(async move { manager.run_maintenance().await });
    }

    /// Timed flushes every 100 ms; retention, compaction and rolls every
    /// `retention_check_interval`.
    async fn run_maintenance(&self) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_maintenance = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            for (_, partition) in self.all() {
                if let Err(e) = partition.flush_if_due(&self.metrics).await {
                    warn!("timed flush failed: {e}");
                }
                // Followers of `flush.messages=1` topics fsync here rather
                // than before every fetch.
                if let Err(e) = partition.flush_follower(&self.metrics).await {
                    warn!("follower flush failed: {e}");
                }
            }
            if last_maintenance.elapsed() >= self.retention_check_interval {
                last_maintenance = tokio::time::Instant::now();
                self.maintain().await;
            }
        }
    }

    /// Retention, compaction and rolls on every partition (blocking work on
    /// a blocking thread).
    async fn maintain(&self) {
        for (topic, partition) in self.all() {
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

    /// Flushes every replica (shutdown), on a blocking thread.
    pub(crate) async fn flush_all(&self) {
        let partitions = self.all();
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
    }

    /// This node's figures of its replica of `topic`-`partition`: log
    /// start, high watermark, log end and size in bytes.
    pub(crate) fn figures(&self, topic: &str, partition: u32) -> Option<(i64, i64, i64, u64)> {
        let replica = self.replica(topic, partition).ok()?;
        let hw = replica.high_watermark();
        let log = replica.read_log();
        Some((
            log.log_start_offset(),
            hw,
            log.log_end_offset(),
            log.size_bytes(),
        ))
    }

    /// Local topics, replicas and log bytes, for the metrics page.
    pub(crate) fn counts(&self) -> (usize, usize, u64) {
        let topics = self.topics_read();
        let replicas: Vec<&Arc<Partition>> = topics.values().flat_map(|t| t.hosted()).collect();
        let bytes = replicas.iter().map(|p| p.read_log().size_bytes()).sum();
        (topics.len(), replicas.len(), bytes)
    }
}
