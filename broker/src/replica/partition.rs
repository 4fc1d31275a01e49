//! One partition on this node: its log, its high watermark, group commit and
//! long-poll waiting.
//!
//! # Invariants
//! - The high watermark (HW) only grows, except when a follower cuts a
//!   diverged tail. A replica's own log end counts toward it only once
//!   durable: with `FlushPolicy::EveryBatch` that is the log's recovery
//!   point (everything below it is fsync'd); with the other policies it is
//!   the log end (durability is left to the timer or the OS). Readers never
//!   get a batch at or above the HW.
//! - The leader's HW is the minimum log end over the ISR (on a node alone,
//!   its own); a follower's is the smaller of the leader's HW and its own
//!   log end (see [`Role`]). Only a leader appends client batches, stamped
//!   with its leader epoch, and only a leader serves client reads.
//!
//! # Concurrency
//! The log sits behind a `std::sync::RwLock` held only for in-memory work and
//! a `write(2)` into the page cache, never across an `.await` or an fsync.
//! The role sits behind a `std::sync::Mutex`; when both are held, the role
//! is taken first, then the log (a leader appends under its role so no
//! write lands after it stopped leading).
//! Group commit: the first producer to need a flush takes `flush_lock`,
//! grabs a `FlushTicket` covering everything appended so far, and runs the
//! fsync on a blocking thread; producers queued behind it usually find their
//! batch already covered when they get the lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_storage::{AppendInfo, FlushPolicy, Log, LogConfig, ReadResult, TimestampOffset};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::replication::{AckCheck, LeaderReplication, ReplicationAction};
use crate::api::Acks;
use crate::clock::now_ms;
use crate::metrics::Metrics;

/// How often a follower of an fsync-per-batch topic fsyncs what it copied.
pub(crate) const FOLLOWER_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Errors below the broker's own (the broker adds topic and partition).
pub(crate) type StorageResult<T> = std::result::Result<T, fjord_storage::Error>;

/// This node's part in a partition.
#[derive(Debug)]
pub(crate) enum Role {
    /// Leads `epoch`: appends client batches and serves reads.
    Leader {
        epoch: i32,
        replication: LeaderReplication,
        min_insync: usize,
        replicas: Vec<u64>,
        /// The log end when this epoch began: until the HW reaches it, the
        /// HW this leader knows may be behind the one its predecessor
        /// served, so reads wait (Kafka's KIP-207).
        epoch_start: i64,
    },
    /// Copies `leader`'s log; a fetcher task runs until `stop`.
    Follower {
        epoch: i32,
        leader: u64,
        stop: CancellationToken,
    },
    /// No leader is known (at this epoch); nothing is served.
    Offline { epoch: i32 },
}

impl Role {
    pub(crate) fn epoch(&self) -> i32 {
        match self {
            Role::Leader { epoch, .. } | Role::Follower { epoch, .. } | Role::Offline { epoch } => {
                *epoch
            }
        }
    }
}

/// Why a cluster append was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    NotLeader,
    NotEnoughReplicas {
        isr: usize,
        required: usize,
    },
    /// The HW did not pass the batch in time (it may still commit).
    Timeout,
    /// The leader lost its role after writing the batch and before the HW
    /// passed it (it may still commit, through the next leader).
    Deposed,
    Storage(fjord_storage::Error),
}

impl From<fjord_storage::Error> for Refusal {
    fn from(e: fjord_storage::Error) -> Refusal {
        Refusal::Storage(e)
    }
}

/// The outcome of a follower's fetch, as the leader answers it.
#[derive(Debug)]
pub(crate) enum ReplicaFetch {
    Records {
        data: Bytes,
        high_watermark: i64,
        log_start_offset: i64,
    },
    /// The follower must cut its log to this offset first.
    Diverging { end_offset: i64 },
    /// Not the leader of `follower_epoch` (ours differs, or we do not lead).
    WrongEpoch { ours: Option<i32> },
}

#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) id: u32,
    log: RwLock<Log>,
    hw: watch::Sender<i64>,
    /// The log end, for followers waiting on new data.
    leo: watch::Sender<i64>,
    role: Mutex<Role>,
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
        // A replica learns its HW from its role (the leader's replication,
        // or the leader's word); it starts at nothing known.
        let (hw, role) = (log.log_start_offset(), Role::Offline { epoch: -1 });
        let leo = log.log_end_offset();
        Ok(Partition {
            id,
            log: RwLock::new(log),
            hw: watch::Sender::new(hw),
            leo: watch::Sender::new(leo),
            role: Mutex::new(role),
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

    pub(crate) fn role(&self) -> MutexGuard<'_, Role> {
        self.role
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Called with the log locked: must not take the role lock (the
    /// lock order is role, then log).
    fn publish_leo(&self, log: &Log) {
        self.leo.send_replace(log.log_end_offset());
    }

    /// Raises the HW (never lowers it): the replication's
    /// `AdvanceHighWatermark`, or a follower hearing the leader's.
    pub(crate) fn advance_hw(&self, hw: i64) {
        self.hw.send_if_modified(|current| {
            if hw > *current {
                *current = hw;
                true
            } else {
                false
            }
        });
    }

    /// Appends a client batch as the leader (flushing it first under
    /// `FlushPolicy::EveryBatch`); returns where it went, the epoch it was
    /// appended at, and what the replication asks for next (the caller
    /// carries it out, then waits as `acks` asks with
    /// [`Partition::await_committed`]).
    pub(crate) async fn append_as_leader(
        &self,
        batch: Bytes,
        acks: Acks,
        metrics: &Metrics,
    ) -> Result<(AppendInfo, i32, Vec<ReplicationAction>), Refusal> {
        let (info, epoch, every_batch) = {
            let role = self.role();
            let Role::Leader {
                epoch,
                replication,
                min_insync,
                ..
            } = &*role
            else {
                return Err(Refusal::NotLeader);
            };
            if acks == Acks::All
                && let AckCheck::NotEnoughReplicas { isr, required } =
                    replication.check_acks_all(*min_insync)
            {
                return Err(Refusal::NotEnoughReplicas { isr, required });
            }
            // The role lock is held across the write so no append lands
            // after this node stopped leading.
            let mut log = self.write_log();
            let info = log.append(batch, *epoch, now_ms())?;
            self.leo.send_replace(log.log_end_offset());
            (info, *epoch, log.flushes_every_batch())
        };
        if every_batch {
            self.flush_to(info.last_offset + 1, metrics).await?;
        }
        Ok((info, epoch, self.leader_progress(epoch)))
    }

    /// Waits (up to `timeout`) until the HW passes `last_offset`, while
    /// this node leads at `epoch`.
    pub(crate) async fn await_committed(
        &self,
        last_offset: i64,
        epoch: i32,
        timeout: Duration,
    ) -> Result<(), Refusal> {
        let mut hw = self.hw.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *hw.borrow_and_update() > last_offset {
                return Ok(());
            }
            if !matches!(&*self.role(), Role::Leader { epoch: e, .. } if *e == epoch) {
                // Written, and not known to be committed: not a refusal a
                // caller may retry without risking a second copy.
                return Err(Refusal::Deposed);
            }
            tokio::select! {
                _ = hw.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tokio::time::sleep_until(deadline) => return Err(Refusal::Timeout),
            }
        }
    }

    /// The leader's log end moved (an append or a flush): what the
    /// replication asks for now.
    fn leader_progress(&self, epoch: i32) -> Vec<ReplicationAction> {
        let end = visible_end(&self.read_log());
        let mut role = self.role();
        match &mut *role {
            Role::Leader {
                epoch: e,
                replication,
                ..
            } if *e == epoch => replication.on_append(end),
            _ => Vec::new(),
        }
    }

    /// Takes the leader role for `epoch` (or, at the same epoch, takes in a
    /// committed ISR and replica list). Returns true when the role changed,
    /// and what the replication asks for.
    pub(crate) fn become_leader(
        &self,
        me: u64,
        epoch: i32,
        replicas: &[u64],
        isr: &[u64],
        min_insync: usize,
        lag_max: Duration,
    ) -> (bool, Vec<ReplicationAction>) {
        // What this replica may count as its own (durable) log end, and the
        // whole log end: a follower's copied tail may not be flushed yet, and
        // records in it may have been acknowledged under the previous leader.
        let (end, log_end) = {
            let log = self.read_log();
            (visible_end(&log), log.log_end_offset())
        };
        let mut role = self.role();
        if let Role::Leader {
            epoch: e,
            replication,
            replicas: current,
            min_insync: m,
            ..
        } = &mut *role
            && *e == epoch
            && current.as_slice() == replicas
        {
            *m = min_insync;
            return (false, replication.on_isr_committed(isr));
        }
        if let Role::Follower { stop, .. } = &*role {
            stop.cancel();
        }
        // A new replica list at the same epoch (a reassignment) keeps the
        // epoch's start. Reads wait until the HW reaches it (KIP-207), so a
        // consumer never sees an end offset below an acknowledged record.
        let epoch_start = match &*role {
            Role::Leader {
                epoch: e,
                epoch_start,
                ..
            } if *e == epoch => *epoch_start,
            _ => log_end,
        };
        let hw = self.high_watermark().min(end);
        let mut replication =
            LeaderReplication::new(me, replicas, isr, end, hw, lag_max, Instant::now());
        let actions = replication.on_append(end);
        *role = Role::Leader {
            epoch,
            replication,
            min_insync,
            replicas: replicas.to_vec(),
            epoch_start,
        };
        (true, actions)
    }

    /// True when clients may read: a leader whose HW has caught up with the
    /// start of its epoch.
    pub(crate) fn serves_reads(&self) -> bool {
        match &*self.role() {
            Role::Leader { epoch_start, .. } => self.high_watermark() >= *epoch_start,
            _ => false,
        }
    }

    /// Follows `leader` at `epoch`; returns the token the new fetcher must
    /// stop on, or `None` when it already follows it.
    pub(crate) fn become_follower(&self, epoch: i32, leader: u64) -> Option<CancellationToken> {
        let mut role = self.role();
        if let Role::Follower {
            epoch: e,
            leader: l,
            ..
        } = &*role
            && *e == epoch
            && *l == leader
        {
            return None;
        }
        if let Role::Follower { stop, .. } = &*role {
            stop.cancel();
        }
        let stop = CancellationToken::new();
        *role = Role::Follower {
            epoch,
            leader,
            stop: stop.clone(),
        };
        Some(stop)
    }

    /// No leader at `epoch`: serve nothing.
    pub(crate) fn go_offline(&self, epoch: i32) {
        let mut role = self.role();
        if let Role::Follower { stop, .. } = &*role {
            stop.cancel();
        }
        *role = Role::Offline { epoch };
    }

    /// Stops any fetcher (the partition is closed or deleted).
    pub(crate) fn stop_role(&self) {
        if let Role::Follower { stop, .. } = &*self.role() {
            stop.cancel();
        }
    }

    /// The leader's periodic check (ISR members lagging too long): its
    /// epoch and what the replication asks for.
    pub(crate) fn leader_tick(&self) -> Option<(i32, Vec<ReplicationAction>)> {
        let mut role = self.role();
        let Role::Leader {
            epoch, replication, ..
        } = &mut *role
        else {
            return None;
        };
        Some((*epoch, replication.on_tick(Instant::now())))
    }

    /// An ISR proposal failed: allow another.
    pub(crate) fn isr_rejected(&self) {
        if let Role::Leader { replication, .. } = &mut *self.role() {
            replication.on_isr_rejected();
        }
    }

    /// Why a follower at `follower_epoch` may not fetch from this replica,
    /// if it may not.
    fn wrong_epoch(&self, follower_epoch: i32) -> Option<ReplicaFetch> {
        match &*self.role() {
            Role::Leader { epoch, .. } if *epoch == follower_epoch => None,
            Role::Leader { epoch, .. } => Some(ReplicaFetch::WrongEpoch { ours: Some(*epoch) }),
            _ => Some(ReplicaFetch::WrongEpoch { ours: None }),
        }
    }

    /// The leader's side of a follower's fetch, first step: checks the
    /// epoch and the follower's log against ours and records its progress.
    /// Returns what the replication asks for (to be carried out before the
    /// read waits, so that the HW moves at once), or the answer when the
    /// fetch goes no further.
    pub(crate) fn replica_fetched(
        &self,
        follower: u64,
        follower_epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    ) -> Result<Vec<ReplicationAction>, ReplicaFetch> {
        if let Some(wrong) = self.wrong_epoch(follower_epoch) {
            return Err(wrong);
        }
        {
            let log = self.read_log();
            let end = log.log_end_offset();
            let diverging = if last_fetched_epoch >= 0 {
                match log.end_offset_for_epoch(last_fetched_epoch) {
                    Some((e, epoch_end))
                        if e == last_fetched_epoch && epoch_end >= fetch_offset =>
                    {
                        None
                    }
                    Some((_, epoch_end)) => Some(epoch_end.min(fetch_offset)),
                    None => Some(log.log_start_offset().min(fetch_offset)),
                }
            } else {
                None
            };
            if let Some(end_offset) = diverging {
                return Err(ReplicaFetch::Diverging { end_offset });
            }
            if fetch_offset > end {
                return Err(ReplicaFetch::Diverging { end_offset: end });
            }
        }
        Ok(match &mut *self.role() {
            Role::Leader { replication, .. } => {
                replication.on_fetch(follower, fetch_offset, Instant::now())
            }
            _ => Vec::new(),
        })
    }

    /// The leader's side of a follower's fetch, second step: waits up to
    /// `max_wait` for data past `fetch_offset`, and reads from there to our
    /// log end.
    pub(crate) async fn replica_read(
        &self,
        follower_epoch: i32,
        fetch_offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> StorageResult<ReplicaFetch> {
        let mut leo = self.leo.subscribe();
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let end = *leo.borrow_and_update();
            if end > fetch_offset || tokio::time::Instant::now() >= deadline {
                break;
            }
            if self.wrong_epoch(follower_epoch).is_some() {
                break;
            }
            tokio::select! {
                _ = leo.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        let log = self.read_log();
        let start = log.log_start_offset();
        if fetch_offset < start {
            // Retention removed what the follower wants: it starts over
            // from our log start.
            return Ok(ReplicaFetch::Diverging { end_offset: start });
        }
        let read = log.read(fetch_offset, max_bytes, log.log_end_offset())?;
        Ok(ReplicaFetch::Records {
            data: read.data,
            high_watermark: self.high_watermark(),
            log_start_offset: start,
        })
    }

    /// The follower's side: appends the leader's batches as they are.
    pub(crate) fn append_replicated(&self, data: Bytes) -> StorageResult<()> {
        let mut log = self.write_log();
        let appended = log.append_replicated(data, now_ms());
        // Whatever was appended before an error counts.
        self.leo.send_replace(log.log_end_offset());
        appended.map(|_| ())
    }

    /// The follower's side: cuts the log at `offset` (a diverged tail).
    pub(crate) fn truncate_to(&self, offset: i64) -> StorageResult<()> {
        let mut log = self.write_log();
        log.truncate_to(offset)?;
        let end = log.log_end_offset();
        self.leo.send_replace(end);
        drop(log);
        self.hw.send_if_modified(|hw| {
            if *hw > end {
                *hw = end;
                true
            } else {
                false
            }
        });
        Ok(())
    }

    /// The follower's side: the leader's HW, capped by what we have.
    pub(crate) fn follow_hw(&self, leader_hw: i64) {
        let end = visible_end(&self.read_log());
        self.advance_hw(leader_hw.min(end));
    }

    /// The log end a follower reports (what it has durably, per policy),
    /// and the epoch of its last batch.
    pub(crate) fn follower_position(&self) -> (i64, i32) {
        let log = self.read_log();
        (
            log.log_end_offset(),
            log.leader_epochs().last().map_or(-1, |(e, _)| *e),
        )
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
            self.publish_leo(&log);
        }
        if let Ok(mut last) = self.last_flush.lock() {
            *last = Instant::now();
        }
        Ok(())
    }

    /// A new leader makes the tail it copied as a follower durable, so that
    /// it counts toward the HW (its reads wait for that). Returns what the
    /// replication asks for then, as an append does (nothing when this
    /// node no longer leads at `epoch`).
    pub(crate) async fn flush_copied_tail(
        &self,
        epoch: i32,
        metrics: &Metrics,
    ) -> StorageResult<Vec<ReplicationAction>> {
        let end = self.read_log().log_end_offset();
        self.flush_to(end, metrics).await?;
        Ok(self.leader_progress(epoch))
    }

    /// A follower of an fsync-per-batch topic: flushes what it copied, at
    /// most every [`FOLLOWER_FLUSH_EVERY`] (from the background tick).
    pub(crate) async fn flush_follower(&self, metrics: &Metrics) -> StorageResult<()> {
        if !matches!(&*self.role(), Role::Follower { .. }) {
            return Ok(());
        }
        self.flush_after(metrics, |log| {
            log.flushes_every_batch().then_some(FOLLOWER_FLUSH_EVERY)
        })
        .await
    }

    /// For `flush.ms` topics: flushes when the interval has passed.
    pub(crate) async fn flush_if_due(&self, metrics: &Metrics) -> StorageResult<()> {
        self.flush_after(metrics, |log| match log.config().flush {
            FlushPolicy::Interval(every) => Some(every),
            _ => None,
        })
        .await
    }

    /// Flushes unflushed data when the last flush is older than what
    /// `interval` says for this log (`None`: never here).
    async fn flush_after(
        &self,
        metrics: &Metrics,
        interval: impl Fn(&Log) -> Option<std::time::Duration>,
    ) -> StorageResult<()> {
        let since = self
            .last_flush
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        let (due, end) = {
            let log = self.read_log();
            (
                interval(&log).is_some_and(|every| since >= every)
                    && log.recovery_point() < log.log_end_offset(),
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
        self.publish_leo(&log);
        Ok(())
    }
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
