//! An operator's changes to a group's committed offsets: resetting them
//! (`fjord group reset-offsets`, as `kafka-consumer-groups
//! --reset-offsets`) and deleting the group with its offsets.
//!
//! Both run on the group's coordinator and only while the group has no
//! members (a live consumer would commit over the change). A reset writes
//! ordinary commits to `__consumer_offsets`; a delete writes a tombstone
//! (a record without a value) for each committed partition, so compaction
//! and every reload forget them.

use fjord_storage::Compression;
use tracing::info;

use super::{CommittedOffset, GroupCoordinator, OFFSETS_TOPIC};
use crate::api::{Acks, NewRecord, OffsetSpec, Route};
use crate::batch::build_batch;
use crate::clock::now_ms;
use crate::{Error, Result};

use super::offsets::{encode_key, encode_value};

/// Where `reset_offsets` moves a group's position on each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetResetSpec {
    /// The log start.
    Earliest,
    /// The log end (high watermark).
    Latest,
    /// This offset.
    Offset(i64),
    /// The first record at or after this time (ms since the epoch); the
    /// log end when there is none.
    Timestamp(i64),
    /// This far from the committed offset (the log end where nothing is
    /// committed); negative moves back.
    ShiftBy(i64),
}

/// One partition of a reset: where the group was and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetReset {
    pub topic: String,
    pub partition: u32,
    /// The committed offset before, if any.
    pub current: Option<i64>,
    /// The offset the group resumes from.
    pub target: i64,
    /// The asked-for offset was outside the log's range [start, end] and
    /// was moved to its nearest end.
    pub clamped: bool,
}

impl GroupCoordinator {
    /// The new committed offset of `group_id` on every partition of
    /// `topic`; committed (with `execute`) or only planned (a dry run).
    /// Offsets outside a partition's log are clamped to its range (and
    /// say so).
    ///
    /// # Errors
    /// `NotLeader` naming the coordinator; `GroupNotEmpty` while the group
    /// has members; `UnknownTopic`; `NotLeader`/`Cluster` when a
    /// partition's leader cannot be asked for its range; `Storage`.
    pub async fn reset_offsets(
        &self,
        group_id: &str,
        topic: &str,
        spec: OffsetResetSpec,
        execute: bool,
    ) -> Result<Vec<OffsetReset>> {
        if group_id.is_empty() {
            return Err(Error::InvalidRequest("a group id is required".into()));
        }
        self.coordinator_partition(group_id).await?;
        self.check_no_members(group_id)?;
        let partitions = self.quorum.partition_count(topic)?;
        let committed = self.offsets.group(group_id);
        let mut plan = Vec::with_capacity(partitions as usize);
        for partition in 0..partitions {
            let current = committed
                .get(&(topic.to_string(), partition))
                .map(|c| c.offset);
            let (target, clamped) = self.reset_target(topic, partition, current, spec).await?;
            plan.push(OffsetReset {
                topic: topic.to_string(),
                partition,
                current,
                target,
                clamped,
            });
        }
        if execute {
            // Members may have joined while the plan was made.
            self.check_no_members(group_id)?;
            let now = now_ms();
            let commits = plan
                .iter()
                .map(|r| {
                    let committed = CommittedOffset {
                        offset: r.target,
                        metadata: String::new(),
                        commit_time_ms: now,
                    };
                    (r.topic.clone(), r.partition, Some(committed))
                })
                .collect();
            self.write_commits(group_id, commits).await?;
            info!(group = %group_id, topic = %topic, ?spec, partitions, "consumer group offsets reset (by an admin request)");
        }
        Ok(plan)
    }

    /// Where `spec` puts the group on one partition, clamped to the log's
    /// range; and whether it was clamped.
    async fn reset_target(
        &self,
        topic: &str,
        partition: u32,
        current: Option<i64>,
        spec: OffsetResetSpec,
    ) -> Result<(i64, bool)> {
        let ask = |spec| {
            self.router
                .list_offset(topic, partition, spec, Route::Leader)
        };
        let start = ask(OffsetSpec::Earliest).await?.map_or(0, |(o, _)| o);
        let end = ask(OffsetSpec::Latest).await?.map_or(start, |(o, _)| o);
        let wanted = match spec {
            OffsetResetSpec::Earliest => start,
            OffsetResetSpec::Latest => end,
            OffsetResetSpec::Offset(o) => o,
            OffsetResetSpec::Timestamp(ms) => ask(OffsetSpec::Timestamp(ms))
                .await?
                .map_or(end, |(o, _)| o),
            OffsetResetSpec::ShiftBy(n) => current.unwrap_or(end).saturating_add(n),
        };
        let target = wanted.clamp(start, end.max(start));
        Ok((target, target != wanted))
    }

    /// Deletes a group without members: its committed offsets (tombstones
    /// in `__consumer_offsets`) and what the coordinator remembers of it.
    /// Returns how many committed offsets were removed.
    ///
    /// # Errors
    /// `NotLeader` naming the coordinator; `UnknownGroup`; `GroupNotEmpty`
    /// while it has members; `Storage`.
    pub async fn delete_group(&self, group_id: &str) -> Result<usize> {
        if group_id.is_empty() {
            return Err(Error::InvalidRequest("a group id is required".into()));
        }
        self.coordinates(group_id)?;
        let committed = self.offsets.group(group_id);
        let known = self.members.membership(group_id).is_some();
        if committed.is_empty() && !known {
            return Err(Error::UnknownGroup(group_id.to_string()));
        }
        self.check_no_members(group_id)?;
        let tombstones: Vec<(String, u32, Option<CommittedOffset>)> = committed
            .keys()
            .map(|(topic, partition)| (topic.clone(), *partition, None))
            .collect();
        let removed = tombstones.len();
        if !tombstones.is_empty() {
            self.write_commits(group_id, tombstones).await?;
        }
        if let Err(members) = self.members.forget_empty(group_id) {
            // A member joined after the tombstones: its group lives on,
            // without the old offsets.
            return Err(Error::GroupNotEmpty {
                group_id: group_id.to_string(),
                members,
            });
        }
        info!(group = %group_id, offsets = removed, "consumer group deleted (by an admin request)");
        Ok(removed)
    }

    /// `GroupNotEmpty` while `group_id` has members.
    fn check_no_members(&self, group_id: &str) -> Result<()> {
        match self.members.membership(group_id) {
            Some(m) if !m.members.is_empty() => Err(Error::GroupNotEmpty {
                group_id: group_id.to_string(),
                members: m.members.len(),
            }),
            _ => Ok(()),
        }
    }

    /// Appends commits (`Some`) and tombstones (`None`) of `group_id` to
    /// its `__consumer_offsets` partition, which this node must lead, and
    /// applies them to the cache once they are committed.
    ///
    /// # Errors
    /// `NotLeader` naming the coordinator; `Storage`; `NotEnoughReplicas`.
    pub(super) async fn write_commits(
        &self,
        group_id: &str,
        commits: Vec<(String, u32, Option<CommittedOffset>)>,
    ) -> Result<()> {
        let now = now_ms();
        let records = commits
            .iter()
            .map(|(topic, partition, committed)| NewRecord {
                key: Some(encode_key(group_id, topic, *partition)),
                value: committed.as_ref().map(encode_value),
                headers: Vec::new(),
                timestamp_ms: now,
            })
            .collect();
        let p = self.coordinator_partition(group_id).await?;
        let batch = build_batch(OFFSETS_TOPIC, p.id, records, Compression::None)?;
        self.replicas
            .append(OFFSETS_TOPIC, p.id, batch, Acks::All)
            .await?;
        for (topic, partition, committed) in commits {
            self.offsets
                .apply(group_id.to_string(), topic, partition, committed);
        }
        Ok(())
    }
}
