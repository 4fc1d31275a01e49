//! The group coordinator: consumer groups (members, generations,
//! assignments), their committed offsets, and producer ids.
//!
//! A group's coordinator is the leader of its `__consumer_offsets`
//! partition (murmur2 of the group id): it keeps the group's members in
//! memory (`membership.rs`, over the sans-IO core of `group.rs`) and its
//! commits in that partition (`offsets.rs`), rebuilding its cache from the
//! partition's log when it starts leading it. Any other node answers
//! `NotLeader` naming the coordinator.
//!
//! # Layout
//! This file: [`GroupCoordinator`]; `membership`: joins, heartbeats and
//! rebalances against the clock; `group`: the membership core;
//! `offsets`: commit records and their cache; `group_ops`: an operator's
//! offset resets and group deletes; `producer_ids`: ids for idempotent
//! producers.

mod group;
mod group_ops;
mod membership;
mod offsets;
mod producer_ids;

pub use group::{Assignment, GroupState, JoinOutcome};
pub use group_ops::{OffsetReset, OffsetResetSpec};
pub use membership::{MemberDescription, Membership};
pub use offsets::{CommittedOffset, OFFSETS_TOPIC};

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use fjord_storage::RecordBatch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::api::{OffsetSpec, Route, TopicSpec};
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::murmur2::partition_for_key;
use crate::quorum::Quorum;
use crate::replica::ReplicaManager;
use crate::replica::partition::Partition;
use crate::router::Router;
use crate::{Error, Result};
use membership::{JoinRequest, Memberships};
use offsets::{OffsetCache, decode};
use producer_ids::ProducerIds;

/// Groups, offsets and producer ids; one per broker.
pub struct GroupCoordinator {
    quorum: Arc<Quorum>,
    replicas: Arc<ReplicaManager>,
    router: Arc<Router>,
    admin: Arc<Admin>,
    metrics: Arc<Metrics>,
    members: Memberships,
    offsets: OffsetCache,
    producer_ids: ProducerIds,
    /// Partitions of `__consumer_offsets` when this node creates it.
    offsets_topic_partitions: u32,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator").finish_non_exhaustive()
    }
}

/// What `GroupCoordinator::start` needs beyond the other parts.
pub(crate) struct CoordinatorSettings {
    pub(crate) data_dir: std::path::PathBuf,
    pub(crate) offsets_topic_partitions: u32,
}

/// One partition's commit in a `commit_offsets` call.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
}

/// A group as `list_groups` shows it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: String,
    pub members: usize,
}

/// Committed offset and lag of one partition.
#[derive(Debug, Clone)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    pub committed: i64,
    pub log_end: i64,
    pub lag: i64,
}

/// Everything `describe_group` knows.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub membership: Membership,
    pub offsets: Vec<PartitionLag>,
}

impl GroupCoordinator {
    /// The coordinator; it loads a `__consumer_offsets` partition's
    /// commits whenever this node starts leading it, expires members on a
    /// timer and forgets the commits of deleted topics, until `stop`.
    pub(crate) fn start(
        parts: (Arc<Quorum>, Arc<ReplicaManager>, Arc<Router>, Arc<Admin>),
        metrics: Arc<Metrics>,
        settings: CoordinatorSettings,
        tracker: &TaskTracker,
        stop: &CancellationToken,
    ) -> Arc<GroupCoordinator> {
        let (quorum, replicas, router, admin) = parts;
        let coordinator = Arc::new(GroupCoordinator {
            producer_ids: ProducerIds::new(settings.data_dir, quorum.id),
            quorum,
            replicas,
            router,
            admin,
            metrics,
            members: Memberships::default(),
            offsets: OffsetCache::default(),
            offsets_topic_partitions: settings.offsets_topic_partitions.max(1),
        });
        let weak = Arc::downgrade(&coordinator);
        coordinator.replicas.on_leadership(
            OFFSETS_TOPIC,
            Box::new(move |partition, epoch| {
                if let Some(c) = weak.upgrade() {
                    c.load_offsets_partition(partition, epoch);
                }
            }),
        );
        tracker.spawn(run(Arc::downgrade(&coordinator), stop.clone()));
        coordinator
    }

    /// A new producer id (epoch 0).
    ///
    /// # Errors
    /// `Metadata` when the counter file cannot be read or written.
    pub async fn init_producer_id(&self) -> Result<(i64, i16)> {
        self.producer_ids.next().await
    }

    /// Groups and members, for the metrics page.
    pub(crate) fn counts(&self) -> (usize, usize) {
        self.members.counts()
    }

    /// Rebuilds the cache from one partition of `__consumer_offsets` when
    /// this node starts leading it at `epoch` (in a cluster). It reads up to
    /// the log end, not the high watermark: a new leader's log is the one
    /// every replica converges on, and its high watermark may still lag
    /// behind commits that were acknowledged under the previous leader.
    /// Until the load is done the partition's groups get `LeaderNotReady`.
    pub(crate) fn load_offsets_partition(&self, p: &Partition, epoch: i32) {
        self.offsets.set_loaded(p.id, None);
        let count = self.quorum.partition_count(OFFSETS_TOPIC).unwrap_or(0);
        self.offsets
            .forget_groups(|g| count > 0 && partition_for_key(g.as_bytes(), count) == p.id);
        let end = p.read_log().log_end_offset();
        match self.load_offsets_from(p, end) {
            Ok(()) => self.offsets.set_loaded(p.id, Some(epoch)),
            Err(e) => tracing::warn!(partition = p.id, "loading consumer offsets failed: {e}"),
        }
    }

    /// Applies every commit in `p` below `end`.
    fn load_offsets_from(&self, p: &Partition, end: i64) -> Result<()> {
        let mut loaded = 0usize;
        let mut offset = p.read_log().log_start_offset();
        while offset < end {
            let read = p
                .read_log()
                .read(offset, 1 << 20, end)
                .map_err(|e| Error::from_storage(OFFSETS_TOPIC, p.id, e))?;
            if read.data.is_empty() {
                break;
            }
            for batch in RecordBatch::iter_batches(read.data) {
                let records = batch
                    .and_then(|b| b.records())
                    .map_err(|e| Error::from_storage(OFFSETS_TOPIC, p.id, e))?;
                for r in records
                    .into_iter()
                    .filter(|r| r.offset >= offset && r.offset < end)
                {
                    let Some(key) = r.key else { continue };
                    if let Some((group, t, part, committed)) = decode(&key, r.value.as_deref()) {
                        self.offsets.apply(group, t, part, committed);
                        loaded += 1;
                    }
                }
            }
            offset = read.next_offset;
        }
        tracing::debug!(
            partition = p.id,
            records = loaded,
            "consumer offsets loaded"
        );
        Ok(())
    }

    /// In a cluster, checks that this node coordinates `group_id`: it leads
    /// the group's `__consumer_offsets` partition, serves reads from it, and
    /// has loaded its commits for the current epoch.
    ///
    /// # Errors
    /// `NotLeader` naming the coordinator; `LeaderNotReady` while it loads.
    fn check_coordinator(&self, p: Arc<Partition>) -> Result<Arc<Partition>> {
        let epoch = p.role().epoch();
        if !p.serves_reads() || self.offsets.loaded_epoch(p.id) != Some(epoch) {
            return Err(Error::LeaderNotReady {
                topic: OFFSETS_TOPIC.to_string(),
                partition: p.id,
            });
        }
        Ok(p)
    }

    /// As [`GroupCoordinator::check_coordinator`] by group id; `Ok` when the cluster
    /// has no `__consumer_offsets` yet (nothing is committed anywhere).
    fn coordinates(&self, group_id: &str) -> Result<()> {
        let Ok(count) = self.quorum.partition_count(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let p = self
            .replicas
            .leader(OFFSETS_TOPIC, partition_for_key(group_id.as_bytes(), count))?;
        self.check_coordinator(p).map(|_| ())
    }

    /// The `__consumer_offsets` partition of `group_id`, which this node
    /// must lead (in a cluster; it is created on first use there).
    ///
    /// # Errors
    /// `NotLeader` naming the coordinator; `NoQuorum` when the topic cannot
    /// be created.
    async fn coordinator_partition(&self, group_id: &str) -> Result<Arc<Partition>> {
        self.ensure_offsets_topic().await?;
        let count = self.quorum.partition_count(OFFSETS_TOPIC)?;
        let id = partition_for_key(group_id.as_bytes(), count);
        self.check_coordinator(self.replicas.leader(OFFSETS_TOPIC, id)?)
    }

    /// Creates `__consumer_offsets` unless the cluster has it.
    ///
    /// # Errors
    /// `NoQuorum` when the topic cannot be created.
    async fn ensure_offsets_topic(&self) -> Result<()> {
        if self.quorum.partition_count(OFFSETS_TOPIC).is_ok() {
            return Ok(());
        }
        let mut spec = TopicSpec::new(OFFSETS_TOPIC, self.offsets_topic_partitions);
        spec.replication_factor = 0;
        spec.configs
            .insert("cleanup.policy".into(), "compact".into());
        spec.configs
            .insert("segment.bytes".into(), (64u64 << 20).to_string());
        match self.admin.create_internal_topic(spec).await {
            Ok(_) | Err(Error::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Joins `group_id` and waits for the rebalance; returns this member's
    /// id, generation and partitions.
    ///
    /// # Errors
    /// `InvalidRequest` for an empty group id or no topics; `UnknownTopic`;
    /// `UnknownMember` if the rebalance went on without this member.
    pub async fn join_group(
        &self,
        group_id: &str,
        member_id: &str,
        client_id: &str,
        topics: &[String],
        session_timeout: Duration,
        rebalance_timeout: Duration,
    ) -> Result<JoinOutcome> {
        if group_id.is_empty() || topics.is_empty() {
            return Err(Error::InvalidRequest(
                "a join needs a group id and at least one topic".into(),
            ));
        }
        // In a cluster, only the group's coordinator answers.
        self.coordinator_partition(group_id).await?;
        let mut counts = BTreeMap::new();
        for topic in topics {
            counts.insert(topic.clone(), self.quorum.partition_count(topic)?);
        }
        self.members
            .join(JoinRequest {
                group_id: group_id.to_string(),
                member_id: member_id.to_string(),
                client_id: client_id.to_string(),
                topics: counts,
                session_timeout,
                rebalance_timeout,
            })
            .await
    }

    /// `Ok(true)` when the member must rejoin.
    ///
    /// # Errors
    /// `UnknownMember` or `IllegalGeneration`.
    pub fn heartbeat(&self, group_id: &str, member_id: &str, generation: i32) -> Result<bool> {
        self.members.heartbeat(group_id, member_id, generation)
    }

    pub fn leave_group(&self, group_id: &str, member_id: &str) {
        self.members.leave(group_id, member_id);
    }

    /// Commits offsets; returns once they are durable.
    ///
    /// # Errors
    /// `UnknownMember`/`IllegalGeneration` for a stale member;
    /// `UnknownTopic`/`UnknownPartition`; `Storage`.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        commits: Vec<OffsetCommit>,
    ) -> Result<()> {
        if group_id.is_empty() {
            return Err(Error::InvalidRequest("a commit needs a group id".into()));
        }
        if commits.is_empty() {
            return Ok(());
        }
        self.members.check_commit(group_id, member_id, generation)?;
        for c in &commits {
            if c.partition >= self.quorum.partition_count(&c.topic)? {
                return Err(Error::UnknownPartition {
                    topic: c.topic.clone(),
                    partition: c.partition,
                });
            }
            if c.offset < 0 {
                return Err(Error::InvalidRequest(format!(
                    "offset {} for {}-{} is negative",
                    c.offset, c.topic, c.partition
                )));
            }
        }
        let now = now_ms();
        let commits = commits
            .into_iter()
            .map(|c| {
                let committed = CommittedOffset {
                    offset: c.offset,
                    metadata: c.metadata,
                    commit_time_ms: now,
                };
                (c.topic, c.partition, Some(committed))
            })
            .collect();
        self.write_commits(group_id, commits).await?;
        self.metrics.record_offset_commit();
        Ok(())
    }

    /// Committed offsets of `group_id`: of `partitions`, or all it has.
    ///
    /// # Errors
    /// In a cluster, `NotLeader` naming the coordinator, or
    /// `LeaderNotReady` while the coordinator loads the group's commits.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, u32)>>,
    ) -> Result<Vec<(String, u32, Option<CommittedOffset>)>> {
        self.coordinates(group_id)?;
        let committed = self.offsets.group(group_id);
        Ok(match partitions {
            Some(wanted) => wanted
                .into_iter()
                .map(|(t, p)| {
                    let c = committed.get(&(t.clone(), p)).cloned();
                    (t, p, c)
                })
                .collect(),
            None => committed
                .into_iter()
                .map(|((t, p), c)| (t, p, Some(c)))
                .collect(),
        })
    }

    /// Every group with members or committed offsets; in a cluster, every
    /// such group this node coordinates (clients ask each node).
    pub fn list_groups(&self) -> Vec<GroupSummary> {
        let mut ids = self.members.group_ids();
        ids.extend(self.offsets.group_ids());
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .filter(|id| self.coordinates(id).is_ok())
            .map(|id| {
                let m = self.members.membership(&id);
                GroupSummary {
                    state: m
                        .as_ref()
                        .map_or(GroupState::Empty, |m| m.state)
                        .as_str()
                        .to_string(),
                    members: m.map_or(0, |m| m.members.len()),
                    group_id: id,
                }
            })
            .collect()
    }

    /// Members, assignments, committed offsets and lag of a group.
    ///
    /// # Errors
    /// `InvalidRequest` when the group is unknown.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        // In a cluster only the group's coordinator knows its members.
        self.coordinates(group_id)?;
        let membership = self.members.membership(group_id);
        let committed = self.offsets.group(group_id);
        if membership.is_none() && committed.is_empty() {
            return Err(Error::InvalidRequest(format!("unknown group {group_id}")));
        }
        let membership = membership.unwrap_or(Membership {
            state: GroupState::Empty,
            generation: 0,
            members: Vec::new(),
        });
        let mut offsets = Vec::with_capacity(committed.len());
        for ((topic, partition), c) in committed {
            // The partition's end as its leader knows it.
            let log_end = self
                .router
                .list_offset(&topic, partition, OffsetSpec::Latest, Route::Leader)
                .await
                .ok()
                .flatten()
                .map_or(-1, |(end, _)| end);
            offsets.push(PartitionLag {
                lag: (log_end - c.offset).max(0),
                topic,
                partition,
                committed: c.offset,
                log_end,
            });
        }
        Ok(GroupDescription {
            group_id: group_id.to_string(),
            membership,
            offsets,
        })
    }
}

/// The coordinator's timers: members whose sessions lapse expire, and the
/// commits of deleted topics are forgotten.
async fn run(coordinator: Weak<GroupCoordinator>, stop: CancellationToken) {
    let Some(watch) = coordinator.upgrade().map(|c| c.quorum.watch()) else {
        return;
    };
    let mut watch = watch;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let changed = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => false,
            alive = watch.changed() => alive,
        };
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        c.members.tick();
        if changed {
            let topics: Vec<String> = c.quorum.read(|s| s.topics.keys().cloned().collect());
            c.offsets
                .retain_topics(|t| topics.binary_search_by(|x| x.as_str().cmp(t)).is_ok());
        }
    }
}
