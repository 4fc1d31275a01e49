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
//! Each reader is a broker [`Tail`]: a leader change is retried quietly,
//! other fetch errors are logged and retried, an offset gone to retention
//! moves the reader to the log start, and a batch that does not decode is
//! logged and skipped.

use std::sync::Arc;
use std::time::Duration;

use fjord_broker::{OffsetSpec, Route, Tail, TailBatch};
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
                .list_offset(topic, partition, OffsetSpec::Latest, Route::Leader)
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

    /// The next batch of a tail (the broker's tail handles leader moves and
    /// the log start moving); `None` on shutdown.
    async fn next_of(&self, tail: &mut Tail) -> Option<TailBatch> {
        loop {
            let read = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                r = tail.next() => r,
            };
            match read {
                Ok(batch) => return Some(batch),
                Err(fjord_broker::Error::ShuttingDown) => return None,
                Err(e) => {
                    // The topic is gone (deleted); it may come back.
                    debug!(
                        topic = tail.topic(),
                        partition = tail.partition(),
                        "MQTT tail: {e}"
                    );
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    }

    /// Tails one partition and hands each message to its subscribers.
    async fn dispatch(self: Arc<Self>, topic: String, partition: u32, start: i64) {
        let mut tail = self.broker.tail(&topic, partition, start);
        while let Some(batch) = self.next_of(&mut tail).await {
            let messages: Vec<(i64, Arc<Message>)> = batch
                .records
                .iter()
                .filter_map(|r| Message::from_record(r).map(|m| (r.offset, Arc::new(m))))
                .collect();
            let mut reg = self.registry();
            if batch.high_watermark >= 0 {
                reg.ends
                    .insert((topic.clone(), partition), batch.high_watermark);
            }
            for (at, msg) in messages {
                self.fan_out(&mut reg, &topic, partition, at, msg);
            }
            reg.positions
                .insert((topic.clone(), partition), tail.position());
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
    pub(crate) async fn undispatched(&self) -> crate::registry::Positions {
        let (positions, ends) = {
            let reg = self.registry();
            (reg.positions.clone(), reg.ends.clone())
        };
        let mut behind = crate::registry::Positions::new();
        for ((topic, partition), at) in positions {
            let end = match self
                .broker
                .list_offset(&topic, partition, OffsetSpec::Latest, Route::Local)
                .await
            {
                Ok(Some((end, _))) => end,
                Ok(None) => continue,
                Err(_) => match ends.get(&(topic.clone(), partition)) {
                    Some(end) => *end,
                    None => continue,
                },
            };
            if end > at {
                behind.insert((topic, partition), end);
            }
        }
        behind
    }

    /// Follows a one-partition internal topic from `offset`, applying each
    /// record in log order (whichever node wrote it).
    pub(crate) fn follow(self: &Arc<Self>, topic: &'static str, offset: i64) {
        let hub = Arc::clone(self);
        self.tracker.spawn(async move {
            let mut tail = hub.broker.tail(topic, 0, offset);
            while let Some(batch) = hub.next_of(&mut tail).await {
                for r in &batch.records {
                    if topic == RETAINED_TOPIC {
                        hub.apply_retained(r);
                    } else {
                        hub.apply_session(r);
                    }
                }
                hub.applied(topic).send_replace(tail.position());
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
    pub(crate) async fn await_applied(&self, topic: &str, end: i64, limit: Duration) -> bool {
        let mut rx = self.applied(topic).subscribe();
        matches!(
            tokio::time::timeout(limit, rx.wait_for(|at| *at >= end)).await,
            Ok(Ok(_))
        )
    }
}
