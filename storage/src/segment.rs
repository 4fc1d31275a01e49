//! One segment of a partition log: `<base>.log` with its sparse `<base>.index`
//! and `<base>.timeindex`.
//!
//! # Format
//! - `.log`: whole Kafka v2 batches back to back, offsets ascending.
//! - `.index`: entries `(relative offset: u32, file position: u32)`, one at
//!   least every `index_interval_bytes`; relative to the segment's base offset.
//! - `.timeindex`: entries `(max timestamp so far: i64, relative offset: u32)`
//!   added with an offset-index entry when the maximum timestamp grew.
//!
//! # Invariants
//! `size` bytes of the `.log` are committed: whole, validated batches. Bytes
//! past `size` are never read (a failed append is cut back to `size`). Read
//! mappings cover at most `size` bytes at the time they are made.
//!
//! # Concurrency
//! Mutated only through `&mut` by the log's owner; `read` takes `&self` and
//! remaps under a mutex when the segment grew past the current mapping.
//!
//! # Crash
//! `scan` walks the file from the start, stops at the first batch that is
//! torn or (with `verify_crc`) fails its CRC, cuts the file there and, when
//! asked, rebuilds both indexes from what it walked.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::batch::{BatchHeader, RecordBatch};
use crate::index_file::{IndexFile, io_err};
use crate::log::TimestampOffset;
use crate::mmap::ReadMap;
use crate::{Error, LogConfig, Result};

/// The least a growing segment's read mapping reserves (address space only).
const MIN_RESERVE: usize = 64 << 20;

/// Disk space a growing segment allocates ahead of its end, without
/// changing the file's length (`FALLOC_FL_KEEP_SIZE`). Appends into
/// allocated blocks skip the file system's per-block delayed allocation:
/// in `cluster_bench` that was a third of the cost of a follower's write.
/// Sealing the segment gives back what it did not use.
const PREALLOCATE: u64 = 8 << 20;

/// Zero-pads a base offset the way file names carry it.
pub(crate) fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// What `scan` found.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    /// Bytes cut from the end of the file (0 when it was whole).
    pub(crate) truncated: u64,
    /// Why the scan stopped early, if it did.
    pub(crate) problem: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    log_path: PathBuf,
    file: File,
    /// Committed bytes.
    pub(crate) size: u64,
    /// One past the last offset in the segment (the base when empty).
    pub(crate) next_offset: i64,
    /// Largest record timestamp in the segment (-1 when empty).
    pub(crate) max_timestamp: i64,
    /// When the segment received its first append (for `segment.ms`).
    pub(crate) first_append_ms: Option<i64>,
    index: IndexFile<8>,
    time_index: IndexFile<12>,
    bytes_since_index: u64,
    index_interval: u64,
    map: Mutex<Option<Arc<ReadMap>>>,
    /// Still taking appends: read mappings get room to grow.
    growing: bool,
    /// File blocks are allocated up to here (see [`PREALLOCATE`]).
    reserved: u64,
    /// False once the file system said it cannot preallocate.
    preallocates: bool,
}

impl Segment {
    /// Creates an empty segment with preallocated indexes.
    pub(crate) fn create(dir: &Path, base_offset: i64, config: &LogConfig) -> Result<Segment> {
        let mut segment = Segment::open(dir, base_offset, config)?;
        segment
            .file
            .set_len(0)
            .map_err(|e| io_err("truncate segment", &segment.log_path, e))?;
        segment.size = 0;
        segment.index.reset(config.max_index_bytes as usize)?;
        segment.time_index.reset(config.max_index_bytes as usize)?;
        segment.growing = true;
        Ok(segment)
    }

    /// Opens the files of an existing segment as they are; `scan` or
    /// `check_indexes` must run before it is trusted.
    pub(crate) fn open(dir: &Path, base_offset: i64, config: &LogConfig) -> Result<Segment> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(|e| io_err("open segment", &log_path, e))?;
        let size = file
            .metadata()
            .map_err(|e| io_err("stat segment", &log_path, e))?
            .len();
        Ok(Segment {
            base_offset,
            log_path,
            file,
            size,
            next_offset: base_offset,
            max_timestamp: -1,
            first_append_ms: None,
            index: IndexFile::open(&dir.join(format!("{stem}.index")))?,
            time_index: IndexFile::open(&dir.join(format!("{stem}.timeindex")))?,
            bytes_since_index: 0,
            index_interval: u64::from(config.index_interval_bytes),
            map: Mutex::new(None),
            growing: false,
            reserved: size,
            preallocates: true,
        })
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn index_paths(&self) -> [&Path; 2] {
        [self.index.path(), self.time_index.path()]
    }

    /// Walks every batch from the start; see the module's "Crash" section.
    /// Leaves `next_offset`, `max_timestamp` and (if `rebuild`) the indexes
    /// describing exactly the batches kept.
    pub(crate) fn scan(
        &mut self,
        verify_crc: bool,
        rebuild: bool,
        max_index_bytes: usize,
    ) -> Result<ScanOutcome> {
        *self.lock_map() = None;
        if rebuild {
            self.index.reset(max_index_bytes)?;
            self.time_index.reset(max_index_bytes)?;
        }
        self.bytes_since_index = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        let file_len = self
            .file
            .metadata()
            .map_err(|e| io_err("stat segment", &self.log_path, e))?
            .len();
        let mut outcome = ScanOutcome::default();
        let mut pos = 0usize;
        if file_len > 0 {
            let len = file_len as usize;
            let map = ReadMap::new(&self.file, len, len)
                .map_err(|e| io_err("map segment", &self.log_path, e))?;
            let data = Bytes::from_owner(MapSlice {
                map: Arc::new(map),
                start: 0,
                end: file_len as usize,
            });
            while pos < data.len() {
                let checked = if verify_crc {
                    RecordBatch::parse_checked(data.slice(pos..))
                } else {
                    BatchHeader::parse(&data[pos..]).and_then(|header| {
                        let len = header.total_len()?;
                        Ok(RecordBatch {
                            header,
                            bytes: data.slice(pos..pos + len),
                        })
                    })
                };
                let batch = match checked {
                    Ok(batch) if batch.header.base_offset < self.next_offset => {
                        outcome.problem = Some(format!(
                            "offset {} goes backwards at byte {pos}",
                            batch.header.base_offset
                        ));
                        break;
                    }
                    Ok(batch) => batch,
                    Err(Error::Incomplete(_)) => {
                        outcome.problem = Some(format!("torn batch at byte {pos}"));
                        break;
                    }
                    Err(e) => {
                        outcome.problem = Some(format!("{e} at byte {pos}"));
                        break;
                    }
                };
                let len = batch.bytes.len();
                if rebuild {
                    self.maybe_index(&batch.header, pos as u64, len as u64);
                }
                self.max_timestamp = self.max_timestamp.max(batch.header.max_timestamp);
                self.next_offset = batch.last_offset() + 1;
                pos += len;
            }
        }
        if (pos as u64) < file_len {
            self.file
                .set_len(pos as u64)
                .map_err(|e| io_err("truncate segment", &self.log_path, e))?;
            outcome.truncated = file_len - pos as u64;
        }
        self.size = pos as u64;
        Ok(outcome)
    }

    /// Checks the sealed indexes against the log; false if they must be rebuilt.
    pub(crate) fn indexes_look_valid(&self) -> bool {
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..self.index.len() {
            let (rel, pos) = split_index(self.index.entry(i));
            if u64::from(pos) >= self.size || prev.is_some_and(|(r, p)| rel <= r || pos <= p) {
                return false;
            }
            prev = Some((rel, pos));
        }
        let mut prev_ts = i64::MIN;
        for i in 0..self.time_index.len() {
            let (ts, rel) = split_time(self.time_index.entry(i));
            if ts < prev_ts || i64::from(rel) > self.next_offset - self.base_offset {
                return false;
            }
            prev_ts = ts;
        }
        true
    }

    fn maybe_index(&mut self, header: &BatchHeader, position: u64, len: u64) {
        if self.bytes_since_index >= self.index_interval || position == 0 {
            let rel = (header.base_offset - self.base_offset) as u32;
            let mut entry = [0u8; 8];
            entry[..4].copy_from_slice(&rel.to_be_bytes());
            entry[4..].copy_from_slice(&(position as u32).to_be_bytes());
            self.index.push(entry);
            if header.max_timestamp > self.max_timestamp {
                let mut t = [0u8; 12];
                t[..8].copy_from_slice(&header.max_timestamp.to_be_bytes());
                t[8..].copy_from_slice(&rel.to_be_bytes());
                self.time_index.push(t);
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
    }

    /// Writes stamped batches that lie back to back in `parts` (each batch
    /// given by its header and length) at the end with one write. On
    /// failure the file is cut back so nothing partial remains.
    pub(crate) fn append_run(
        &mut self,
        parts: &[&[u8]],
        batches: &[(BatchHeader, usize)],
        now_ms: i64,
    ) -> Result<()> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        self.preallocate(len);
        if let Err(e) = write_all_at(&self.file, parts, self.size) {
            let _ = self.file.set_len(self.size);
            return Err(io_err("append to segment", &self.log_path, e));
        }
        let mut position = self.size;
        for (header, len) in batches {
            self.maybe_index(header, position, *len as u64);
            position += *len as u64;
            self.next_offset = header.last_offset() + 1;
            self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        }
        self.size = position;
        self.first_append_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// Allocates blocks for the next `len` bytes and [`PREALLOCATE`] more,
    /// when they are not yet. Best effort: a file system that cannot, or a
    /// disk too full to, simply takes the write as it would anyway.
    fn preallocate(&mut self, len: u64) {
        if !self.preallocates || self.size + len <= self.reserved {
            return;
        }
        let want = len + PREALLOCATE;
        match rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            self.size,
            want,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {
                self.preallocates = false;
            }
            // Out of space (or similar): try again further on.
            Err(e) => tracing::debug!("preallocating {}: {e}", self.log_path.display()),
        }
        self.reserved = self.size + want;
    }

    /// A handle to fsync the log file from another thread.
    pub(crate) fn sync_handle(&self) -> Result<(File, PathBuf)> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| io_err("dup segment", &self.log_path, e))?;
        Ok((file, self.log_path.clone()))
    }

    /// Flushes the log file and trims the indexes (on roll and close).
    pub(crate) fn seal(&mut self) -> Result<()> {
        self.growing = false;
        if self.reserved > self.size {
            // Cutting at the committed length frees the blocks allocated
            // past it.
            self.file
                .set_len(self.size)
                .map_err(|e| io_err("trim segment", &self.log_path, e))?;
            self.reserved = self.size;
        }
        // Drop a mapping made with room to grow.
        *self.lock_map() = None;
        self.file
            .sync_data()
            .map_err(|e| io_err("fsync segment", &self.log_path, e))?;
        self.index.trim()?;
        self.time_index.trim()
    }

    /// Makes a sealed segment writable again (it is the last one on open).
    pub(crate) fn unseal(&mut self, max_index_bytes: usize) -> Result<()> {
        self.growing = true;
        self.index.grow(max_index_bytes)?;
        self.time_index.grow(max_index_bytes)
    }

    fn lock_map(&self) -> std::sync::MutexGuard<'_, Option<Arc<ReadMap>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The committed bytes as a zero-copy buffer over the mapping.
    pub(crate) fn data(&self) -> Result<Bytes> {
        if self.size == 0 {
            return Ok(Bytes::new());
        }
        let size = self.size as usize;
        let mut guard = self.lock_map();
        let map = match guard.as_ref() {
            Some(map) if map.len() >= size => Arc::clone(map),
            _ => {
                // A growing segment's mapping reaches past its end, so the
                // next reads (a follower fetching the tail) find the new
                // bytes in it: remapping on every read costs an mmap, page
                // faults over the whole tail and a munmap per fetch.
                let reserve = if self.growing {
                    size.saturating_mul(2).max(MIN_RESERVE)
                } else {
                    size
                };
                let map = Arc::new(
                    ReadMap::new(&self.file, size, reserve)
                        .map_err(|e| io_err("map segment", &self.log_path, e))?,
                );
                *guard = Some(Arc::clone(&map));
                map
            }
        };
        Ok(Bytes::from_owner(MapSlice {
            map,
            start: 0,
            end: size,
        }))
    }

    /// File position of the batch containing `offset`, if any.
    fn position_of(&self, data: &Bytes, offset: i64) -> Result<Option<usize>> {
        let rel = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let mut pos = self
            .index
            .floor(&rel, |e| split_index(e).0)
            .map_or(0, |e| split_index(e).1 as usize);
        while pos < data.len() {
            let header = BatchHeader::parse(&data[pos..])?;
            if header.last_offset() >= offset {
                return Ok(Some(pos));
            }
            pos += header.total_len()?;
        }
        Ok(None)
    }

    /// Whole batches from the one containing `offset`: at most `max_bytes`
    /// (but always the first whole), only those whose last offset is below
    /// `max_offset`. Returns the data and the offset after it.
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<Option<(Bytes, i64)>> {
        let data = self.data()?;
        let Some(start) = self.position_of(&data, offset)? else {
            return Ok(None);
        };
        let (mut end, mut next) = (start, offset);
        while end < data.len() {
            let header = BatchHeader::parse(&data[end..])?;
            let len = header.total_len()?;
            if header.last_offset() >= max_offset || (end > start && end - start + len > max_bytes)
            {
                break;
            }
            end += len;
            next = header.last_offset() + 1;
        }
        Ok(Some((data.slice(start..end), next)))
    }

    /// The first offset whose record timestamp is at least `timestamp_ms`.
    pub(crate) fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampOffset>> {
        if self.max_timestamp < timestamp_ms {
            return Ok(None);
        }
        let data = self.data()?;
        let start_rel = self
            .time_index
            .floor(&(timestamp_ms - 1), |e| split_time(e).0)
            .map_or(0, |e| split_time(e).1);
        let mut pos = self
            .position_of(&data, self.base_offset + i64::from(start_rel))?
            .unwrap_or(0);
        while pos < data.len() {
            let batch = RecordBatch::parse_checked(data.slice(pos..))?;
            pos += batch.bytes.len();
            if batch.header.max_timestamp < timestamp_ms {
                continue;
            }
            if let Some(r) = batch
                .records()?
                .into_iter()
                .find(|r| r.timestamp_ms >= timestamp_ms)
            {
                return Ok(Some(TimestampOffset {
                    offset: r.offset,
                    timestamp_ms: r.timestamp_ms,
                }));
            }
        }
        Ok(None)
    }

    /// Removes the segment's files.
    pub(crate) fn delete_files(self) -> Result<()> {
        let paths = [
            self.log_path.clone(),
            self.index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ];
        drop(self);
        for path in paths {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("delete segment file", &path, e)),
            }
        }
        Ok(())
    }
}

fn split_index(e: [u8; 8]) -> (u32, u32) {
    (
        u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
        u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
    )
}

fn split_time(e: [u8; 12]) -> (i64, u32) {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&e[..8]);
    (
        i64::from_be_bytes(ts),
        u32::from_be_bytes([e[8], e[9], e[10], e[11]]),
    )
}

/// Writes all of `parts`, back to back, at `offset` (one `pwritev` unless
/// the kernel takes less).
fn write_all_at(file: &File, parts: &[&[u8]], mut offset: u64) -> std::io::Result<()> {
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let mut first = 0;
    while first < parts.len() {
        let slices: Vec<std::io::IoSlice<'_>> = parts[first..]
            .iter()
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        let mut written = match rustix::io::pwritev(file, &slices, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        offset += written as u64;
        while first < parts.len() && written >= parts[first].len() {
            written -= parts[first].len();
            first += 1;
        }
        if written > 0 {
            parts[first] = &parts[first][written..];
        }
    }
    Ok(())
}

/// Owner of a zero-copy `Bytes` over part of a mapping.
struct MapSlice {
    map: Arc<ReadMap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        self.map.get(self.start, self.end)
    }
}
