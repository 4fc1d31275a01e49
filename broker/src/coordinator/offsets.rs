//! Committed consumer-group offsets and their records in `__consumer_offsets`.
//!
//! # Format
//! One record per commit of one partition, in the compacted internal topic
//! `__consumer_offsets` (partition = murmur2(group id) mod its partitions):
//! - key: JSON `["<group>","<topic>",<partition>]` (compaction keeps the
//!   latest commit per group and partition);
//! - value: JSON `{"offset":N,"metadata":"…","commit_time_ms":T}`.
//!
//! # Crash
//! A commit is acknowledged only once its record is below the high
//! watermark; on start the cache is rebuilt by reading every partition of the
//! topic from its start, so every acknowledged commit survives a restart.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The internal topic holding commits.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A committed position of a group on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    pub metadata: String,
    pub commit_time_ms: i64,
}

pub(crate) fn encode_key(group: &str, topic: &str, partition: u32) -> Bytes {
    Bytes::from(serde_json::json!([group, topic, partition]).to_string())
}

pub(crate) fn encode_value(offset: &CommittedOffset) -> Bytes {
    Bytes::from(serde_json::to_vec(offset).unwrap_or_default())
}

/// Decodes a commit record; `None` for anything that is not one (logged).
pub(crate) fn decode(
    key: &[u8],
    value: Option<&[u8]>,
) -> Option<(String, String, u32, Option<CommittedOffset>)> {
    let (group, topic, partition): (String, String, u32) = match serde_json::from_slice(key) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!("skipping a {OFFSETS_TOPIC} record with a bad key: {e}");
            return None;
        }
    };
    let offset = match value.map(serde_json::from_slice::<CommittedOffset>) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            tracing::warn!("skipping a {OFFSETS_TOPIC} record with a bad value: {e}");
            return None;
        }
    };
    Some((group, topic, partition, offset))
}

/// (topic, partition) → committed offset, for one group.
type GroupOffsets = BTreeMap<(String, u32), CommittedOffset>;

/// group → its committed offsets.
#[derive(Debug, Default)]
pub(crate) struct OffsetCache {
    groups: Mutex<BTreeMap<String, GroupOffsets>>,
    /// In a cluster: `__consumer_offsets` partition → the leader epoch whose
    /// commits are loaded. A coordinator answers only once its partition is
    /// loaded for the epoch it leads.
    loaded: Mutex<BTreeMap<u32, i32>>,
}

impl OffsetCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, GroupOffsets>> {
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn apply(
        &self,
        group: String,
        topic: String,
        partition: u32,
        offset: Option<CommittedOffset>,
    ) {
        let mut groups = self.lock();
        match offset {
            Some(o) => {
                groups
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), o);
            }
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.remove(&(topic, partition));
                    // A group whose last commit was deleted is gone.
                    if g.is_empty() {
                        groups.remove(&group);
                    }
                }
            }
        }
    }

    /// Forgets the commits of every group `owned` says belongs to a
    /// partition that is about to be reloaded.
    pub(crate) fn forget_groups(&self, owned: impl Fn(&str) -> bool) {
        self.lock().retain(|group, _| !owned(group));
    }

    pub(crate) fn set_loaded(&self, partition: u32, epoch: Option<i32>) {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match epoch {
            Some(e) => loaded.insert(partition, e),
            None => loaded.remove(&partition),
        };
    }

    pub(crate) fn loaded_epoch(&self, partition: u32) -> Option<i32> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&partition)
            .copied()
    }

    pub(crate) fn group(&self, group: &str) -> GroupOffsets {
        self.lock().get(group).cloned().unwrap_or_default()
    }

    pub(crate) fn group_ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Forgets every commit for `topic` (it was deleted).
    /// Forgets the commits of topics `keep` says no longer exist.
    pub(crate) fn retain_topics(&self, keep: impl Fn(&str) -> bool) {
        for offsets in self.lock().values_mut() {
            offsets.retain(|(topic, _), _| keep(topic));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_skipped() {
        let o = CommittedOffset {
            offset: 42,
            metadata: "m".into(),
            commit_time_ms: 7,
        };
        let key = encode_key("g|weird\"id", "t", 3);
        let value = encode_value(&o);
        assert_eq!(
            decode(&key, Some(&value)),
            Some(("g|weird\"id".into(), "t".into(), 3, Some(o)))
        );
        assert_eq!(decode(&key, None).map(|d| d.3), Some(None));
        assert!(decode(b"nope", Some(b"{}")).is_none());
        assert!(decode(&key, Some(b"[1,2]")).is_none());
    }
}
