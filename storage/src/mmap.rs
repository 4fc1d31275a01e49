//! The only place that maps files into memory.
//!
//! # Invariants
//! A mapping is made only of a file this log owns exclusively (the log takes
//! an advisory lock on its directory on open), and only over bytes that exist
//! in the file: `map_read` maps exactly the committed length of a segment.
//! The log never shrinks a file below a length it has mapped for reading:
//! recovery truncates before anything is mapped, a failed append truncates
//! only bytes past the committed (mapped) length, and `truncate_to` writes a
//! new file and renames it over the old one (the old inode lives on for as
//! long as mappings of it exist).
//!
//! # Concurrency
//! Read mappings are immutable and shared through `Arc`. Index mappings are
//! written only by the log's owner (`&mut Log`).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapMut, MmapOptions};

/// Maps the first `len` bytes of `file` read-only. `len` must not exceed the
/// file's length and must be non-zero.
pub(crate) fn map_read(file: &File, len: usize) -> io::Result<Mmap> {
    let file_len = file.metadata()?.len();
    if len == 0 || len as u64 > file_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot map {len} bytes of a {file_len}-byte file"),
        ));
    }
    // SAFETY: `len` is within the file (checked above), the file is owned
    // exclusively by this log and never shrunk below a mapped length (see the
    // module invariants), so every byte of the mapping stays backed by the
    // file and no other writer changes it behind the mapping's back except by
    // appending past `len`.
    unsafe { MmapOptions::new().len(len).map(file) }
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
