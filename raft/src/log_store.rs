//! The durable Raft log and vote of one node.
//!
//! # Format
//! - `<dir>/raft-log`: append-only records `[len: u32 BE][crc32c: u32 BE]
//!   [JSON]`, each an append of one entry, a truncation ("entries from index
//!   N on are gone") or a purge ("entries up to log id L are gone"). Replaying
//!   the records in order rebuilds the log. A purge rewrites the file without
//!   the purged entries (temp file, fsync, rename).
//! - `<dir>/vote`: the vote as JSON, replaced atomically.
//!
//! # Crash
//! Appends are acknowledged to openraft only after `fdatasync`. On open a
//! torn or corrupt record ends the replay and is cut off: it was never
//! acknowledged.
//!
//! # Concurrency
//! The store and its readers share one `std::sync::Mutex`, never held across
//! an `.await`. Append, truncate and vote fsyncs run on a blocking thread; a
//! purge (rare: after a snapshot) rewrites the file on the calling thread.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogId, StorageError, TypeConfig};

#[derive(Serialize, Deserialize)]
enum Record {
    Append(Entry),
    Truncate(u64),
    Purge(LogId),
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote<u64>>,
}

/// The log store; clones share it (openraft's readers are clones).
#[derive(Debug, Clone)]
pub struct FileLogStore {
    inner: Arc<Mutex<Inner>>,
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn encode(record: &Record) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(record).map_err(io)?;
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Replays `bytes`; returns the records and the length of the valid prefix.
fn decode_all(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let Some(body) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Ok(record) = serde_json::from_slice::<Record>(body) else {
            break;
        };
        records.push(record);
        pos += 8 + len;
    }
    (records, pos)
}

impl FileLogStore {
    /// Opens (or creates) the log in `dir`, replaying it.
    ///
    /// # Errors
    /// The directory or files cannot be created, read or repaired.
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<FileLogStore> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("raft-log");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (records, valid) = decode_all(&bytes);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        if valid < bytes.len() {
            tracing::warn!(file = %path.display(), cut = bytes.len() - valid, "raft log: cut a torn or corrupt tail");
            file.set_len(valid as u64)?;
            file.sync_data()?;
        }
        let mut inner = Inner {
            dir: dir.clone(),
            file,
            entries: BTreeMap::new(),
            last_purged: None,
            vote: None,
        };
        for record in records {
            inner.replay(record);
        }
        inner.vote = match std::fs::read(dir.join("vote")) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(io)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(FileLogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// Writes entries and returns once they are on disk.
    async fn append_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> std::io::Result<()> {
        let records: Vec<Record> = entries.into_iter().map(Record::Append).collect();
        let file = {
            let mut inner = self.lock();
            let file = inner.write(&records)?;
            for r in records {
                inner.replay(r);
            }
            file
        };
        sync(file).await
    }
}

impl Inner {
    fn replay(&mut self, record: Record) {
        match record {
            Record::Append(entry) => {
                self.entries.insert(entry.log_id.index, entry);
            }
            Record::Truncate(from) => {
                self.entries.split_off(&from);
            }
            Record::Purge(log_id) => {
                self.entries = self.entries.split_off(&(log_id.index + 1));
                self.last_purged = Some(log_id);
            }
        }
    }

    /// Writes records and hands back a handle to fsync them.
    fn write(&mut self, records: &[Record]) -> std::io::Result<File> {
        let mut buf = Vec::new();
        for r in records {
            buf.extend_from_slice(&encode(r)?);
        }
        self.file.write_all(&buf)?;
        self.file.try_clone()
    }

    /// Rewrites the file with only what is live (after a purge).
    fn rewrite(&mut self) -> std::io::Result<()> {
        let tmp = self.dir.join("raft-log.tmp");
        let mut buf = Vec::new();
        if let Some(p) = self.last_purged {
            buf.extend_from_slice(&encode(&Record::Purge(p))?);
        }
        for entry in self.entries.values() {
            buf.extend_from_slice(&encode(&Record::Append(entry.clone()))?);
        }
        let mut file = File::create(&tmp)?;
        file.write_all(&buf)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("raft-log"))?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join("raft-log"))?;
        Ok(())
    }
}

async fn sync(file: File) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || file.sync_data())
        .await
        .map_err(io)?
}

impl RaftLogReader<TypeConfig> for FileLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for FileLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let dir = self.lock().dir.clone();
        let json = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&io(e)))?;
        let write = move || -> std::io::Result<()> {
            let tmp = dir.join("vote.tmp");
            let mut f = File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, dir.join("vote"))?;
            File::open(&dir)?.sync_all()
        };
        tokio::task::spawn_blocking(write)
            .await
            .map_err(io)
            .and_then(|r| r)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.append_entries(entries).await;
        let failed = result.as_ref().err().map(StorageIOError::write_logs);
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let file = {
            let mut inner = self.lock();
            let record = Record::Truncate(log_id.index);
            let file = inner
                .write(std::slice::from_ref(&record))
                .map_err(|e| StorageIOError::write_logs(&e))?;
            inner.replay(record);
            file
        };
        sync(file)
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.replay(Record::Purge(log_id));
        inner
            .rewrite()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::MetadataRequest;

    fn id(index: u64) -> LogId {
        openraft::LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    #[tokio::test]
    async fn the_log_and_vote_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |index: u64| Entry {
            log_id: id(index),
            payload: EntryPayload::Normal(MetadataRequest::DeleteTopic {
                name: format!("t{index}"),
            }),
        };
        {
            let mut log = FileLogStore::open(dir.path()).unwrap();
            log.save_vote(&Vote::new(3, 2)).await.unwrap();
            log.append_entries((1..=5).map(entry)).await.unwrap();
            log.truncate(id(4)).await.unwrap();
            log.purge(id(1)).await.unwrap();
        }
        // A half-written record at the end, as after a crash mid-append.
        let path = dir.path().join("raft-log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 50, 1, 2, 3, 4, b'{']);
        std::fs::write(&path, &bytes).unwrap();

        let mut log = FileLogStore::open(dir.path()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(1));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(3));
        let entries = log.try_get_log_entries(0..10).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(
            std::fs::metadata(&path).unwrap().len() < bytes.len() as u64,
            "the torn record was cut"
        );
    }
}
