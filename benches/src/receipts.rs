//! What a load run's receivers saw, for the MQTT and AMQP load generators.
//!
//! Every message starts with a stamp: its send time (u64 ns since the run
//! began, big-endian, taken just before the publish call), then its
//! sequence number, then zeros to the payload size. A receiver (an MQTT
//! subscriber, an AMQP consumer) reads each stamp: a sequence number seen
//! before is a duplicate, one below the highest so far is out of order, and
//! every new one adds its publish call → receipt latency to a histogram.
//! The run's figures add up what its receivers saw.

use std::time::Instant;

use anyhow::Result;
use hdrhistogram::Histogram;

use crate::stats::{median, ms, thousands};

/// A payload of `size` bytes (at least 16) stamped with the time now and
/// `seq`.
pub(crate) fn stamp(size: usize, seq: u64, base: Instant) -> Vec<u8> {
    let mut payload = vec![0u8; size];
    payload[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_be_bytes());
    payload[8..16].copy_from_slice(&seq.to_be_bytes());
    payload
}

/// A stamp a receiver could not read.
#[derive(Debug)]
pub(crate) enum BadStamp {
    /// The payload is shorter than a stamp: its length.
    Short(usize),
    /// A sequence number past the run's messages.
    OutOfRange(u64),
}

impl BadStamp {
    /// What is wrong, calling the payload `what` ("payload", "body").
    pub(crate) fn describe(&self, what: &str) -> String {
        match self {
            BadStamp::Short(len) => format!("a {len}-byte {what}"),
            BadStamp::OutOfRange(seq) => format!("sequence number {seq} out of range"),
        }
    }
}

/// What one receiver saw, or all of a run's receivers added up.
pub(crate) struct Receipts {
    /// Publish call → receipt, in µs.
    histogram: Histogram<u64>,
    /// Per sequence number: received yet (a receiver's own).
    seen: Vec<bool>,
    highest: Option<u64>,
    /// Distinct messages received.
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
    /// Time of the last receipt, ns since the run began.
    last_ns: u64,
}

impl Receipts {
    /// A receiver of `messages` numbered messages, or (0) a run's totals;
    /// the last receipt is `since_ns` until there is one.
    pub(crate) fn new(messages: u64, since_ns: u64) -> Result<Self> {
        Ok(Receipts {
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            seen: vec![false; messages as usize],
            highest: None,
            received: 0,
            duplicates: 0,
            out_of_order: 0,
            last_ns: since_ns,
        })
    }

    /// Records `payload`, received at `now` (ns since the run began): true
    /// for a message not received before.
    pub(crate) fn record(&mut self, payload: &[u8], now: u64) -> Result<bool, BadStamp> {
        let field = |at: usize| {
            payload
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        let (Some(sent), Some(seq)) = (field(0), field(8)) else {
            return Err(BadStamp::Short(payload.len()));
        };
        let Some(slot) = self.seen.get_mut(seq as usize) else {
            return Err(BadStamp::OutOfRange(seq));
        };
        if *slot {
            self.duplicates += 1;
            return Ok(false);
        }
        *slot = true;
        if self.highest.is_some_and(|h| seq < h) {
            self.out_of_order += 1;
        }
        self.highest = self.highest.max(Some(seq));
        self.histogram
            .saturating_record(now.saturating_sub(sent) / 1_000);
        self.received += 1;
        self.last_ns = now;
        Ok(true)
    }

    /// Adds what another receiver saw.
    pub(crate) fn add(&mut self, other: &Receipts) -> Result<()> {
        self.histogram.add(&other.histogram)?;
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.last_ns = self.last_ns.max(other.last_ns);
        Ok(())
    }

    /// The run's figures: `expected` messages, the first published at
    /// `start_ns`.
    pub(crate) fn delivered(&self, start_ns: u64, expected: u64) -> Delivered {
        let seconds = (self.last_ns.saturating_sub(start_ns)) as f64 / 1e9;
        Delivered {
            msgs_per_s: self.received as f64 / seconds.max(1e-9),
            p50_us: self.histogram.value_at_quantile(0.50),
            p99_us: self.histogram.value_at_quantile(0.99),
            received: self.received,
            expected,
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            seconds,
        }
    }
}

/// What a run delivered: throughput (messages received by all receivers /
/// last receipt − first publish), latency, and what was lost, duplicated
/// or reordered.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub msgs_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Distinct messages received, of `expected`.
    pub received: u64,
    pub expected: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub seconds: f64,
}

impl Delivered {
    /// Throughput (right-aligned in `width`), latency, received of
    /// expected and the time, then each non-zero count of `counts` (what
    /// was lost, duplicated, reordered, then the caller's own): the start
    /// of a run's line, its parenthesis left open.
    pub fn describe(&self, width: usize, counts: &[(u64, &str)]) -> String {
        let mut s = format!(
            "{:>width$} msg/s  p50 {:>8}  p99 {:>8}  ({}/{} received in {:.2} s",
            thousands(self.msgs_per_s.round() as u64),
            ms(self.p50_us as f64),
            ms(self.p99_us as f64),
            thousands(self.received),
            thousands(self.expected),
            self.seconds
        );
        let own = [
            (self.expected.saturating_sub(self.received), "lost"),
            (self.duplicates, "duplicates"),
            (self.out_of_order, "out of order"),
        ];
        for (n, what) in own.iter().chain(counts) {
            if *n > 0 {
                s += &format!(", {} {what}", thousands(*n));
            }
        }
        s
    }
}

/// Median throughput, p50 and p99 (µs) of successful runs.
pub fn medians<R: AsRef<Delivered>>(runs: &[R]) -> Option<(f64, f64, f64)> {
    if runs.is_empty() {
        return None;
    }
    let pick =
        |f: fn(&Delivered) -> f64| median(&runs.iter().map(|r| f(r.as_ref())).collect::<Vec<_>>());
    Some((
        pick(|r| r.msgs_per_s),
        pick(|r| r.p50_us as f64),
        pick(|r| r.p99_us as f64),
    ))
}
