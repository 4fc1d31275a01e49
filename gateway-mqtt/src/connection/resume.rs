//! Resuming a stored session: its subscriptions and QoS 2 receipts, its
//! in-flight messages sent again, then the QoS 1/2 messages it missed while
//! offline, read from the log between its cursors and the dispatch
//! positions it registered at.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::debug;

use super::Connection;
use crate::hub::now_ms;
use crate::message::Message;
use crate::registry::{Delivery, Positions};
use crate::session::{LogRef, SessionState};
use crate::store;
use crate::topic;
use crate::trie::SubOptions;

/// The subscriptions of `subs` a message matches (shared ones aside):
/// (max QoS, retain-as-published, subscription ids).
fn match_own(
    subs: &BTreeMap<String, SubOptions>,
    msg: &Message,
    client: &str,
) -> Option<(u8, bool, Vec<u32>)> {
    let mut found: Option<(u8, bool, Vec<u32>)> = None;
    for (filter, o) in subs {
        if !matches!(topic::parse_shared(filter), Ok(None)) || !topic::matches(filter, &msg.topic) {
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
    /// messages (sent again), then what it missed while offline.
    pub(super) async fn resume(&mut self, state: SessionState, positions: &Positions) {
        for s in &state.subscriptions {
            self.subs.insert(s.filter.clone(), s.options());
        }
        self.incoming_qos2 = state.incoming_qos2.iter().copied().collect();
        let mut kept = Vec::new();
        for o in &state.outgoing {
            let at = &o.at;
            let records = store::read_range(
                &self.gw.broker,
                &at.topic,
                at.partition,
                at.offset,
                Some(at.offset + 1),
            )
            .await
            .unwrap_or_default();
            if let Some(msg) = records.first().and_then(Message::from_record) {
                kept.push((o.clone(), Arc::new(msg)));
            }
        }
        self.outbound.restore(kept);
        let now = now_ms();
        let metrics = &self.gw.metrics;
        self.outbound.resend(now, metrics, &mut self.out);
        // What it missed is an offline queue: at most `max_queued_messages`
        // of it (the oldest) is delivered; the rest is dropped and counted.
        let mut backlog = 0usize;
        for ((topic, partition), end) in positions {
            let from = state.cursor(topic, *partition).unwrap_or(*end);
            if from >= *end {
                continue;
            }
            let records =
                match store::read_range(&self.gw.broker, topic, *partition, from, Some(*end)).await
                {
                    Ok(r) => r,
                    Err(e) => {
                        debug!(topic, partition, "missed messages not read: {e}");
                        continue;
                    }
                };
            for r in records {
                let Some(msg) = Message::from_record(&r) else {
                    continue;
                };
                let Some((qos, rap, ids)) = match_own(&self.subs, &msg, &self.client_id) else {
                    continue;
                };
                let qos = qos.min(msg.qos);
                if qos == 0 {
                    continue;
                }
                let retain = rap && msg.retain;
                if backlog >= self.gw.config.max_queued_messages {
                    self.gw.metrics.dropped(crate::metrics::Dropped::QueueFull);
                    continue;
                }
                backlog += 1;
                let d = Delivery {
                    msg: Arc::new(msg),
                    at: LogRef {
                        topic: topic.clone(),
                        partition: *partition,
                        offset: r.offset,
                    },
                    qos,
                    retain,
                    subscription_ids: ids,
                };
                self.outbound
                    .deliver(d, now, &self.gw.metrics, &mut self.out);
            }
        }
    }
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
            found
        };
        let Some(((topic, partition), from, at)) = next else {
            self.catching_up = false;
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
            let Some((qos, rap, ids)) = match_own(&self.subs, &msg, &self.client_id) else {
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
