//! Topics on this node and their persisted metadata.
//!
//! # Format
//! `<data-dir>/topics.json`, written atomically (temp file, fsync, rename):
//! `{"version":1,"topics":[{"name","partitions","replication_factor",
//! "configs":{..},"internal"}]}`. Partition logs live in
//! `<data-dir>/<topic>-<partition>/`.
//!
//! # Crash
//! A topic is recorded before its partition directories are used and
//! forgotten before they are removed, so a crash leaves at worst an orphan
//! directory (logged on start), never a topic without its logs' metadata.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjord_storage::LogConfig;
use serde::{Deserialize, Serialize};

use crate::partition::Partition;
use crate::{Error, Result};

/// Persisted description of one topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TopicMeta {
    pub(crate) name: String,
    pub(crate) partitions: u32,
    pub(crate) replication_factor: u32,
    pub(crate) configs: BTreeMap<String, String>,
    pub(crate) internal: bool,
    /// In a cluster: the topic's id in the metadata (0 on a single node).
    #[serde(default)]
    pub(crate) id: u64,
    /// In a cluster: the partitions this node holds a replica of (`None`:
    /// all of them).
    #[serde(default)]
    pub(crate) hosted: Option<Vec<u32>>,
}

impl TopicMeta {
    pub(crate) fn hosts(&self, partition: u32) -> bool {
        partition < self.partitions && self.hosted.as_ref().is_none_or(|h| h.contains(&partition))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicsFile {
    version: u32,
    topics: Vec<TopicMeta>,
}

/// A topic with its open partitions (in a cluster, `None` for those this
/// node holds no replica of).
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

const TOPICS_FILE: &str = "topics.json";

/// Reads `topics.json`; an absent file is an empty list.
///
/// # Errors
/// `Metadata` naming the file when it cannot be read or parsed.
pub(crate) fn load_topics(data_dir: &Path) -> Result<Vec<TopicMeta>> {
    let path = data_dir.join(TOPICS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Metadata(format!("read {}: {e}", path.display()))),
    };
    let file: TopicsFile = serde_json::from_str(&text).map_err(|e| {
        Error::Metadata(format!(
            "{} is not valid topic metadata: {e}",
            path.display()
        ))
    })?;
    if file.version != 1 {
        return Err(Error::Metadata(format!(
            "{}: unsupported version {}",
            path.display(),
            file.version
        )));
    }
    Ok(file.topics)
}

/// Writes `topics.json` atomically.
///
/// # Errors
/// `Metadata` naming the file.
pub(crate) fn save_topics(data_dir: &Path, topics: &[TopicMeta]) -> Result<()> {
    let path = data_dir.join(TOPICS_FILE);
    let tmp = data_dir.join(format!("{TOPICS_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(&TopicsFile {
        version: 1,
        topics: topics.to_vec(),
    })
    .map_err(|e| Error::Metadata(format!("encode topic metadata: {e}")))?;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| Error::Metadata(format!("write {}: {e}", path.display())))
}

/// Opens every partition of `meta` (recovering their logs), on a blocking
/// thread.
///
/// # Errors
/// `Storage` naming the partition whose log could not be opened.
pub(crate) async fn open_partitions(
    data_dir: &Path,
    meta: &TopicMeta,
    config: LogConfig,
    clustered: bool,
) -> Result<Vec<Option<Arc<Partition>>>> {
    let mut partitions = Vec::with_capacity(meta.partitions as usize);
    for id in 0..meta.partitions {
        if !meta.hosts(id) {
            partitions.push(None);
            continue;
        }
        partitions.push(Some(
            open_partition(data_dir, meta, id, config.clone(), clustered).await?,
        ));
    }
    Ok(partitions)
}

/// Opens (recovering) one partition's log on a blocking thread.
///
/// # Errors
/// `Storage` naming the partition.
pub(crate) async fn open_partition(
    data_dir: &Path,
    meta: &TopicMeta,
    id: u32,
    config: LogConfig,
    clustered: bool,
) -> Result<Arc<Partition>> {
    {
        let dir = partition_dir(data_dir, &meta.name, id);
        let opened =
            tokio::task::spawn_blocking(move || Partition::open(dir, id, config, clustered))
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
        Ok(Arc::new(opened))
    }
}
