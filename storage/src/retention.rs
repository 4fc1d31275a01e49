//! Retention: deleting whole old segments by time and by size.
//!
//! # Invariants
//! The active segment is never deleted, so the log end never moves; the log
//! start advances to the base offset of the oldest remaining segment.
//! Applies only to logs with `CleanupPolicy::Delete`.

use crate::{CleanupPolicy, Log, Result};

impl Log {
    /// Deletes sealed segments whose newest record is older than
    /// `retention_ms`, then the oldest ones while the log is larger than
    /// `retention_bytes`. Returns the bytes deleted.
    ///
    /// # Errors
    /// `Io` naming the file that could not be removed.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<u64> {
        if self.config().cleanup != CleanupPolicy::Delete {
            return Ok(0);
        }
        let retention_ms = self.config().retention_ms.map(|d| d.as_millis() as i64);
        let retention_bytes = self.config().retention_bytes;
        let mut deleted = 0;
        loop {
            let total = self.size_bytes();
            let segments = self.segments();
            if segments.len() < 2 {
                break;
            }
            let Some((&base, oldest)) = segments.iter().next() else {
                break;
            };
            let expired =
                retention_ms.is_some_and(|ms| oldest.max_timestamp < now_ms.saturating_sub(ms));
            let oversized = retention_bytes.is_some_and(|max| total - oldest.size >= max);
            if !expired && !oversized {
                break;
            }
            let size = oldest.size;
            if let Some(segment) = self.segments_mut().remove(&base) {
                segment.delete_files()?;
            }
            deleted += size;
        }
        if let Some(&first) = self.segments().keys().next()
            && first > self.log_start_offset()
        {
            self.set_log_start_offset(first);
        }
        Ok(deleted)
    }
}
