//! Tailing the log: the dispatchers that read every partition of the
//! mapped log topics and fan each message out to the online sessions it
//! matches, and the followers of the gateway's internal topics.
//!
//! A dispatcher per partition starts at the partition's end when the hub
//! opens (wherever its leader is) and reads on with long-poll fetches; what
//! it read is recorded in the registry's `positions` (and the partition's
//! end in `ends`), so a new subscription knows which messages it must not
//! receive (see [`Hub::undispatched`]). A session whose queue is full is
//! marked behind on that partition and catches up from the log itself.
//!
//! # Concurrency
//! Every dispatcher and follower is a task of the hub's tracker and stops
//! at shutdown. A dispatcher holds the registry lock only while it fans a
//! fetched batch out (never across an `.await`); deliveries go to sessions
//! with `try_send`, so a slow client never stalls a dispatcher.
//!
//! # Errors
//! A leader change is retried quietly; other fetch errors are logged and
//! retried. An offset gone to retention moves the reader to the log start;
//! a batch that does not decode is logged and skipped.

use std::sync::Arc;
use std::time::Duration;

use fjord_broker::{FetchRequest, OffsetSpec};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::hub::Hub;
use crate::message::Message;
use crate::metrics::Dropped;
use crate::registry::{Delivery, Registry};
use crate::session::LogRef;
use crate::store::RETAINED_TOPIC;
use crate::{Error, Result};

impl Hub {
    /// Starts one dispatcher per partition of every mapped log topic, at
    /// the partition's current end (wherever its leader is).
    pub(crate) async fn start_dispatchers(self: &Arc<Self>) -> Result<()> {
        let mut wanted = Vec::new();
        for (topic, count) in &self.partitions {
            for partition in 0..*count {
                wanted.push((topic.clone(), partition));
            }
        }
        let found = futures::future::join_all(wanted.into_iter().map(|(topic, partition)| {
            let hub = Arc::clone(self);
            async move {
                let start = hub.end_of(&topic, partition).await;
                (topic, partition, start)
            }
        }))
        .await;
        for (topic, partition, start) in found {
            let Some(start) = start else {
                return Err(Error::Broker(fjord_broker::Error::ShuttingDown));
            };
            self.registry()
                .positions
                .insert((topic.clone(), partition), start);
            let hub = Arc::clone(self);
            self.tracker
                .spawn(async move { hub.dispatch(topic, partition, start).await });
        }
        Ok(())
    }

    /// The end of a partition once it has a leader (`None` on shutdown).
    async fn end_of(&self, topic: &str, partition: u32) -> Option<i64> {
        let mut warned = false;
        loop {
            match self
                .broker
                .list_offset_anywhere(topic, partition, OffsetSpec::Latest)
                .await
            {
                Ok(found) => return Some(found.map_or(0, |(o, _)| o)),
                Err(e) if !warned => {
                    warn!(
                        topic,
                        partition, "MQTT dispatch waits for the partition: {e}"
                    );
                    warned = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Tails one partition and hands each message to its subscribers.
    async fn dispatch(self: Arc<Self>, topic: String, partition: u32, mut offset: i64) {
        loop {
            let fetched = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = self.broker.fetch_anywhere(FetchRequest {
                    topic: topic.clone(),
                    partition,
                    offset,
                    max_bytes: 1 << 20,
                    min_bytes: 1,
                    max_wait: Duration::from_millis(500),
                }) => r,
            };
            let fetched = match fetched {
                Ok(f) => f,
                Err(fjord_broker::Error::OffsetOutOfRange { earliest, .. })
                    if earliest > offset =>
                {
                    offset = earliest;
                    continue;
                }
                Err(e) => {
                    // A leader change: quiet, and soon retried.
                    let moving = matches!(
                        e,
                        fjord_broker::Error::NotLeader { .. }
                            | fjord_broker::Error::LeaderNotReady { .. }
                    );
                    if moving {
                        debug!(topic, partition, "MQTT dispatch: {e}");
                    } else {
                        warn!(topic, partition, "MQTT dispatch: {e}");
                    }
                    let pause = Duration::from_millis(if moving { 100 } else { 500 });
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            self.registry()
                .ends
                .insert((topic.clone(), partition), fetched.high_watermark);
            if fetched.records.is_empty() {
                continue;
            }
            let records = match fjord_broker::decode_records(fetched.records, offset) {
                Ok(r) => r,
                Err(e) => {
                    warn!(topic, partition, offset, "MQTT dispatch skips a batch: {e}");
                    offset = fetched.next_offset.max(offset + 1);
                    continue;
                }
            };
            let messages: Vec<(i64, Arc<Message>)> = records
                .iter()
                .filter_map(|r| Message::from_record(r).map(|m| (r.offset, Arc::new(m))))
                .collect();
            let next = fetched.next_offset.max(offset);
            {
                let mut reg = self.registry();
                for (at, msg) in messages {
                    self.fan_out(&mut reg, &topic, partition, at, msg);
                }
                reg.positions.insert((topic.clone(), partition), next);
            }
            offset = next;
        }
    }

    fn fan_out(
        &self,
        reg: &mut Registry,
        topic: &str,
        partition: u32,
        offset: i64,
        msg: Arc<Message>,
    ) {
        let Registry { trie, online, .. } = reg;
        let matched = trie.matches(&msg.topic, |k| online.get(k).is_some_and(|o| !o.closing));
        for m in matched {
            if m.no_local && m.key == msg.from {
                continue;
            }
            if let Some(share) = &m.share
                && !self.delivers_share(share, partition, offset)
            {
                continue;
            }
            let Some(session) = online.get_mut(&m.key).filter(|o| !o.closing) else {
                continue;
            };
            let key = (topic.to_string(), partition);
            if !m.shared && session.behind.contains_key(&key) {
                continue;
            }
            let qos = msg.qos.min(m.qos);
            let d = Delivery {
                msg: Arc::clone(&msg),
                at: LogRef {
                    topic: topic.to_string(),
                    partition,
                    offset,
                },
                qos,
                retain: m.retain_as_published && msg.retain,
                subscription_ids: m.subscription_ids,
            };
            match session.tx.try_send(d) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) if !m.shared => {
                    session.behind.insert(key, offset);
                    session.wake.notify_one();
                }
                Err(_) => self.metrics.dropped(Dropped::QueueFull),
            }
        }
    }

    /// Partitions whose committed end is ahead of their dispatcher: the
    /// end of each (what a subscription made now must not receive).
    ///
    /// The end of a partition led by another node is the one the
    /// dispatcher last heard from its leader.
    pub(crate) fn undispatched(&self) -> crate::registry::Positions {
        let (positions, ends) = {
            let reg = self.registry();
            (reg.positions.clone(), reg.ends.clone())
        };
        positions
            .into_iter()
            .filter_map(|((topic, partition), at)| {
                let end = match self
                    .broker
                    .list_offset(&topic, partition, OffsetSpec::Latest)
                {
                    Ok(Some((end, _))) => end,
                    Ok(None) => return None,
                    Err(_) => *ends.get(&(topic.clone(), partition))?,
                };
                (end > at).then_some(((topic, partition), end))
            })
            .collect()
    }

    /// Follows a one-partition internal topic from `offset`, applying each
    /// record in log order (whichever node wrote it).
    pub(crate) fn follow(self: &Arc<Self>, topic: &'static str, mut offset: i64) {
        let hub = Arc::clone(self);
        self.tracker.spawn(async move {
            loop {
                let fetched = tokio::select! {
                    _ = hub.shutdown.cancelled() => return,
                    r = hub.broker.fetch_anywhere(FetchRequest {
                        topic: topic.to_string(),
                        partition: 0,
                        offset,
                        max_bytes: 1 << 20,
                        min_bytes: 1,
                        max_wait: Duration::from_millis(500),
                    }) => r,
                };
                let fetched = match fetched {
                    Ok(f) => f,
                    Err(fjord_broker::Error::OffsetOutOfRange { earliest, .. })
                        if earliest > offset =>
                    {
                        offset = earliest;
                        continue;
                    }
                    Err(e) => {
                        debug!(topic, "following: {e}");
                        tokio::select! {
                            _ = hub.shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        }
                    }
                };
                let next = fetched.next_offset.max(offset);
                match fjord_broker::decode_records(fetched.records, offset) {
                    Ok(records) => {
                        for r in &records {
                            if topic == RETAINED_TOPIC {
                                hub.apply_retained(r);
                            } else {
                                hub.apply_session(r);
                            }
                        }
                    }
                    Err(e) => warn!(topic, offset, "a batch is skipped: {e}"),
                }
                offset = next;
                hub.applied(topic).send_replace(offset);
            }
        });
    }

    /// How far the follower of `topic` (`__mqtt_retained` or
    /// `__mqtt_sessions`) has applied it.
    pub(crate) fn applied(&self, topic: &str) -> &watch::Sender<i64> {
        if topic == RETAINED_TOPIC {
            &self.retained_applied
        } else {
            &self.sessions_applied
        }
    }

    /// Waits (at most `limit`) until `topic` has been applied up to `end`.
    pub(crate) async fn await_applied(&self, topic: &str, end: i64, limit: Duration) {
        let mut rx = self.applied(topic).subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|at| *at >= end)).await;
    }
}
