//! A fixed-width, append-only, memory-mapped index file: the shared
//! machinery of the offset index (`.index`) and the time index (`.timeindex`).
//!
//! # Format
//! A sequence of `W`-byte entries, big-endian. While its segment is active
//! the file is preallocated to `max_bytes` and zero past the last entry; the
//! number of entries is kept in memory. When the segment is sealed or closed
//! the file is trimmed to exactly `entries * W` bytes.
//!
//! # Crash
//! Entries of the active segment may be lost or stale after a crash:
//! recovery rebuilds the index of every segment it scans, and checks the
//! entries of the others (`validate`), rebuilding them when they are wrong.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::{Error, Result, mmap};

/// A memory-mapped index file of `W`-byte entries.
#[derive(Debug)]
pub(crate) struct IndexFile<const W: usize> {
    path: PathBuf,
    file: File,
    map: Option<MmapMut>,
    entries: usize,
    capacity: usize,
}

impl<const W: usize> IndexFile<W> {
    /// Opens (or creates) the file and takes its entries as they are: the
    /// caller validates or resets them.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err("open index", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| io_err("stat index", path, e))?
            .len() as usize;
        let mut index = IndexFile {
            path: path.to_path_buf(),
            file,
            map: None,
            entries: len / W,
            capacity: len / W,
        };
        index.remap()?;
        Ok(index)
    }

    fn remap(&mut self) -> Result<()> {
        self.map = None;
        if self.capacity > 0 {
            self.map =
                Some(mmap::map_write(&self.file).map_err(|e| io_err("map index", &self.path, e))?);
        }
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    /// Entry `i` (`i < len()`).
    pub(crate) fn entry(&self, i: usize) -> [u8; W] {
        let mut out = [0u8; W];
        if let Some(map) = &self.map {
            out.copy_from_slice(&map[i * W..(i + 1) * W]);
        }
        out
    }

    /// Drops every entry and preallocates `max_bytes` for new ones.
    pub(crate) fn reset(&mut self, max_bytes: usize) -> Result<()> {
        self.map = None;
        let capacity = (max_bytes / W).max(1);
        self.file
            .set_len(0)
            .map_err(|e| io_err("truncate index", &self.path, e))?;
        self.file
            .set_len((capacity * W) as u64)
            .map_err(|e| io_err("preallocate index", &self.path, e))?;
        self.entries = 0;
        self.capacity = capacity;
        self.remap()
    }

    /// Makes room for appends again after a `trim` (reopening an active
    /// segment).
    pub(crate) fn grow(&mut self, max_bytes: usize) -> Result<()> {
        let capacity = (max_bytes / W).max(self.entries + 1);
        if capacity <= self.capacity {
            return Ok(());
        }
        self.map = None;
        self.file
            .set_len((capacity * W) as u64)
            .map_err(|e| io_err("preallocate index", &self.path, e))?;
        self.capacity = capacity;
        self.remap()
    }

    /// Appends an entry; returns false (and drops it) when the file is full,
    /// which only makes the index sparser.
    pub(crate) fn push(&mut self, entry: [u8; W]) -> bool {
        if self.entries >= self.capacity {
            return false;
        }
        if let Some(map) = &mut self.map {
            map[self.entries * W..(self.entries + 1) * W].copy_from_slice(&entry);
            self.entries += 1;
            return true;
        }
        false
    }

    /// Writes the entries out and cuts the file to exactly the entries.
    pub(crate) fn trim(&mut self) -> Result<()> {
        if let Some(map) = &self.map {
            map.flush()
                .map_err(|e| io_err("flush index", &self.path, e))?;
        }
        self.map = None;
        self.file
            .set_len((self.entries * W) as u64)
            .map_err(|e| io_err("trim index", &self.path, e))?;
        self.capacity = self.entries;
        self.remap()
    }

    /// Binary search: the last entry whose key (from `key`) is `<= target`.
    pub(crate) fn floor<K: Ord>(&self, target: &K, key: impl Fn([u8; W]) -> K) -> Option<[u8; W]> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if key(self.entry(mid)) <= *target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo > 0).then(|| self.entry(lo - 1))
    }
}

pub(crate) fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
