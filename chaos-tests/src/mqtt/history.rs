//! What the MQTT clients saw, and the checker that judges it.
//!
//! A history holds, per publisher, how many numbered messages it handed to
//! its client (`p<id>-<seq>` on topic `chaos/p<id>`, `seq` from 0) and
//! which of them the server acknowledged (PUBACK at QoS 1, PUBCOMP at
//! QoS 2); per subscriber (a persistent session), every PUBLISH it was
//! given, in order, with its DUP flag and QoS.
//!
//! # Anomalies
//! - **missing**: an acknowledged message that a subscriber (or, for a
//!   shared subscription, every member of its group) never received.
//! - **QoS 2 duplicate**: a message published at QoS 2 and subscribed at
//!   QoS 2 given twice to the same session (QoS 1 allows duplicates:
//!   redeliveries and a publisher's resend of an unacknowledged message).
//! - **out of order**: a message given for the first time, without DUP,
//!   after a later message of the same publisher (a repeat of one already
//!   given is a duplicate, not a reordering; a DUP redelivery may come
//!   late). Members of a shared group are not held to an order: MQTT
//!   orders a topic's messages per session, and a member that moved is
//!   given its former node's share again, late (see the README).
//! - **never published**: a payload no publisher handed to its client (or
//!   on another topic than its publisher's).
//! - **retained and will rules**: the retained message of a retaining
//!   publisher's topic at the end is not its last acknowledged message (or
//!   a later one); the will of a connection that ended with DISCONNECT was
//!   published. (The wills of connections dropped while no fault was
//!   under way are acknowledged messages of the will publisher: missing if
//!   they never arrive.)
//! - **QoS 2 stored twice**: a QoS 2 publisher's message the log holds more
//!   than once (the publishing side of exactly once failed; a QoS 2
//!   duplicate at a subscriber then follows from it).

use std::collections::{BTreeMap, BTreeSet};

/// One publisher's record.
#[derive(Debug, Clone, Default)]
pub struct PublisherLog {
    pub id: usize,
    /// 1 or 2.
    pub qos: u8,
    /// Messages handed to the client: sequence numbers `0..published`.
    pub published: u64,
    /// Sequence numbers the server acknowledged.
    pub acked: BTreeSet<u64>,
    /// Connections lost and made again (to another node).
    pub reconnects: usize,
    /// Reconnects that found no session on the server.
    pub sessions_lost: usize,
    /// Publishes with the retain flag: the topic's retained message at the
    /// end must be the last acknowledged one or a later one.
    pub retain: bool,
    /// The retained message a new subscriber got at the end (`None`: none
    /// came).
    pub retained_at_end: Option<String>,
    /// Wills: messages that must never arrive (the will of a connection
    /// that ended with DISCONNECT).
    pub forbidden: BTreeSet<u64>,
    /// Its messages come from separate connections (wills): no order.
    pub unordered: bool,
}

/// One PUBLISH a subscriber was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub payload: String,
    pub dup: bool,
    pub qos: u8,
}

/// One subscriber's (persistent session's) record.
#[derive(Debug, Clone, Default)]
pub struct SubscriberLog {
    pub client_id: String,
    /// The subscription's QoS.
    pub qos: u8,
    /// The shared subscription group, if it is a member of one: the group
    /// as a whole must receive every acknowledged message.
    pub group: Option<String>,
    pub deliveries: Vec<Delivery>,
    pub reconnects: usize,
    pub sessions_lost: usize,
    /// QoS 2 PUBLISHes sent again before their PUBREL (not given twice).
    pub retransmissions: usize,
}

/// Everything recorded during a run.
#[derive(Debug, Clone, Default)]
pub struct MqttHistory {
    pub publishers: Vec<PublisherLog>,
    pub subscribers: Vec<SubscriberLog>,
    /// Payloads the log holds more than once, with their count (read at
    /// the end of a run).
    pub stored_again: BTreeMap<String, usize>,
}

/// The topic publisher `id` publishes to.
pub fn topic_of(id: usize) -> String {
    format!("chaos/p{id}")
}

/// The payload of publisher `id`'s message `seq`.
pub fn payload_of(id: usize, seq: u64) -> String {
    format!("p{id}-{seq}")
}

/// `(publisher, seq)` from a payload made by [`payload_of`].
pub fn parse_payload(payload: &str) -> Option<(usize, u64)> {
    let (id, seq) = payload.strip_prefix('p')?.split_once('-')?;
    Some((id.parse().ok()?, seq.parse().ok()?))
}

/// The checker's verdict.
#[derive(Debug, Default, Clone)]
pub struct MqttReport {
    pub published: u64,
    pub acked: usize,
    pub delivered: usize,
    /// Messages given again to a session at QoS 1 (allowed).
    pub duplicates: usize,
    pub dup_flagged: usize,
    pub retransmissions: usize,
    pub reconnects: usize,
    pub sessions_lost: usize,
    /// Subscriber (or `$share/<group>`) → acknowledged messages it lacks.
    pub missing: BTreeMap<String, Vec<String>>,
    pub qos2_duplicates: Vec<String>,
    pub qos2_stored_twice: Vec<String>,
    pub out_of_order: Vec<String>,
    pub never_published: Vec<String>,
    /// Retained messages and wills that broke their rules.
    pub rules: Vec<String>,
}

impl MqttReport {
    /// No anomaly of any kind.
    pub fn ok(&self) -> bool {
        self.missing.values().all(Vec::is_empty)
            && self.qos2_duplicates.is_empty()
            && self.qos2_stored_twice.is_empty()
            && self.out_of_order.is_empty()
            && self.never_published.is_empty()
            && self.rules.is_empty()
    }

    /// What the gateway promises today (see the README): every
    /// acknowledged message reaches every persistent session that is not
    /// in a shared group, in order, and nothing unpublished arrives. QoS 2
    /// duplicates after a crash of the session's node and the messages a
    /// shared group misses while its members move are reported, not
    /// counted here.
    pub fn durable(&self) -> bool {
        self.missing
            .iter()
            .filter(|(who, _)| !who.starts_with("$share/"))
            .all(|(_, lacks)| lacks.is_empty())
            && self.out_of_order.is_empty()
            && self.never_published.is_empty()
    }

    /// Acknowledged messages missing, summed over subscribers and groups.
    pub fn missing_count(&self) -> usize {
        self.missing.values().map(Vec::len).sum()
    }

    /// A summary table for the terminal.
    pub fn table(&self) -> String {
        let missing = self.missing_count();
        let rows = [
            ("messages published", self.published as usize, true),
            ("acknowledged (PUBACK/PUBCOMP)", self.acked, true),
            ("deliveries to subscribers", self.delivered, true),
            ("QoS 1 duplicates (allowed)", self.duplicates, true),
            ("deliveries with DUP set", self.dup_flagged, true),
            ("QoS 2 retransmissions", self.retransmissions, true),
            ("client reconnects", self.reconnects, true),
            ("reconnects without session", self.sessions_lost, true),
            ("missing acknowledged messages", missing, false),
            ("QoS 2 duplicates", self.qos2_duplicates.len(), false),
            ("QoS 2 stored twice", self.qos2_stored_twice.len(), false),
            ("out of order", self.out_of_order.len(), false),
            ("never published", self.never_published.len(), false),
            ("retained and will rules broken", self.rules.len(), false),
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
        for (who, lost) in self.missing.iter().filter(|(_, l)| !l.is_empty()) {
            let few: Vec<&str> = lost.iter().take(8).map(String::as_str).collect();
            out.push_str(&format!(
                "  {who} lacks {}: {}\n",
                lost.len(),
                few.join(" ")
            ));
        }
        out
    }

    /// The anomalies other than missing messages, a line each.
    pub fn anomalies(&self) -> impl Iterator<Item = &String> {
        self.qos2_duplicates
            .iter()
            .chain(&self.qos2_stored_twice)
            .chain(&self.out_of_order)
            .chain(&self.never_published)
            .chain(&self.rules)
    }
}

/// Judges a history.
pub fn check(history: &MqttHistory) -> MqttReport {
    let publishers: BTreeMap<usize, &PublisherLog> =
        history.publishers.iter().map(|p| (p.id, p)).collect();
    let mut report = MqttReport {
        published: history.publishers.iter().map(|p| p.published).sum(),
        acked: history.publishers.iter().map(|p| p.acked.len()).sum(),
        delivered: history.subscribers.iter().map(|s| s.deliveries.len()).sum(),
        retransmissions: history.subscribers.iter().map(|s| s.retransmissions).sum(),
        reconnects: history
            .publishers
            .iter()
            .map(|p| p.reconnects)
            .sum::<usize>()
            + history
                .subscribers
                .iter()
                .map(|s| s.reconnects)
                .sum::<usize>(),
        sessions_lost: history
            .publishers
            .iter()
            .map(|p| p.sessions_lost)
            .sum::<usize>()
            + history
                .subscribers
                .iter()
                .map(|s| s.sessions_lost)
                .sum::<usize>(),
        ..MqttReport::default()
    };
    let mut groups: BTreeMap<&str, BTreeSet<(usize, u64)>> = BTreeMap::new();
    for sub in &history.subscribers {
        let received = scan(sub, &publishers, &mut report);
        match &sub.group {
            Some(g) => groups.entry(g.as_str()).or_default().extend(received),
            None => {
                let lacks = lacking(&publishers, &received);
                report.missing.insert(sub.client_id.clone(), lacks);
            }
        }
    }
    for (group, received) in groups {
        let lacks = lacking(&publishers, &received);
        report.missing.insert(format!("$share/{group}"), lacks);
    }
    for p in history.publishers.iter().filter(|p| p.retain) {
        report.rules.extend(retained_rule(p));
    }
    for (payload, copies) in &history.stored_again {
        let qos2 = parse_payload(payload)
            .and_then(|(id, _)| publishers.get(&id))
            .is_some_and(|p| p.qos >= 2);
        if qos2 {
            report
                .qos2_stored_twice
                .push(format!("the log holds {payload} {copies} times"));
        }
    }
    report
}

/// What breaks the retained message rule for publisher `p`: the topic's
/// retained message at the end is its last acknowledged message or one it
/// sent after that.
fn retained_rule(p: &PublisherLog) -> Option<String> {
    let topic = topic_of(p.id);
    let last_acked = p.acked.last().copied()?;
    let Some(found) = &p.retained_at_end else {
        return Some(format!("{topic}: no retained message at the end"));
    };
    match parse_payload(found) {
        Some((id, seq)) if id == p.id && seq >= last_acked && seq < p.published => None,
        _ => Some(format!(
            "{topic}: retained {found:?} at the end, not p{}-{last_acked} or later",
            p.id
        )),
    }
}

/// The acknowledged messages not in `received`, as payloads.
fn lacking(
    publishers: &BTreeMap<usize, &PublisherLog>,
    received: &BTreeSet<(usize, u64)>,
) -> Vec<String> {
    publishers
        .values()
        .flat_map(|p| p.acked.iter().map(move |seq| (p.id, *seq)))
        .filter(|m| !received.contains(m))
        .map(|(id, seq)| payload_of(id, seq))
        .collect()
}

/// Walks one subscriber's deliveries: records duplicates, reorderings and
/// payloads never published in `report`; returns the messages it received.
fn scan(
    sub: &SubscriberLog,
    publishers: &BTreeMap<usize, &PublisherLog>,
    report: &mut MqttReport,
) -> BTreeSet<(usize, u64)> {
    let mut received = BTreeSet::new();
    // Per publisher: the highest sequence number given so far.
    let mut highest: BTreeMap<usize, u64> = BTreeMap::new();
    for (i, d) in sub.deliveries.iter().enumerate() {
        let who = &sub.client_id;
        report.dup_flagged += usize::from(d.dup);
        let Some((id, seq, publisher)) = parse_payload(&d.payload)
            .and_then(|(id, seq)| Some((id, seq, *publishers.get(&id)?)))
            .filter(|(id, seq, p)| *seq < p.published && d.topic == topic_of(*id))
        else {
            report.never_published.push(format!(
                "{who} #{i}: {:?} on {:?}, never published",
                d.payload, d.topic
            ));
            continue;
        };
        if publisher.forbidden.contains(&seq) {
            report.rules.push(format!(
                "{who} #{i}: {} is the will of a connection that ended with DISCONNECT",
                d.payload
            ));
        }
        if !received.insert((id, seq)) {
            if publisher.qos.min(sub.qos) >= 2 {
                report.qos2_duplicates.push(format!(
                    "{who} #{i}: {} given again at QoS 2 (dup flag {})",
                    d.payload, d.dup
                ));
            } else {
                report.duplicates += 1;
            }
            continue;
        }
        let top = highest.entry(id).or_insert(seq);
        if seq < *top && !d.dup && sub.group.is_none() && !publisher.unordered {
            report.out_of_order.push(format!(
                "{who} #{i}: {} first given after p{id}-{top}",
                d.payload
            ));
        }
        *top = (*top).max(seq);
    }
    received
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher(
        id: usize,
        qos: u8,
        published: u64,
        acked: impl Iterator<Item = u64>,
    ) -> PublisherLog {
        PublisherLog {
            id,
            qos,
            published,
            acked: acked.collect(),
            ..PublisherLog::default()
        }
    }

    fn delivery(id: usize, seq: u64, dup: bool) -> Delivery {
        Delivery {
            topic: topic_of(id),
            payload: payload_of(id, seq),
            dup,
            qos: 1,
        }
    }

    fn subscriber(id: &str, qos: u8, deliveries: Vec<Delivery>) -> SubscriberLog {
        SubscriberLog {
            client_id: id.into(),
            qos,
            deliveries,
            ..SubscriberLog::default()
        }
    }

    /// Publisher 0 at QoS 1 and publisher 1 at QoS 2, 0..5 each acked (5
    /// handed over, unacked); two subscribers given everything in order.
    fn history() -> MqttHistory {
        let all: Vec<Delivery> = (0..5)
            .flat_map(|seq| [delivery(0, seq, false), delivery(1, seq, false)])
            .collect();
        MqttHistory {
            publishers: vec![publisher(0, 1, 6, 0..5), publisher(1, 2, 6, 0..5)],
            subscribers: vec![subscriber("s1", 1, all.clone()), subscriber("s2", 2, all)],
            stored_again: BTreeMap::new(),
        }
    }

    #[test]
    fn the_retained_message_at_the_end_is_the_last_acknowledged_or_later() {
        let mut h = history();
        h.publishers[0].retain = true;
        // p0 sent 0..6, acknowledged 0..5.
        for (found, ok) in [
            (Some("p0-4"), true),
            (Some("p0-5"), true),
            (Some("p0-3"), false),
            (Some("p0-6"), false),
            (Some("p1-4"), false),
            (None, false),
        ] {
            h.publishers[0].retained_at_end = found.map(str::to_string);
            let r = check(&h);
            assert_eq!(r.rules.is_empty(), ok, "{found:?}: {:?}", r.rules);
            assert_eq!(r.ok(), ok);
        }
    }

    #[test]
    fn the_will_of_a_clean_disconnect_must_not_arrive() {
        let mut h = history();
        h.publishers[0].forbidden.insert(5);
        assert!(check(&h).ok());
        h.subscribers[0].deliveries.push(delivery(0, 5, false));
        let r = check(&h);
        assert!(!r.ok());
        assert!(r.rules[0].contains("p0-5 is the will"), "{:?}", r.rules);
    }

    #[test]
    fn a_qos2_message_stored_twice_fails_and_a_qos1_one_does_not() {
        let mut h = history();
        h.stored_again.insert("p0-3".into(), 2);
        assert!(check(&h).ok());
        h.stored_again.insert("p1-2".into(), 2);
        let r = check(&h);
        assert!(!r.ok());
        assert_eq!(r.qos2_stored_twice, vec!["the log holds p1-2 2 times"]);
    }

    #[test]
    fn a_clean_history_passes() {
        let r = check(&history());
        assert!(r.ok(), "{}", r.table());
        assert_eq!((r.published, r.acked, r.delivered), (12, 10, 20));
        assert!(r.table().contains("ok") && !r.table().contains("FAIL"));
    }

    #[test]
    fn redeliveries_and_qos1_duplicates_pass() {
        let mut h = history();
        let s = &mut h.subscribers[1].deliveries;
        // A DUP redelivery of what came before, a QoS 1 message twice, and
        // the unacknowledged message 5 (it may have been stored).
        s.push(delivery(0, 3, true));
        s.push(delivery(0, 4, false));
        s.push(delivery(1, 5, false));
        // Subscriber 1 at QoS 1: a QoS 2 publisher's message twice is fine.
        h.subscribers[0].deliveries.push(delivery(1, 2, true));
        let r = check(&h);
        assert!(r.ok(), "{}", r.table());
        assert_eq!((r.duplicates, r.dup_flagged), (3, 2));
    }

    #[test]
    fn an_acknowledged_message_missing_is_caught() {
        let mut h = history();
        h.subscribers[0].deliveries.retain(|d| d.payload != "p1-3");
        let r = check(&h);
        assert!(!r.ok());
        assert_eq!(r.missing["s1"], vec!["p1-3".to_string()]);
        assert!(r.missing["s2"].is_empty());
        assert_eq!(r.missing_count(), 1);
        assert!(r.table().contains("s1 lacks 1: p1-3"), "{}", r.table());
    }

    #[test]
    fn a_qos2_message_given_twice_to_a_qos2_session_is_caught() {
        let mut h = history();
        h.subscribers[1].deliveries.push(delivery(1, 1, true));
        let r = check(&h);
        assert_eq!(r.qos2_duplicates.len(), 1, "{r:#?}");
        assert!(!r.ok());
    }

    #[test]
    fn a_message_first_given_after_a_later_one_is_caught_unless_dup() {
        let mut h = history();
        let s = &mut h.subscribers[0].deliveries;
        s.retain(|d| d.payload != "p0-2");
        s.push(delivery(0, 2, false));
        let r = check(&h);
        assert_eq!(r.out_of_order.len(), 1, "{r:#?}");
        assert!(r.out_of_order[0].contains("p0-2 first given after p0-4"));

        h.subscribers[0].deliveries.last_mut().unwrap().dup = true;
        assert!(check(&h).ok());
    }

    #[test]
    fn a_message_never_published_is_caught() {
        let mut h = history();
        let s = &mut h.subscribers[0].deliveries;
        s.push(delivery(0, 6, false)); // beyond what was handed over
        s.push(delivery(7, 0, false)); // no such publisher
        let mut wrong_topic = delivery(0, 1, false);
        wrong_topic.topic = topic_of(1);
        s.push(wrong_topic);
        s.push(Delivery {
            payload: "garbage".into(),
            ..delivery(0, 0, false)
        });
        let r = check(&h);
        assert_eq!(r.never_published.len(), 4, "{r:#?}");
        assert!(!r.ok());
    }

    #[test]
    fn a_shared_group_needs_every_message_in_the_union_of_its_members() {
        let mut h = history();
        let (even, odd): (Vec<Delivery>, Vec<Delivery>) = h.subscribers[0]
            .deliveries
            .iter()
            .cloned()
            .partition(|d| parse_payload(&d.payload).is_some_and(|(_, s)| s % 2 == 0));
        for (id, part) in [("a", even), ("b", odd)] {
            let mut member = subscriber(id, 1, part);
            member.group = Some("g".into());
            h.subscribers.push(member);
        }
        let r = check(&h);
        assert!(r.ok(), "{}", r.table());
        assert!(r.missing["$share/g"].is_empty());
        assert!(!r.missing.contains_key("a"));

        h.subscribers[3].deliveries.pop();
        let r = check(&h);
        assert_eq!(r.missing["$share/g"], vec!["p1-3".to_string()]);
    }

    #[test]
    fn durable_leaves_qos2_repeats_and_shared_misses_out_but_not_a_lost_message() {
        let mut h = history();
        h.subscribers[1].deliveries.push(delivery(1, 1, true));
        let mut member = subscriber("a", 1, Vec::new());
        member.group = Some("g".into());
        h.subscribers.push(member);
        let r = check(&h);
        assert!(!r.ok() && r.durable(), "{}", r.table());

        h.subscribers[0].deliveries.retain(|d| d.payload != "p1-3");
        assert!(!check(&h).durable());
    }

    #[test]
    fn payloads_round_trip() {
        assert_eq!(parse_payload(&payload_of(2, 41)), Some((2, 41)));
        assert_eq!(parse_payload("p2"), None);
        assert_eq!(parse_payload("q2-1"), None);
    }
}
