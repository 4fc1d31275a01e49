//! Data directories written by the previous release, brought into the
//! metadata quorum the first time this release opens them.
//!
//! # Format (what the previous release wrote)
//! - `<data-dir>/topics.json`: `{"version":1,"topics":[{"name",
//!   "partitions","replication_factor","configs":{..},"internal","id",
//!   "hosted"}]}`. On a single node it was the topic store (`id` 0,
//!   `hosted` absent); on a cluster node a record of which replicas it held
//!   (`id` the metadata's, `hosted` the partitions).
//! - `<data-dir>/users.json`: `{"version":1,"users":[User..]}` (single
//!   node only; passwords as Argon2id PHC strings).
//! - A single node had no `cluster.json` and no `raft/` directory.
//!
//! # What happens to them
//! - A cluster node's `topics.json` becomes partition marks (its ids are
//!   the metadata's already) and is removed when the node opens.
//! - A single node's stores are proposed into its new one-voter quorum
//!   once it leads it ([`Admin::migrate_single_node`], when the node starts):
//!   each topic is created with this node as its only replica, each
//!   partition directory is marked with the new topic id, each user is put
//!   as it was (hash included); only then are both files removed.
//!
//! # Crash
//! A crash during the migration leaves the files in place; the next start
//! migrates again, skipping topics the metadata already has (and marking
//! their directories) and putting users again (idempotent).

use std::collections::BTreeMap;
use std::path::Path;

use fjord_raft::User;
use serde::Deserialize;

use fjord_raft::MetadataRequest;
use tracing::info;

use super::{APPLY_WAIT, Admin};
use crate::replica::topic::{Mark, partition_dir, write_mark};
use crate::{Error, Result};

pub(crate) const TOPICS_FILE: &str = "topics.json";
pub(crate) const USERS_FILE: &str = "users.json";

/// One topic of the previous release's `topics.json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LegacyTopic {
    pub(crate) name: String,
    pub(crate) partitions: u32,
    #[serde(default)]
    pub(crate) configs: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) id: u64,
    #[serde(default)]
    pub(crate) hosted: Option<Vec<u32>>,
}

#[derive(Deserialize)]
struct TopicsFile {
    version: u32,
    topics: Vec<LegacyTopic>,
}

#[derive(Deserialize)]
struct UsersFile {
    version: u32,
    users: Vec<User>,
}

/// A single node's stores, waiting to be proposed into the quorum.
#[derive(Debug, Default)]
pub(crate) struct SingleNodeStores {
    pub(crate) topics: Vec<LegacyTopic>,
    pub(crate) users: Vec<User>,
}

fn read_versioned<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    name: &str,
    version: impl Fn(&T) -> u32,
) -> Result<Option<T>> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Metadata(format!("read {}: {e}", path.display()))),
    };
    let file: T = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Metadata(format!("{} is not readable: {e}", path.display())))?;
    match version(&file) {
        1 => Ok(Some(file)),
        v => Err(Error::Metadata(format!(
            "{}: unsupported version {v}",
            path.display()
        ))),
    }
}

/// Reads what the previous release left in `dir`. A cluster node's record
/// of its replicas is turned into marks here and removed; a single node's
/// stores are returned for the migration.
///
/// # Errors
/// `Metadata` naming a file that cannot be read, parsed or removed.
pub(crate) fn open(dir: &Path, clustered_before: bool) -> Result<Option<SingleNodeStores>> {
    let topics = read_versioned::<TopicsFile>(dir, TOPICS_FILE, |f| f.version)?;
    let users = read_versioned::<UsersFile>(dir, USERS_FILE, |f| f.version)?;
    if clustered_before {
        if let Some(file) = topics {
            for topic in &file.topics {
                mark_replicas(dir, topic, topic.id)?;
            }
            remove(dir, TOPICS_FILE)?;
            tracing::info!("the replica record topics.json became partition marks");
        }
        return Ok(None);
    }
    if topics.is_none() && users.is_none() {
        return Ok(None);
    }
    Ok(Some(SingleNodeStores {
        topics: topics.map(|f| f.topics).unwrap_or_default(),
        users: users.map(|f| f.users).unwrap_or_default(),
    }))
}

/// Marks the directories of `topic` that exist as replicas of `topic_id`.
///
/// # Errors
/// `Metadata` when a mark cannot be written.
pub(crate) fn mark_replicas(dir: &Path, topic: &LegacyTopic, topic_id: u64) -> Result<()> {
    for partition in 0..topic.partitions {
        let hosted = topic.hosted.as_ref().is_none_or(|h| h.contains(&partition));
        if hosted && partition_dir(dir, &topic.name, partition).is_dir() {
            write_mark(dir, &Mark::new(&topic.name, partition, topic_id))?;
        }
    }
    Ok(())
}

/// Removes one of the previous release's files once it is migrated.
///
/// # Errors
/// `Metadata` naming the file.
pub(crate) fn remove(dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Metadata(format!("remove {}: {e}", path.display()))),
    }
}

impl Admin {
    /// Proposes a previous release's single-node stores (topics with this
    /// node as their only replica, users as they were) into the quorum this
    /// node now leads alone, marks the topics' directories, and removes the
    /// old files.
    ///
    /// # Errors
    /// `NoQuorum` or `Cluster` when a proposal fails (the files stay, and
    /// the next start migrates again); `Metadata` for file errors.
    pub(crate) async fn migrate_single_node(&self) -> Result<()> {
        let stores = self
            .legacy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(stores) = stores else {
            return Ok(());
        };
        info!(
            topics = stores.topics.len(),
            users = stores.users.len(),
            "moving a single node's topics and users into its metadata quorum"
        );
        self.quorum.register_self().await;
        for topic in &stores.topics {
            let id = self.migrate_topic(topic).await?;
            mark_replicas(&self.data_dir, topic, id)?;
        }
        self.replicas.rescan()?;
        for user in stores.users {
            self.store_user(user).await?;
        }
        remove(&self.data_dir, TOPICS_FILE)?;
        remove(&self.data_dir, USERS_FILE)?;
        info!("the single node's topics and users are in its metadata quorum");
        Ok(())
    }

    /// Creates a migrated topic unless the metadata has it (an earlier,
    /// interrupted migration); its id.
    async fn migrate_topic(&self, topic: &LegacyTopic) -> Result<u64> {
        let id_of = |s: &fjord_raft::MetadataState| s.topics.get(&topic.name).map(|t| t.id);
        if let Some(id) = self.quorum.read(id_of) {
            return Ok(id);
        }
        let me = self.quorum.id;
        let request = MetadataRequest::CreateTopic {
            name: topic.name.clone(),
            configs: topic.configs.clone(),
            replicas: vec![vec![me]; topic.partitions as usize],
        };
        self.quorum.propose(request).await?;
        self.quorum
            .await_applied(APPLY_WAIT, |s| s.topics.contains_key(&topic.name))
            .await;
        self.quorum
            .read(id_of)
            .ok_or_else(|| Error::Cluster(format!("topic {} was not created", topic.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPICS: &str = r#"{"version":1,"topics":[
        {"name":"orders","partitions":2,"replication_factor":1,"configs":{"retention.ms":"1000"},"internal":false},
        {"name":"__consumer_offsets","partitions":1,"replication_factor":1,"configs":{},"internal":true}]}"#;

    #[test]
    fn a_single_nodes_stores_are_read_for_the_migration() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join(TOPICS_FILE), TOPICS).expect("write");
        std::fs::write(
            dir.path().join(USERS_FILE),
            r#"{"version":1,"users":[{"name":"alice","password_hash":"$argon2id$x","acls":[],"superuser":true}]}"#,
        )
        .expect("write");
        let stores = open(dir.path(), false).expect("open").expect("stores");
        assert_eq!(stores.topics.len(), 2);
        assert_eq!(stores.topics[0].configs["retention.ms"], "1000");
        assert_eq!(stores.users[0].name, "alice");
        // Left in place until the migration has proposed them.
        assert!(dir.path().join(TOPICS_FILE).exists());
    }

    #[test]
    fn a_cluster_nodes_replica_record_becomes_marks() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(
            dir.path().join(TOPICS_FILE),
            r#"{"version":1,"topics":[{"name":"t","partitions":3,"replication_factor":2,"configs":{},"internal":false,"id":4,"hosted":[0,2]}]}"#,
        )
        .expect("write");
        for p in 0..3 {
            std::fs::create_dir_all(partition_dir(dir.path(), "t", p)).expect("mkdir");
        }
        assert!(open(dir.path(), true).expect("open").is_none());
        assert!(!dir.path().join(TOPICS_FILE).exists());
        let marks = crate::replica::topic::scan_marks(dir.path()).expect("scan");
        assert_eq!(
            marks,
            BTreeMap::from([(("t".to_string(), 0), 4), (("t".to_string(), 2), 4)])
        );
    }

    #[test]
    fn damaged_or_unknown_files_are_errors_naming_them() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join(USERS_FILE), b"{not json").expect("write");
        let e = open(dir.path(), false).expect_err("damaged").to_string();
        assert!(e.contains("users.json"), "{e}");
        std::fs::write(dir.path().join(USERS_FILE), br#"{"version":2,"users":[]}"#).expect("write");
        let e = open(dir.path(), false).expect_err("version").to_string();
        assert!(e.contains("unsupported version 2"), "{e}");
    }
}
