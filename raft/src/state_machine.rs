//! The metadata state machine: applies committed entries to a
//! [`MetadataState`] and takes and installs snapshots of it.
//!
//! # Format
//! `<dir>/snapshot`: the latest snapshot as JSON (`meta` and the state),
//! replaced atomically. On open the state machine starts from it; openraft
//! re-applies committed entries after it from the log.
//!
//! # Concurrency
//! One `std::sync::Mutex` around the state, never held across an `.await`.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::metadata::{MetadataResponse, MetadataState};
use crate::types::{Entry, LogId, StorageError, TypeConfig};

type Meta = SnapshotMeta<u64, openraft::BasicNode>;
type Membership = StoredMembership<u64, openraft::BasicNode>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: Membership,
    state: MetadataState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: Meta,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    applied: Applied,
    snapshot: Option<StoredSnapshot>,
    snapshots_taken: u64,
}

/// The state machine; clones share it (the snapshot builder is a clone).
#[derive(Debug, Clone)]
pub struct MetadataStateMachine {
    inner: Arc<Mutex<Inner>>,
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

impl MetadataStateMachine {
    /// Opens the state machine in `dir`, starting from its snapshot if any.
    ///
    /// # Errors
    /// The directory cannot be created or the snapshot cannot be read.
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<MetadataStateMachine> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let (applied, snapshot) = match std::fs::read(dir.join("snapshot")) {
            Ok(bytes) => {
                let stored: StoredSnapshot = serde_json::from_slice(&bytes).map_err(io)?;
                let applied: Applied = serde_json::from_slice(&stored.data).map_err(io)?;
                (applied, Some(stored))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Applied::default(), None),
            Err(e) => return Err(e),
        };
        Ok(MetadataStateMachine {
            inner: Arc::new(Mutex::new(Inner {
                dir,
                applied,
                snapshot,
                snapshots_taken: 0,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of the current metadata.
    pub fn state(&self) -> MetadataState {
        self.lock().applied.state.clone()
    }

    /// Reads the current metadata in place, without copying it. `read`
    /// runs under the state machine's lock: keep it short.
    pub fn read<R>(&self, read: impl FnOnce(&MetadataState) -> R) -> R {
        read(&self.lock().applied.state)
    }
}

fn snapshot_of(stored: &StoredSnapshot) -> Snapshot<TypeConfig> {
    Snapshot {
        meta: stored.meta.clone(),
        snapshot: Box::new(Cursor::new(stored.data.clone())),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut inner = self.lock();
        let data = serde_json::to_vec(&inner.applied)
            .map_err(|e| StorageIOError::write_snapshot(None, &io(e)))?;
        inner.snapshots_taken += 1;
        let last = inner.applied.last_applied;
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, inner.snapshots_taken),
            None => format!("--{}", inner.snapshots_taken),
        };
        let meta = Meta {
            last_log_id: last,
            last_membership: inner.applied.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot { meta, data };
        let bytes = serde_json::to_vec(&stored)
            .map_err(|e| StorageIOError::write_snapshot(None, &io(e)))?;
        write_atomic(&inner.dir, "snapshot", &bytes)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let snapshot = snapshot_of(&stored);
        inner.snapshot = Some(stored);
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for MetadataStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let inner = self.lock();
        Ok((inner.applied.last_applied, inner.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetadataResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut inner = self.lock();
        let mut responses = Vec::new();
        for entry in entries {
            inner.applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => MetadataResponse::Applied,
                EntryPayload::Normal(request) => inner.applied.state.apply(&request),
                EntryPayload::Membership(m) => {
                    inner.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    MetadataResponse::Applied
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let applied: Applied = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io(e)))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let bytes = serde_json::to_vec(&stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &io(e)))?;
        let mut inner = self.lock();
        write_atomic(&inner.dir, "snapshot", &bytes)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        inner.applied = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            ..applied
        };
        inner.snapshot = Some(stored);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.lock().snapshot.as_ref().map(snapshot_of))
    }
}
