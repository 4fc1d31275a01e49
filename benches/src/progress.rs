//! A load run's progress while its clients work: counters per client, and
//! the watch that fails a run in which nothing moves for too long or that
//! runs past its time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// `n` counters at zero, one per client.
pub(crate) fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// The sum of `counters` now.
pub(crate) fn sum(counters: &[AtomicU64]) -> u64 {
    counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// Watches (messages done by publishers, received by receivers) as a run
/// goes.
pub(crate) struct Watch {
    stall: Duration,
    timeout_secs: u64,
    deadline: Instant,
    last_change: Instant,
    last_seen: (u64, u64),
}

impl Watch {
    /// A run may not stand still for `stall_secs` nor last more than
    /// `timeout_secs`, from now.
    pub(crate) fn new(stall_secs: u64, timeout_secs: u64) -> Watch {
        Watch {
            stall: Duration::from_secs(stall_secs),
            timeout_secs,
            deadline: Instant::now() + Duration::from_secs(timeout_secs),
            last_change: Instant::now(),
            last_seen: (0, 0),
        }
    }

    /// Takes note of (done, received) now.
    pub(crate) fn saw(&mut self, now: (u64, u64)) {
        if now != self.last_seen {
            self.last_seen = now;
            self.last_change = Instant::now();
        }
    }

    /// How long (done, received) have stood still.
    pub(crate) fn still_for(&self) -> Duration {
        self.last_change.elapsed()
    }

    /// Fails a run that stood still for the stall time ("nothing `done` or
    /// received") or ran past its time; `how_far` says where it got.
    pub(crate) fn check(&self, done: &str, how_far: impl Fn() -> String) -> Result<()> {
        if self.still_for() >= self.stall {
            bail!(
                "stalled: nothing {done} or received for {} s; {}",
                self.stall.as_secs(),
                how_far()
            );
        }
        if Instant::now() > self.deadline {
            bail!("timed out after {} s; {}", self.timeout_secs, how_far());
        }
        Ok(())
    }
}
