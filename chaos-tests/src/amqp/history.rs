//! What the AMQP clients saw, and the checker that judges it.
//!
//! Every publish attempt is its own message: `p<publisher>-<seq>-<attempt>`
//! (message id and body), `seq` numbering the publisher's messages and
//! `attempt` counting its publishes of that message (one not confirmed
//! before its connection was lost, or nacked, is published again as a new
//! attempt). A history holds, per publisher, its attempts in the order it
//! made them and which of them were confirmed or nacked; per consumer,
//! every delivery and every acknowledgement it sent, stamped with a
//! run-wide event counter ([`AmqpHistory::tick`]).
//!
//! # When an acknowledgement counts
//! A `basic.ack` has no reply: one sent just before a connection is lost
//! may never have arrived. An acknowledgement *arrived* once a later
//! request on the same channel was answered (consumers send `basic.qos`
//! for that: the server handles a channel's frames in order), or its
//! connection was closed cleanly; it is *stored* once a later
//! `channel.close` was answered (the gateway stores a closing channel's
//! acknowledgements before its close-ok).
//!
//! # Anomalies
//! - **missing**: a confirmed attempt no consumer acknowledged. An
//!   acknowledgement counts here even if it is not known to have arrived:
//!   one that did not arrive leaves the message unacknowledged, to be
//!   given again (and acknowledged again) after the channel goes; one that
//!   arrived just before the connection was lost settles it for good.
//! - **redelivered unflagged**: a second (or later) delivery of an attempt
//!   without `redelivered`.
//! - **acknowledged, delivered again**: a delivery after an
//!   acknowledgement of the attempt was stored. (One after an arrived
//!   acknowledgement that was not known stored is counted, not failed:
//!   the gateway's node may have died before storing it.)
//! - **never published**: an id no publisher made, or from another queue
//!   than its attempt's.
//! - **out of order**: within one consumer channel, a delivery without
//!   `redelivered` of an attempt made before another of the same publisher
//!   to the same queue that the channel was given earlier without it.

use std::collections::{BTreeMap, BTreeSet};

/// One publish attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: String,
    /// The queue's index (`q<index>`).
    pub queue: usize,
}

/// One publisher's record.
#[derive(Debug, Clone, Default)]
pub struct PublisherLog {
    pub id: usize,
    /// Every attempt, in the order it was published.
    pub attempts: Vec<Attempt>,
    pub confirmed: BTreeSet<String>,
    pub nacked: BTreeSet<String>,
    /// Connections lost and made again.
    pub reconnects: usize,
}

/// One message given to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub id: String,
    pub queue: usize,
    pub redelivered: bool,
    /// The consumer's channel (numbered from 0 per consumer).
    pub session: usize,
    pub at: u64,
}

/// One acknowledgement sent, with when it was known arrived and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub id: String,
    pub session: usize,
    pub arrived: Option<u64>,
    pub stored: Option<u64>,
}

/// One consumer's record.
#[derive(Debug, Clone, Default)]
pub struct ConsumerLog {
    pub name: String,
    pub deliveries: Vec<Delivered>,
    pub acks: Vec<Acked>,
    /// Channels it dropped on purpose, with unacknowledged messages.
    pub kills: usize,
    pub reconnects: usize,
}

/// Everything recorded during a run.
#[derive(Debug, Clone, Default)]
pub struct AmqpHistory {
    pub publishers: Vec<PublisherLog>,
    pub consumers: Vec<ConsumerLog>,
    /// The run-wide event counter.
    pub clock: u64,
}

impl AmqpHistory {
    /// The next event time.
    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// The id of publisher `p`'s message `seq`, attempt `attempt`.
pub fn message_id(p: usize, seq: u64, attempt: u32) -> String {
    format!("p{p}-{seq}-{attempt}")
}

/// The name of queue `index`.
pub fn queue_name(index: usize) -> String {
    format!("q{index}")
}

/// The checker's verdict.
#[derive(Debug, Default, Clone)]
pub struct AmqpReport {
    pub attempts: usize,
    pub confirmed: usize,
    pub nacked: usize,
    pub deliveries: usize,
    pub flagged: usize,
    pub repeats: usize,
    pub kills: usize,
    pub reconnects: usize,
    /// Delivered again after an acknowledgement that arrived but was not
    /// known stored (allowed: see the module docs).
    pub after_unstored_ack: usize,
    pub missing: Vec<String>,
    pub unflagged: Vec<String>,
    pub acked_again: Vec<String>,
    pub never_published: Vec<String>,
    pub out_of_order: Vec<String>,
}

impl AmqpReport {
    /// No anomaly of any kind.
    pub fn ok(&self) -> bool {
        self.anomalies().next().is_none()
    }

    /// Every anomaly, a line each.
    pub fn anomalies(&self) -> impl Iterator<Item = &String> {
        self.missing
            .iter()
            .chain(&self.unflagged)
            .chain(&self.acked_again)
            .chain(&self.never_published)
            .chain(&self.out_of_order)
    }

    /// A summary table for the terminal.
    pub fn table(&self) -> String {
        let rows = [
            ("publish attempts", self.attempts, true),
            ("confirmed (basic.ack)", self.confirmed, true),
            ("nacked (basic.nack)", self.nacked, true),
            ("deliveries to consumers", self.deliveries, true),
            ("deliveries with redelivered", self.flagged, true),
            ("attempts delivered again", self.repeats, true),
            ("again after an unstored ack", self.after_unstored_ack, true),
            ("consumer channels killed", self.kills, true),
            ("client reconnects", self.reconnects, true),
            ("missing confirmed messages", self.missing.len(), false),
            ("redelivered without the flag", self.unflagged.len(), false),
            (
                "acknowledged, delivered again",
                self.acked_again.len(),
                false,
            ),
            ("never published", self.never_published.len(), false),
            ("out of order", self.out_of_order.len(), false),
        ];
        let mut out = String::new();
        for (name, n, info) in rows {
            let verdict = match (info, n) {
                (true, _) => "",
                (false, 0) => "ok",
                (false, _) => "FAIL",
            };
            out.push_str(&format!("{name:<32} {n:>10}  {verdict}\n"));
        }
        out
    }
}

/// Where each attempt was made: id → (publisher, index in its attempts,
/// queue).
type Made = BTreeMap<String, (usize, usize, usize)>;

/// Judges a history.
pub fn check(history: &AmqpHistory) -> AmqpReport {
    let mut made = Made::new();
    for p in &history.publishers {
        for (i, a) in p.attempts.iter().enumerate() {
            made.insert(a.id.clone(), (p.id, i, a.queue));
        }
    }
    let mut report = AmqpReport {
        attempts: made.len(),
        confirmed: history.publishers.iter().map(|p| p.confirmed.len()).sum(),
        nacked: history.publishers.iter().map(|p| p.nacked.len()).sum(),
        kills: history.consumers.iter().map(|c| c.kills).sum(),
        reconnects: history
            .publishers
            .iter()
            .map(|p| p.reconnects)
            .sum::<usize>()
            + history
                .consumers
                .iter()
                .map(|c| c.reconnects)
                .sum::<usize>(),
        ..AmqpReport::default()
    };
    let acks = acknowledgements(history);
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for c in &history.consumers {
        scan(c, &made, &mut report);
    }
    // Every delivery of every consumer, in the order received.
    let mut all: Vec<(&str, &Delivered)> = history
        .consumers
        .iter()
        .flat_map(|c| c.deliveries.iter().map(move |d| (c.name.as_str(), d)))
        .collect();
    all.sort_by_key(|(_, d)| d.at);
    for (who, d) in all {
        report.deliveries += 1;
        report.flagged += usize::from(d.redelivered);
        if !seen.insert(d.id.as_str()) {
            report.repeats += 1;
            if !d.redelivered {
                report.unflagged.push(format!(
                    "{who} (channel {}): {} given again without redelivered",
                    d.session, d.id
                ));
            }
        }
        let Some((arrived, stored)) = acks.get(d.id.as_str()) else {
            continue;
        };
        if stored.is_some_and(|s| s < d.at) {
            report.acked_again.push(format!(
                "{who} (channel {}): {} given again after its acknowledgement was stored",
                d.session, d.id
            ));
        } else if arrived.is_some_and(|a| a < d.at) {
            report.after_unstored_ack += 1;
        }
    }
    let sent: BTreeSet<&str> = history
        .consumers
        .iter()
        .flat_map(|c| &c.acks)
        .map(|a| a.id.as_str())
        .collect();
    for p in &history.publishers {
        for id in &p.confirmed {
            if !sent.contains(id.as_str()) {
                let given = if seen.contains(id.as_str()) {
                    "delivered"
                } else {
                    "never delivered"
                };
                report
                    .missing
                    .push(format!("{id} confirmed, never acknowledged ({given})"));
            }
        }
    }
    report
}

/// Per attempt: the first time an acknowledgement of it was known arrived,
/// and stored.
fn acknowledgements(history: &AmqpHistory) -> BTreeMap<&str, (Option<u64>, Option<u64>)> {
    let mut out: BTreeMap<&str, (Option<u64>, Option<u64>)> = BTreeMap::new();
    let earliest = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    for a in history.consumers.iter().flat_map(|c| &c.acks) {
        let e = out.entry(a.id.as_str()).or_default();
        *e = (earliest(e.0, a.arrived), earliest(e.1, a.stored));
    }
    out
}

/// Walks one consumer's deliveries: ids never published (or from another
/// queue) and reorderings within a channel.
fn scan(c: &ConsumerLog, made: &Made, report: &mut AmqpReport) {
    // (channel, queue, publisher) → the latest attempt index given
    // without redelivered.
    let mut latest: BTreeMap<(usize, usize, usize), usize> = BTreeMap::new();
    for d in &c.deliveries {
        let Some(&(publisher, index, queue)) = made.get(&d.id).filter(|m| m.2 == d.queue) else {
            report.never_published.push(format!(
                "{} (channel {}): {} from {}, never published there",
                c.name,
                d.session,
                d.id,
                queue_name(d.queue)
            ));
            continue;
        };
        if d.redelivered {
            continue;
        }
        let top = latest.entry((d.session, queue, publisher)).or_insert(index);
        if index < *top {
            report.out_of_order.push(format!(
                "{} (channel {}): {} given after a later attempt of p{publisher} to {}",
                c.name,
                d.session,
                d.id,
                queue_name(queue)
            ));
        }
        *top = (*top).max(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Publisher 0: messages 0..6 to queues 0 and 1 alternately, all
    /// confirmed but the last; one consumer given and acknowledging (stored)
    /// every confirmed one, in order.
    fn history() -> AmqpHistory {
        let mut h = AmqpHistory::default();
        let attempts: Vec<Attempt> = (0..6)
            .map(|seq| Attempt {
                id: message_id(0, seq, 0),
                queue: (seq % 2) as usize,
            })
            .collect();
        let confirmed = attempts[..5].iter().map(|a| a.id.clone()).collect();
        let mut c = ConsumerLog {
            name: "c0".into(),
            ..ConsumerLog::default()
        };
        for a in &attempts[..5] {
            deliver(&mut h.clock, &mut c, a, false, 0);
        }
        for a in &attempts[..5] {
            ack(&mut h.clock, &mut c, &a.id, true);
        }
        h.publishers.push(PublisherLog {
            id: 0,
            attempts,
            confirmed,
            ..PublisherLog::default()
        });
        h.consumers.push(c);
        h
    }

    fn deliver(clock: &mut u64, c: &mut ConsumerLog, a: &Attempt, redelivered: bool, s: usize) {
        *clock += 1;
        c.deliveries.push(Delivered {
            id: a.id.clone(),
            queue: a.queue,
            redelivered,
            session: s,
            at: *clock,
        });
    }

    fn ack(clock: &mut u64, c: &mut ConsumerLog, id: &str, stored: bool) {
        *clock += 1;
        c.acks.push(Acked {
            id: id.into(),
            session: 0,
            arrived: Some(*clock),
            stored: stored.then_some(*clock),
        });
    }

    fn attempt(h: &AmqpHistory, i: usize) -> Attempt {
        h.publishers[0].attempts[i].clone()
    }

    #[test]
    fn a_clean_history_passes() {
        let r = check(&history());
        assert!(r.ok(), "{}", r.table());
        assert_eq!((r.attempts, r.confirmed, r.deliveries), (6, 5, 5));
        assert!(!r.table().contains("FAIL"));
    }

    #[test]
    fn a_flagged_redelivery_and_a_resend_as_a_new_attempt_pass() {
        let mut h = history();
        // Attempt 2 given again (its first channel went before acking it).
        let a2 = attempt(&h, 2);
        h.consumers[0].acks.retain(|a| a.id != a2.id);
        let (clock, c) = (&mut h.clock, &mut h.consumers[0]);
        deliver(clock, c, &a2, true, 1);
        ack(clock, c, &a2.id, true);
        // Message 5 was not confirmed: published again, confirmed, given.
        let again = Attempt {
            id: message_id(0, 5, 1),
            queue: 1,
        };
        deliver(clock, c, &again, false, 1);
        ack(clock, c, &again.id, false);
        h.publishers[0].attempts.push(again.clone());
        h.publishers[0].confirmed.insert(again.id);
        let r = check(&h);
        assert!(r.ok(), "{}", r.table());
        assert_eq!((r.repeats, r.flagged), (1, 1));
    }

    #[test]
    fn a_second_delivery_without_the_flag_is_caught() {
        let mut h = history();
        let a1 = attempt(&h, 1);
        deliver(&mut h.clock, &mut h.consumers[0], &a1, false, 1);
        let r = check(&h);
        assert_eq!(r.unflagged.len(), 1, "{r:#?}");
        assert!(r.unflagged[0].contains("p0-1-0"));
    }

    #[test]
    fn a_confirmed_message_never_acknowledged_is_caught() {
        let mut h = history();
        // An acknowledgement not known to have arrived counts.
        for a in &mut h.consumers[0].acks {
            a.arrived = None;
            a.stored = None;
        }
        assert!(check(&h).missing.is_empty());
        h.consumers[0].acks.retain(|a| a.id != "p0-3-0");
        let r = check(&h);
        assert_eq!(
            r.missing,
            vec!["p0-3-0 confirmed, never acknowledged (delivered)"]
        );
    }

    #[test]
    fn a_delivery_after_a_stored_acknowledgement_is_caught_after_an_unstored_one_counted() {
        let mut h = history();
        let a0 = attempt(&h, 0);
        let (clock, c) = (&mut h.clock, &mut h.consumers[0]);
        deliver(clock, c, &a0, true, 1);
        let r = check(&h);
        assert_eq!(r.acked_again.len(), 1, "{r:#?}");

        let mut h = history();
        for a in &mut h.consumers[0].acks {
            a.stored = None;
        }
        let (clock, c) = (&mut h.clock, &mut h.consumers[0]);
        deliver(clock, c, &a0, true, 1);
        let r = check(&h);
        assert!(r.ok(), "{}", r.table());
        assert_eq!(r.after_unstored_ack, 1);
    }

    #[test]
    fn an_unknown_id_or_one_from_another_queue_is_caught() {
        let mut h = history();
        let mut wrong_queue = attempt(&h, 0);
        wrong_queue.queue = 1;
        let unknown = Attempt {
            id: "p9-0-0".into(),
            queue: 0,
        };
        let (clock, c) = (&mut h.clock, &mut h.consumers[0]);
        deliver(clock, c, &wrong_queue, true, 1);
        deliver(clock, c, &unknown, false, 1);
        assert_eq!(check(&h).never_published.len(), 2);
    }

    #[test]
    fn an_earlier_attempt_first_given_after_a_later_one_on_a_channel_is_caught() {
        let mut h = history();
        // Queue 0 holds attempts 0, 2, 4: 4 then 2 on a new channel.
        let (a2, a4) = (attempt(&h, 2), attempt(&h, 4));
        h.consumers[0].deliveries.clear();
        let (clock, c) = (&mut h.clock, &mut h.consumers[0]);
        deliver(clock, c, &a4, false, 0);
        deliver(clock, c, &a2, false, 0);
        let r = check(&h);
        assert_eq!(r.out_of_order.len(), 1, "{r:#?}");
        // Flagged, or on another channel: not a reordering.
        h.consumers[0].deliveries[1].session = 1;
        assert!(check(&h).out_of_order.is_empty());
    }
}
