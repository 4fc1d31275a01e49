//! This node's replicas: the topics it holds partitions of, and the mark
//! each partition directory carries on disk.
//!
//! # Format
//! A replica lives in `<data-dir>/<topic>-<partition>/` (the log's segments
//! and indexes) with a mark file `partition.metadata`:
//! `{"version":1,"topic":"orders","partition":0,"topic_id":7}`. The topic
//! id is the metadata's id of the topic's creation, so a directory left
//! from an earlier topic of the same name is told apart from the current
//! one. Which replicas a node holds, and every topic's configs, are the
//! metadata quorum's; the marks only say what the directories are.
//!
//! # Crash
//! A mark is written (temp file, fsync, rename) right after its directory
//! is created and before the replica takes a role, so a directory that
//! holds records always has its mark. A directory without one is an
//! orphan: it is removed once the metadata is known to be current.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjord_storage::LogConfig;
use serde::{Deserialize, Serialize};

use super::partition::Partition;
use crate::{Error, Result};

/// A topic as this node holds it.
#[derive(Debug, Clone)]
pub(crate) struct TopicMeta {
    pub(crate) name: String,
    pub(crate) partitions: u32,
    pub(crate) replication_factor: u32,
    pub(crate) configs: BTreeMap<String, String>,
    /// The topic's id in the metadata.
    pub(crate) id: u64,
}

/// A topic with its open partitions (`None` for those this node holds no
/// replica of).
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) meta: TopicMeta,
    pub(crate) partitions: Vec<Option<Arc<Partition>>>,
}

impl Topic {
    pub(crate) fn hosted(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.partitions.iter().flatten()
    }
}

pub(crate) fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

const MARK_FILE: &str = "partition.metadata";

/// What a partition directory's mark says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mark {
    version: u32,
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) topic_id: u64,
}

impl Mark {
    pub(crate) fn new(topic: &str, partition: u32, topic_id: u64) -> Mark {
        Mark {
            version: 1,
            topic: topic.to_string(),
            partition,
            topic_id,
        }
    }
}

/// Writes the mark of a partition directory atomically.
///
/// # Errors
/// `Metadata` naming the file.
pub(crate) fn write_mark(data_dir: &Path, mark: &Mark) -> Result<()> {
    let dir = partition_dir(data_dir, &mark.topic, mark.partition);
    let bytes = serde_json::to_vec(mark)
        .map_err(|e| Error::Metadata(format!("encode a partition mark: {e}")))?;
    crate::files::write_atomic(&dir, MARK_FILE, &bytes, false)
}

/// The mark of one directory; `None` when it has none (or an unreadable
/// one, which is logged).
fn read_mark(dir: &Path) -> Option<Mark> {
    let path = dir.join(MARK_FILE);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<Mark>(&bytes) {
        Ok(mark) if mark.version == 1 => Some(mark),
        Ok(mark) => {
            tracing::warn!(file = %path.display(), version = mark.version, "unknown partition mark version");
            None
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), "unreadable partition mark: {e}");
            None
        }
    }
}

/// Every marked partition directory under `data_dir`, by (topic,
/// partition), with its topic id.
///
/// # Errors
/// `Metadata` when the directory cannot be listed.
pub(crate) fn scan_marks(data_dir: &Path) -> Result<BTreeMap<(String, u32), u64>> {
    let entries = std::fs::read_dir(data_dir)
        .map_err(|e| Error::Metadata(format!("list {}: {e}", data_dir.display())))?;
    let mut found = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if let Some(mark) = read_mark(&path)
            && path == partition_dir(data_dir, &mark.topic, mark.partition)
        {
            found.insert((mark.topic, mark.partition), mark.topic_id);
        }
    }
    Ok(found)
}

/// Opens (recovering) one partition's log on a blocking thread and marks
/// its directory as the replica of topic `meta.id`.
///
/// # Errors
/// `Storage` naming the partition; `Metadata` when the mark cannot be
/// written.
pub(crate) async fn open_partition(
    data_dir: &Path,
    meta: &TopicMeta,
    id: u32,
    config: LogConfig,
) -> Result<Arc<Partition>> {
    let dir = partition_dir(data_dir, &meta.name, id);
    let opened = tokio::task::spawn_blocking(move || Partition::open(dir, id, config))
        .await
        .map_err(|e| Error::Metadata(format!("open {}-{id}: {e}", meta.name)))?
        .map_err(|e| Error::from_storage(&meta.name, id, e))?;
    {
        let log = opened.read_log();
        let report = log.recovery_report();
        for (file, bytes) in &report.truncated {
            tracing::warn!(topic = %meta.name, partition = id, file = %file.display(), bytes, "recovery cut a torn or corrupt tail");
        }
        for problem in &report.problems {
            tracing::warn!(topic = %meta.name, partition = id, "{problem}");
        }
    }
    let mark = Mark::new(&meta.name, id, meta.id);
    if read_mark(&partition_dir(data_dir, &meta.name, id)).as_ref() != Some(&mark) {
        write_mark(data_dir, &mark)?;
    }
    Ok(Arc::new(opened))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_unmarked_or_misplaced_directories_are_not_replicas() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let data = dir.path();
        std::fs::create_dir_all(partition_dir(data, "orders-eu", 2)).expect("mkdir");
        write_mark(data, &Mark::new("orders-eu", 2, 7)).expect("mark");
        // A directory without a mark, and one whose mark names another.
        std::fs::create_dir_all(partition_dir(data, "orphan", 0)).expect("mkdir");
        std::fs::create_dir_all(partition_dir(data, "moved", 0)).expect("mkdir");
        write_mark(data, &Mark::new("moved", 0, 1)).expect("mark");
        std::fs::rename(partition_dir(data, "moved", 0), data.join("elsewhere-3")).expect("rename");
        std::fs::write(data.join("stray-1"), b"a file").expect("a file");
        let found = scan_marks(data).expect("scan");
        assert_eq!(found, BTreeMap::from([(("orders-eu".to_string(), 2), 7)]));
    }
}
