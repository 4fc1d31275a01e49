//! Resuming a stored session: its subscriptions and QoS 2 receipts, its
//! in-flight messages sent again, then the QoS 1/2 messages it missed while
//! offline, read from the log between its cursors and the dispatch
//! positions it registered at.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tracing::debug;

use super::Connection;
use fjord_broker::{OffsetSpec, Route};

use crate::hub::{Hub, now_ms};
use crate::message::Message;
use crate::registry::{Delivery, Positions};
use crate::session::{LogRef, SessionState, StoredOutgoing, Unsure};
use crate::store;
use crate::topic;
use crate::trie::SubOptions;

/// The subscriptions of `subs` a message matches (shared ones only with
/// `shared`): (max QoS, retain-as-published, subscription ids).
fn match_own(
    subs: &BTreeMap<String, SubOptions>,
    msg: &Message,
    client: &str,
    shared: bool,
) -> Option<(u8, bool, Vec<u32>)> {
    let mut found: Option<(u8, bool, Vec<u32>)> = None;
    for (filter, o) in subs {
        let matched = match topic::parse_shared(filter) {
            Ok(None) => topic::matches(filter, &msg.topic),
            Ok(Some((_, inner))) if shared => topic::matches(inner, &msg.topic),
            _ => false,
        };
        if !matched {
            continue;
        }
        if o.no_local && msg.from == client {
            continue;
        }
        let f = found.get_or_insert((0, false, Vec::new()));
        f.0 = f.0.max(o.qos);
        f.1 |= o.retain_as_published;
        f.2.extend(o.subscription_id);
    }
    found
}

impl Connection {
    /// Restores a stored session: subscriptions, QoS 2 receipts, in-flight
    /// messages (sent again), then what it missed while offline. False
    /// when the QoS 2 messages an earlier connection may have stored could
    /// not be looked for: the client is then refused (server unavailable)
    /// and tries again, rather than have a retransmission stored twice.
    pub(super) async fn resume(&mut self, state: SessionState, positions: &Positions) -> bool {
        let mut complete = true;
        for s in &state.subscriptions {
            self.subs.insert(s.filter.clone(), s.options());
        }
        // A member of a shared group that moved (its node died, or handed
        // it over) was given the messages of its node's share until the
        // other nodes heard it left: it reads them from the log again (at
        // least once for the group).
        self.resume_shared = state.online || state.handed_over;
        self.incoming_qos2 = state.incoming_qos2.iter().copied().collect();
        let unsure = state.receipts_to_find();
        if !unsure.is_empty() {
            match self.stored_unknown(&unsure, positions).await {
                Some(stored) => self.incoming_qos2.extend(stored),
                // Kept for the next connection (the state this one saves
                // carries them); this one is refused.
                None => {
                    self.inherited = unsure;
                    complete = false;
                }
            }
        }
        self.completed_qos2 = state.completed_qos2.iter().cloned().collect();
        let kept = in_flight_messages(&self.gw, &state.outgoing).await;
        let mut sent_again: BTreeSet<LogRef> = kept.iter().map(|(o, _)| o.at.clone()).collect();
        sent_again.extend(self.completed_qos2.iter().cloned());
        self.outbound.restore(kept);
        let now = now_ms();
        let metrics = &self.gw.metrics;
        self.outbound.resend(now, metrics, &mut self.out);
        self.missed(&state, positions, &sent_again, now).await;
        complete
    }

    /// Delivers the QoS 1/2 messages the session missed: per partition,
    /// from its cursor to where it registered. At most
    /// `max_queued_messages` are taken now. Beyond that, a session that
    /// went offline (its client left) drops the rest and counts them, as
    /// an offline queue does; one whose node died while its client was
    /// connected loses nothing: from the first message past the bound it
    /// is behind on the partition and reads the rest from the log as the
    /// client makes room.
    async fn missed(
        &mut self,
        state: &SessionState,
        positions: &Positions,
        sent_again: &BTreeSet<LogRef>,
        now: i64,
    ) {
        let mut taken = 0usize;
        let mut behind = Vec::new();
        for ((topic, partition), end) in positions {
            let key = (topic.clone(), *partition);
            let mut from = state.cursor(topic, *partition).unwrap_or(*end);
            while from < *end {
                if taken >= self.gw.config.max_queued_messages && state.online {
                    behind.push((key.clone(), from));
                    break;
                }
                let to = (*end).min(from + MISSED_STEP);
                let records =
                    match store::read_range(&self.gw.broker, topic, *partition, from, Some(to))
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => {
                            debug!(topic, partition, "missed messages not read: {e}");
                            break;
                        }
                    };
                from = to;
                for r in records {
                    let full = taken >= self.gw.config.max_queued_messages;
                    if full && state.online {
                        from = r.offset;
                        break;
                    }
                    let at = LogRef {
                        topic: topic.clone(),
                        partition: *partition,
                        offset: r.offset,
                    };
                    // In flight when the session was saved: sent again.
                    if sent_again.contains(&at) {
                        continue;
                    }
                    let Some(d) = self.missed_delivery(&r, at) else {
                        continue;
                    };
                    if full {
                        self.gw.metrics.dropped(crate::metrics::Dropped::QueueFull);
                        continue;
                    }
                    taken += 1;
                    self.outbound
                        .deliver(d, now, &self.gw.metrics, &mut self.out);
                }
            }
        }
        // Shared matches are read again only up to where it registered.
        self.resume_shared &= !behind.is_empty();
        if behind.is_empty() {
            return;
        }
        let mut reg = self.gw.registry();
        if let Some(me) = reg
            .online
            .get_mut(&self.client_id)
            .filter(|o| o.connection == self.id)
        {
            for (key, from) in behind {
                // Live deliveries from `from` on are the catch-up's (those
                // already on their way too: see `live`).
                self.resumed_below.insert(key.clone(), from);
                self.from_log.insert(key.clone(), from);
                me.behind.insert(key, from);
            }
            self.wake.notify_one();
        }
    }

    /// The delivery of a missed record to this session, if its own
    /// subscriptions take it at QoS 1 or 2.
    fn missed_delivery(&self, r: &fjord_broker::Record, at: LogRef) -> Option<Delivery> {
        let msg = Message::from_record(r)?;
        let (qos, rap, ids) = match_own(&self.subs, &msg, &self.client_id, self.resume_shared)?;
        let qos = qos.min(msg.qos);
        (qos > 0).then(|| Delivery {
            retain: rap && msg.retain,
            msg: Arc::new(msg),
            at,
            qos,
            subscription_ids: ids,
        })
    }
}

/// Missed records read from the log per step of a resume.
const MISSED_STEP: i64 = 4096;

/// How long a resume waits for what it must read to find QoS 2 receipts
/// (a partition's leader to answer, the records it holds to commit), at
/// most, and how often it looks again.
const RECEIPTS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const RECEIPTS_POLL: std::time::Duration = std::time::Duration::from_millis(50);

impl Connection {
    /// The packet ids of the QoS 2 messages earlier connections of the
    /// session stored without their records saying so (see
    /// [`SessionState::receipts_to_find`]), found in the log by their
    /// receipts between the given cursors and the log's end. The client
    /// sends them again, unreleased: they are acknowledged, not stored
    /// twice. `None` when the log could not be read far enough in time:
    /// the connection is then refused (see `resume`).
    async fn stored_unknown(&self, unsure: &[Unsure], positions: &Positions) -> Option<Vec<u16>> {
        let mut cursors = Positions::new();
        for (t, p, o) in unsure.iter().flat_map(|u| &u.from) {
            let c = cursors.entry((t.clone(), *p)).or_insert(*o);
            *c = (*c).min(*o);
        }
        let deadline = tokio::time::Instant::now() + RECEIPTS_WAIT;
        let (mut ids, mut scanned) = (Vec::new(), Some(0));
        for (key, end) in positions {
            if let (Some(from), Some(n)) = (cursors.get(key), scanned) {
                let read = self.scan_receipts(unsure, key, (*from, *end), deadline, &mut ids);
                scanned = read.await.map(|r| n + r);
            }
        }
        debug!(
            client = %self.client_id,
            ?unsure,
            ?scanned,
            found = ?ids,
            "QoS 2 messages stored unknown to the session's record"
        );
        scanned.map(|_| ids)
    }

    /// Reads one partition from `from` for the receipts in `unsure` (their
    /// packet ids go to `ids`): in steps up to `end` (the dispatch
    /// position), then the rest as it commits, up to what the leader held
    /// when the scan began (a write of a node that died may commit only
    /// now). Returns the records read; `None` when that end is not
    /// reached by `deadline`.
    async fn scan_receipts(
        &self,
        unsure: &[Unsure],
        (topic, partition): &(String, u32),
        (mut from, end): (i64, i64),
        deadline: tokio::time::Instant,
        ids: &mut Vec<u16>,
    ) -> Option<usize> {
        let log_end = self.leader_log_end(topic, *partition, deadline).await?;
        let mut scanned = 0;
        loop {
            let to = (from < end).then(|| end.min(from + MISSED_STEP));
            match store::read_range(&self.gw.broker, topic, *partition, from, to).await {
                Ok(records) => {
                    scanned += records.len();
                    ids.extend(
                        records
                            .iter()
                            .filter_map(|r| self.unknown_receipt(unsure, r)),
                    );
                    from = match to {
                        Some(to) => to,
                        None => records.last().map_or(from, |r| r.offset + 1),
                    };
                    if to.is_some() {
                        continue;
                    }
                    if from >= log_end {
                        return Some(scanned);
                    }
                }
                Err(e) => debug!(topic, partition, "QoS 2 receipts not read yet: {e}"),
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(RECEIPTS_POLL).await;
        }
    }

    /// The log end of `topic`-`partition` on its leader, asked again until
    /// `deadline` while the leader does not answer.
    async fn leader_log_end(
        &self,
        topic: &str,
        partition: u32,
        deadline: tokio::time::Instant,
    ) -> Option<i64> {
        loop {
            let asked = self
                .gw
                .broker
                .list_offset(topic, partition, OffsetSpec::LogEnd, Route::Leader)
                .await;
            match asked {
                Ok(end) => return Some(end.map_or(0, |(o, _)| o)),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    debug!(topic, partition, "log end not read yet: {e}");
                    tokio::time::sleep(RECEIPTS_POLL).await;
                }
                Err(_) => return None,
            }
        }
    }

    /// The packet id in `r`'s receipt, if it is one of `unsure`.
    fn unknown_receipt(&self, unsure: &[Unsure], r: &fjord_broker::Record) -> Option<u16> {
        let m = Message::from_record(r)?;
        let receipt = m.receipt?;
        let wanted = unsure
            .iter()
            .any(|u| u.epoch == receipt.epoch && receipt.seq >= u.seq);
        (m.from == self.client_id && wanted).then_some(receipt.packet_id)
    }
}

/// The messages of a saved session's in-flight list, read from the log
/// with one read per partition (from its first to its last such offset);
/// those gone from the log (retention) are left out.
async fn in_flight_messages(
    gw: &Hub,
    outgoing: &[StoredOutgoing],
) -> Vec<(StoredOutgoing, Arc<Message>)> {
    let mut spans: BTreeMap<(&str, u32), (i64, i64)> = BTreeMap::new();
    for o in outgoing {
        let span = spans
            .entry((o.at.topic.as_str(), o.at.partition))
            .or_insert((o.at.offset, o.at.offset));
        span.0 = span.0.min(o.at.offset);
        span.1 = span.1.max(o.at.offset);
    }
    let mut found: HashMap<LogRef, Arc<Message>> = HashMap::new();
    for ((topic, partition), (first, last)) in spans {
        let records =
            match store::read_range(&gw.broker, topic, partition, first, Some(last + 1)).await {
                Ok(r) => r,
                Err(e) => {
                    debug!(topic, partition, "in-flight messages not read: {e}");
                    continue;
                }
            };
        for r in records {
            if let Some(msg) = Message::from_record(&r) {
                let at = LogRef {
                    topic: topic.to_string(),
                    partition,
                    offset: r.offset,
                };
                found.insert(at, Arc::new(msg));
            }
        }
    }
    outgoing
        .iter()
        .filter_map(|o| found.get(&o.at).map(|m| (o.clone(), Arc::clone(m))))
        .collect()
}

/// Missed messages read per step of a catch-up, at most.
const CATCH_UP_STEP: usize = 500;

impl Connection {
    /// One step of reading a partition this session fell behind on from
    /// the log: as many messages as the client has room for, then back to
    /// the packet loop (acknowledgements wake the next step). When the
    /// session reaches the dispatcher's position, it goes live again under
    /// the registry lock, so nothing is skipped or seen twice.
    pub(super) async fn catch_up(&mut self) {
        let room = self.outbound.room().min(CATCH_UP_STEP);
        let next = {
            let mut reg = self.gw.registry();
            let crate::registry::Registry {
                online, positions, ..
            } = &mut *reg;
            let Some(me) = online
                .get_mut(&self.client_id)
                .filter(|o| o.connection == self.id)
            else {
                return;
            };
            let mut found = None;
            me.behind.retain(|key, from| {
                let at = positions.get(key).copied().unwrap_or(*from);
                if *from >= at {
                    return false;
                }
                if found.is_none() {
                    found = Some((key.clone(), *from, at));
                }
                true
            });
            self.from_log.retain(|key, _| me.behind.contains_key(key));
            found
        };
        let Some(((topic, partition), from, at)) = next else {
            self.catching_up = false;
            self.resume_shared = false;
            return;
        };
        self.catching_up = true;
        if room == 0 {
            return;
        }
        let to = at.min(from + room as i64);
        let records =
            match store::read_range(&self.gw.broker, &topic, partition, from, Some(to)).await {
                Ok(r) => r,
                Err(e) => {
                    debug!(topic, partition, "catching up failed: {e}");
                    return;
                }
            };
        let now = now_ms();
        for r in &records {
            let at = LogRef {
                topic: topic.clone(),
                partition,
                offset: r.offset,
            };
            if self.resumed(&at) {
                continue;
            }
            let Some(msg) = Message::from_record(r) else {
                continue;
            };
            let Some((qos, rap, ids)) =
                match_own(&self.subs, &msg, &self.client_id, self.resume_shared)
            else {
                continue;
            };
            let retain = rap && msg.retain;
            let d = Delivery {
                qos: qos.min(msg.qos),
                msg: Arc::new(msg),
                at,
                retain,
                subscription_ids: ids,
            };
            self.outbound
                .deliver(d, now, &self.gw.metrics, &mut self.out);
        }
        let done_to = records.last().map_or(to, |r| r.offset + 1).max(to.min(at));
        if let Some(me) = self
            .gw
            .registry()
            .online
            .get_mut(&self.client_id)
            .filter(|o| o.connection == self.id)
            && let Some(from) = me.behind.get_mut(&(topic, partition))
        {
            *from = done_to;
        }
        // Go on (or go live) at the next turn of the loop.
        self.wake.notify_one();
    }
}
