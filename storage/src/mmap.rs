//! The only place that maps files into memory.
//!
//! # Invariants
//! A mapping is made only of a file this log owns exclusively (the log takes
//! an advisory lock on its directory on open).
//!
//! A segment's read mapping ([`ReadMap`]) may reach past the end of the
//! file, so a segment that grows is not remapped on every read; bytes are
//! only ever read from it up to the segment's committed length, which the
//! file always holds. The log never shrinks a file below a committed length
//! it has handed out for reading: recovery truncates before anything is
//! mapped, a failed append truncates only bytes past the committed length,
//! and `truncate_to` writes a new file and renames it over the old one (the
//! old inode lives on for as long as mappings of it exist).
//!
//! # Concurrency
//! Read mappings are immutable and shared through `Arc`. Index mappings are
//! written only by the log's owner (`&mut Log`).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{MmapMut, MmapOptions, MmapRaw};

/// A read-only mapping of a segment file, possibly longer than the file.
#[derive(Debug)]
pub(crate) struct ReadMap {
    raw: MmapRaw,
}

impl ReadMap {
    /// Maps `reserve` bytes of `file` read-only. The file must already hold
    /// `committed` bytes, `0 < committed <= reserve`; the rest of the
    /// mapping becomes readable as appends reach it.
    pub(crate) fn new(file: &File, committed: usize, reserve: usize) -> io::Result<ReadMap> {
        let file_len = file.metadata()?.len();
        if committed == 0 || committed as u64 > file_len || reserve < committed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot map {committed} of {reserve} bytes of a {file_len}-byte file"),
            ));
        }
        let raw = MmapOptions::new().len(reserve).map_raw_read_only(file)?;
        Ok(ReadMap { raw })
    }

    /// Bytes mapped (some may lie past the file's current end).
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Bytes `start..end` of the file. `end` must not pass the segment's
    /// committed length, which the segment tracks (bytes it has written
    /// whole); a range outside the mapping gives an empty slice.
    pub(crate) fn get(&self, start: usize, end: usize) -> &[u8] {
        if start > end || end > self.raw.len() {
            return &[];
        }
        // SAFETY: the mapping is `raw.len()` bytes long and `start..end`
        // lies inside it. Every byte of the range is backed by the file:
        // either it was there when mapped (`committed`, checked in `new`) or
        // the segment appended it since and counted it committed, and the
        // file is never shrunk below a committed length while mapped (see
        // the module invariants), so reading it cannot fault past the end
        // of the file. Nothing writes through a read mapping; appends go
        // through `pwrite`, after the committed length a reader saw.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().add(start), end - start) }
    }
}

/// Maps the whole of `file` read-write (an index file of fixed length).
pub(crate) fn map_write(file: &File) -> io::Result<MmapMut> {
    // SAFETY: index files are owned exclusively by this log, are set to their
    // full length before mapping and are resized only after the mapping is
    // dropped (`IndexFile::trim` and `reset` unmap first).
    let map = unsafe { MmapOptions::new().map_mut(file)? };
    // Index entries are written a few bytes at a time, far apart: without
    // this, each fault on a new page of the (sparse) file reads around it,
    // zero-filling a large folio that memory pressure may drop again.
    if let Err(e) = map.advise(memmap2::Advice::Random) {
        tracing::debug!("madvise(RANDOM) on an index: {e}");
    }
    Ok(map)
}
