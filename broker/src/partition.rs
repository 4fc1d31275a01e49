//! One partition on this node: its log, its high watermark, group commit and
//! long-poll waiting.
//!
//! # Invariants
//! - The high watermark (HW) only grows. With `FlushPolicy::EveryBatch` it is
//!   the log's recovery point (everything below it is fsync'd); with the
//!   other policies it is the log end (durability is left to the timer or
//!   the OS). Readers never get a batch at or above the HW.
//! - A produce with acks ≥ leader returns only once the HW has passed it.
//!
//! # Concurrency
//! The log sits behind a `std::sync::RwLock` held only for in-memory work and
//! a `write(2)` into the page cache, never across an `.await` or an fsync.
//! Group commit: the first producer to need a flush takes `flush_lock`,
//! grabs a `FlushTicket` covering everything appended so far, and runs the
//! fsync on a blocking thread; producers queued behind it usually find their
//! batch already covered when they get the lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use bytes::Bytes;
use fjord_storage::{AppendInfo, FlushPolicy, Log, LogConfig, ReadResult, TimestampOffset};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::now_ms;
use crate::metrics::Metrics;

/// Errors below the broker's own (the broker adds topic and partition).
pub(crate) type StorageResult<T> = std::result::Result<T, fjord_storage::Error>;

#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) id: u32,
    log: RwLock<Log>,
    hw: watch::Sender<i64>,
    flush_lock: tokio::sync::Mutex<()>,
    last_flush: std::sync::Mutex<Instant>,
    /// Set when the topic is deleted: appends and reads stop.
    pub(crate) deleted: AtomicBool,
}

fn visible_end(log: &Log) -> i64 {
    if log.flushes_every_batch() {
        log.recovery_point()
    } else {
        log.log_end_offset()
    }
}

impl Partition {
    /// Opens (recovering) the log; blocking, call from a blocking thread.
    pub(crate) fn open(
        dir: std::path::PathBuf,
        id: u32,
        config: LogConfig,
    ) -> StorageResult<Partition> {
        let log = Log::open(dir, config)?;
        let hw = visible_end(&log);
        Ok(Partition {
            id,
            log: RwLock::new(log),
            hw: watch::Sender::new(hw),
            flush_lock: tokio::sync::Mutex::new(()),
            last_flush: std::sync::Mutex::new(Instant::now()),
            deleted: AtomicBool::new(false),
        })
    }

    pub(crate) fn read_log(&self) -> RwLockReadGuard<'_, Log> {
        self.log
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write_log(&self) -> RwLockWriteGuard<'_, Log> {
        self.log
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }

    fn publish_hw(&self, log: &Log) {
        let hw = visible_end(log);
        self.hw.send_if_modified(|current| {
            if hw > *current {
                *current = hw;
                true
            } else {
                false
            }
        });
    }

    /// Appends one batch; with `wait`, returns once the HW has passed it.
    pub(crate) async fn append(
        &self,
        batch: Bytes,
        wait: bool,
        metrics: &Metrics,
    ) -> StorageResult<AppendInfo> {
        let (info, every_batch) = {
            let mut log = self.write_log();
            let info = log.append(batch, 0, now_ms())?;
            self.publish_hw(&log);
            (info, log.flushes_every_batch())
        };
        if every_batch {
            if wait {
                self.flush_to(info.last_offset + 1, metrics).await?;
            } else if let Err(e) = self.flush_to(info.last_offset + 1, metrics).await {
                tracing::warn!("flush after an acks=0 append failed: {e}");
            }
        }
        Ok(info)
    }

    /// Makes everything below `target` durable (group commit).
    pub(crate) async fn flush_to(&self, target: i64, metrics: &Metrics) -> StorageResult<()> {
        let _turn = self.flush_lock.lock().await;
        if self.read_log().recovery_point() >= target {
            return Ok(());
        }
        let ticket = self.write_log().flush_ticket()?;
        if let Some(ticket) = ticket {
            let started = Instant::now();
            let flushed = tokio::task::spawn_blocking(move || ticket.sync())
                .await
                .map_err(|e| {
                    fjord_storage::Error::CorruptBatch(format!("flush task failed: {e}"))
                })??;
            metrics.record_flush(started.elapsed());
            let mut log = self.write_log();
            log.complete_flush(flushed);
            self.publish_hw(&log);
        }
        if let Ok(mut last) = self.last_flush.lock() {
            *last = Instant::now();
        }
        Ok(())
    }

    /// For `flush.ms` topics: flushes when the interval has passed.
    pub(crate) async fn flush_if_due(&self, metrics: &Metrics) -> StorageResult<()> {
        let (due, end) = {
            let log = self.read_log();
            let FlushPolicy::Interval(every) = log.config().flush else {
                return Ok(());
            };
            let since = self
                .last_flush
                .lock()
                .map(|t| t.elapsed())
                .unwrap_or_default();
            (
                since >= every && log.recovery_point() < log.log_end_offset(),
                log.log_end_offset(),
            )
        };
        if due {
            self.flush_to(end, metrics).await
        } else {
            Ok(())
        }
    }

    /// Reads whole batches below the HW. Offsets above the HW are out of range.
    pub(crate) fn read(&self, offset: i64, max_bytes: usize) -> StorageResult<ReadResult> {
        let hw = self.high_watermark();
        let log = self.read_log();
        if offset > hw {
            return Err(fjord_storage::Error::OffsetOutOfRange {
                offset,
                log_start: log.log_start_offset(),
                log_end: hw,
            });
        }
        let mut result = log.read(offset, max_bytes, hw)?;
        result.log_end_offset = hw;
        Ok(result)
    }

    /// Reads, waiting up to `deadline` for at least `min_bytes`.
    ///
    /// # Cancel safety
    /// Safe: it only reads and waits.
    pub(crate) async fn fetch(
        &self,
        offset: i64,
        max_bytes: usize,
        min_bytes: usize,
        deadline: tokio::time::Instant,
        shutdown: &CancellationToken,
    ) -> StorageResult<ReadResult> {
        let mut changes = self.hw.subscribe();
        loop {
            changes.borrow_and_update();
            let result = self.read(offset, max_bytes)?;
            let enough = !result.data.is_empty() && result.data.len() >= min_bytes;
            if enough
                || min_bytes == 0
                || tokio::time::Instant::now() >= deadline
                || self.deleted.load(Ordering::Relaxed)
            {
                return Ok(result);
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.cancelled() => return Ok(result),
            }
        }
    }

    pub(crate) fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> StorageResult<Option<TimestampOffset>> {
        let hw = self.high_watermark();
        Ok(self
            .read_log()
            .offset_for_timestamp(timestamp_ms)?
            .filter(|t| t.offset < hw))
    }

    /// Retention, compaction and time-based rolls.
    pub(crate) fn maintain(&self) -> StorageResult<u64> {
        let mut log = self.write_log();
        log.maybe_roll(now_ms())?;
        let deleted = log.enforce_retention(now_ms())?;
        let compacted = log.compact()?;
        Ok(deleted + compacted)
    }

    /// Flushes everything (shutdown).
    pub(crate) fn flush_now(&self) -> StorageResult<()> {
        let mut log = self.write_log();
        log.flush()?;
        self.publish_hw(&log);
        Ok(())
    }
}
