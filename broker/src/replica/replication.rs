//! A partition leader's view of its followers, sans-IO: the high watermark,
//! ISR changes to propose, and when an `acks=all` produce is done.
//!
//! The leader feeds it events (a follower fetched from offset X, the leader
//! appended, time passed, the controller committed a new ISR) and acts on
//! what it returns. It reads no clock and does no I/O.
//!
//! # Rules (Kafka's)
//! - A follower fetching from offset X has every offset below X.
//! - The high watermark is the smallest log end over the ISR (the leader
//!   included) and never moves backwards.
//! - A follower in the ISR that has not caught up to the leader's log end
//!   for `replica.lag.time.max` is proposed out; one outside that fetches
//!   from at least the high watermark is proposed back in. ISR changes take
//!   effect only when the controller commits them.
//! - `acks=all` needs the ISR to hold at least `min.insync.replicas` when the
//!   batch is appended and completes when the high watermark passes it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What the leader should do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplicationAction {
    /// Readers may now see offsets below this.
    AdvanceHighWatermark(i64),
    /// Ask the controller to commit this ISR (with the current leader epoch).
    ProposeIsr(Vec<u64>),
}

/// Whether an `acks=all` produce may be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckCheck {
    Ok,
    /// The ISR is smaller than `min.insync.replicas`.
    NotEnoughReplicas {
        isr: usize,
        required: usize,
    },
}

#[derive(Debug, Clone)]
struct Follower {
    log_end: i64,
    last_caught_up: Instant,
}

/// The leader's replication state for one partition.
#[derive(Debug, Clone)]
pub(crate) struct LeaderReplication {
    leader: u64,
    isr: BTreeSet<u64>,
    followers: BTreeMap<u64, Follower>,
    leader_log_end: i64,
    high_watermark: i64,
    lag_max: Duration,
    pending: Option<Vec<u64>>,
}

impl LeaderReplication {
    /// Starts leading with `replicas` and the committed `isr`; followers
    /// count as caught up as of `now`.
    pub(crate) fn new(
        leader: u64,
        replicas: &[u64],
        isr: &[u64],
        log_end: i64,
        high_watermark: i64,
        lag_max: Duration,
        now: Instant,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|r| **r != leader)
            .map(|r| {
                (
                    *r,
                    Follower {
                        log_end: high_watermark.min(log_end),
                        last_caught_up: now,
                    },
                )
            })
            .collect();
        LeaderReplication {
            leader,
            isr: isr.iter().copied().collect(),
            followers,
            leader_log_end: log_end,
            high_watermark,
            lag_max,
            pending: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    #[cfg(test)]
    pub(crate) fn isr(&self) -> Vec<u64> {
        self.isr.iter().copied().collect()
    }

    fn recompute(&mut self, out: &mut Vec<ReplicationAction>) {
        // The "maximal" ISR: a follower proposed into the ISR counts at
        // once, so the HW never passes a replica that may become a leader
        // the moment the proposal commits.
        let mut members = self.isr.clone();
        members.extend(self.pending.iter().flatten().copied());
        let min = members
            .iter()
            .map(|id| {
                if *id == self.leader {
                    self.leader_log_end
                } else {
                    self.followers
                        .get(id)
                        .map_or(self.high_watermark, |f| f.log_end)
                }
            })
            .min()
            .unwrap_or(self.leader_log_end);
        if min > self.high_watermark {
            self.high_watermark = min;
            out.push(ReplicationAction::AdvanceHighWatermark(min));
        }
    }

    fn propose(&mut self, isr: BTreeSet<u64>, out: &mut Vec<ReplicationAction>) {
        let isr: Vec<u64> = isr.into_iter().collect();
        if self.pending.as_ref() != Some(&isr) {
            self.pending = Some(isr.clone());
            out.push(ReplicationAction::ProposeIsr(isr));
        }
    }

    /// The leader appended; its log now ends at `log_end`.
    pub(crate) fn on_append(&mut self, log_end: i64) -> Vec<ReplicationAction> {
        let mut out = Vec::new();
        self.leader_log_end = log_end;
        self.recompute(&mut out);
        out
    }

    /// `follower` fetched from `offset`.
    pub(crate) fn on_fetch(
        &mut self,
        follower: u64,
        offset: i64,
        now: Instant,
    ) -> Vec<ReplicationAction> {
        let mut out = Vec::new();
        let Some(state) = self.followers.get_mut(&follower) else {
            return out;
        };
        // Kept as reported: the follower may be ahead of what the leader
        // has flushed (it copies up to the leader's log end); the HW takes
        // the minimum with the leader's own end anyway.
        state.log_end = offset;
        if offset >= self.leader_log_end {
            state.last_caught_up = now;
        }
        let log_end = state.log_end;
        self.recompute(&mut out);
        if !self.isr.contains(&follower) && log_end >= self.high_watermark {
            let mut grown = self.isr.clone();
            grown.insert(follower);
            self.propose(grown, &mut out);
        }
        out
    }

    /// Time passed: followers lagging longer than the limit are proposed out.
    pub(crate) fn on_tick(&mut self, now: Instant) -> Vec<ReplicationAction> {
        let mut out = Vec::new();
        let lagging: Vec<u64> = self
            .followers
            .iter()
            .filter(|(id, f)| {
                self.isr.contains(id)
                    && now.saturating_duration_since(f.last_caught_up) > self.lag_max
            })
            .map(|(id, _)| *id)
            .collect();
        if !lagging.is_empty() {
            let shrunk = self
                .isr
                .iter()
                .copied()
                .filter(|id| !lagging.contains(id))
                .collect();
            self.propose(shrunk, &mut out);
        }
        out
    }

    /// The controller committed `isr`.
    pub(crate) fn on_isr_committed(&mut self, isr: &[u64]) -> Vec<ReplicationAction> {
        let mut out = Vec::new();
        self.isr = isr.iter().copied().collect();
        self.isr.insert(self.leader);
        self.pending = None;
        self.recompute(&mut out);
        out
    }

    /// The last ISR proposal was refused or lost: allow proposing again.
    pub(crate) fn on_isr_rejected(&mut self) {
        self.pending = None;
    }

    /// May an `acks=all` batch be appended now?
    pub(crate) fn check_acks_all(&self, min_insync: usize) -> AckCheck {
        if self.isr.len() < min_insync {
            AckCheck::NotEnoughReplicas {
                isr: self.isr.len(),
                required: min_insync,
            }
        } else {
            AckCheck::Ok
        }
    }

    /// Is a batch ending at `last_offset` committed (below the HW)?
    #[cfg(test)]
    pub(crate) fn is_committed(&self, last_offset: i64) -> bool {
        self.high_watermark > last_offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: Duration = Duration::from_secs(10);

    #[test]
    fn the_high_watermark_is_the_minimum_over_the_isr() {
        let t = Instant::now();
        let mut r = LeaderReplication::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, LAG, t);
        assert!(r.on_append(10).is_empty(), "followers have nothing yet");
        assert!(r.on_fetch(2, 10, t).is_empty());
        assert_eq!(
            r.on_fetch(3, 6, t),
            vec![ReplicationAction::AdvanceHighWatermark(6)]
        );
        assert!(r.is_committed(5) && !r.is_committed(6));
        assert_eq!(
            r.on_fetch(3, 10, t),
            vec![ReplicationAction::AdvanceHighWatermark(10)]
        );
        // A fetch from an older offset never moves the HW back.
        r.on_fetch(3, 4, t);
        assert_eq!(r.high_watermark(), 10);
    }

    #[test]
    fn a_lagging_follower_is_proposed_out_and_a_caught_up_one_back_in() {
        let t = Instant::now();
        let mut r = LeaderReplication::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, LAG, t);
        r.on_append(100);
        r.on_fetch(2, 100, t + Duration::from_secs(1));
        r.on_fetch(3, 50, t + Duration::from_secs(1));
        // 3 has not caught up for longer than the limit.
        let later = t + Duration::from_secs(11);
        r.on_fetch(2, 100, later);
        assert_eq!(
            r.on_tick(later),
            vec![ReplicationAction::ProposeIsr(vec![1, 2])]
        );
        assert!(r.on_tick(later).is_empty(), "one proposal at a time");
        // Not in effect until committed: the HW still waits for 3.
        assert_eq!(r.high_watermark(), 50);
        assert_eq!(
            r.on_isr_committed(&[1, 2]),
            vec![ReplicationAction::AdvanceHighWatermark(100)]
        );
        // 3 catches up to the HW: proposed back in.
        assert_eq!(
            r.on_fetch(3, 100, later),
            vec![ReplicationAction::ProposeIsr(vec![1, 2, 3])]
        );
        r.on_isr_committed(&[1, 2, 3]);
        assert_eq!(r.isr(), vec![1, 2, 3]);
    }

    #[test]
    fn acks_all_needs_min_insync_replicas() {
        let t = Instant::now();
        let mut r = LeaderReplication::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, LAG, t);
        assert_eq!(r.check_acks_all(2), AckCheck::Ok);
        r.on_isr_committed(&[1]);
        assert_eq!(
            r.check_acks_all(2),
            AckCheck::NotEnoughReplicas {
                isr: 1,
                required: 2
            }
        );
        // Alone in the ISR, the leader's own appends are committed at once.
        assert_eq!(
            r.on_append(5),
            vec![ReplicationAction::AdvanceHighWatermark(5)]
        );
    }
}
