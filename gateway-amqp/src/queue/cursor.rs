//! The task that runs a queue's cursor (see the module docs of `queue`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::{
    Broker, NewRecord, OffsetSpec, ProduceRequest, Route, Tail, TailBatch, TailRead,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::args::{DeathReason, Overflow, QueueArgs, dead_letter, message_ttl};
use super::mark::{MARK_AHEAD, Mark, stored_mark};
use super::ready::{Entry, Ready};
use super::{
    ACKS_TOPIC, Cmd, ConsumeRefused, Consumer, Delivery, Event, Housekeeping, QueueStats, Stored,
};
use crate::message::Message;
use crate::now_ms;

/// A command's part that needs the task to await.
enum Later {
    Nothing,
    Get {
        connection: u64,
        channel: u16,
        no_ack: bool,
        reply: oneshot::Sender<Option<Delivery>>,
    },
    Purge(oneshot::Sender<u32>),
    Sync(oneshot::Sender<bool>),
    Stop(oneshot::Sender<()>),
}

struct Unacked {
    connection: u64,
    channel: u16,
    consumer: Option<String>,
    message: Arc<Message>,
}

pub(super) struct Cursor {
    pub(super) broker: Broker,
    pub(super) vhost: String,
    pub(super) name: String,
    pub(super) topic: Arc<str>,
    pub(super) args: QueueArgs,
    pub(super) house: mpsc::UnboundedSender<Housekeeping>,
    pub(super) read_ahead: usize,
    /// The queue's log, followed from the next offset to read.
    pub(super) tail: Tail,
    /// Every offset below is settled.
    pub(super) floor: i64,
    /// The log end as last heard.
    pub(super) end: i64,
    pub(super) ready: Ready,
    unacked: HashMap<i64, Unacked>,
    consumers: Vec<Consumer>,
    /// Round-robin position in `consumers`.
    turn: usize,
    pub(super) stats: Arc<QueueStats>,
    /// The stored state is behind.
    dirty: bool,
    /// Last consumer, get or declare (for `x-expires`).
    last_used: i64,
    expired: bool,
    /// Offsets below it may be delivered: a stored state says so (see the
    /// module docs of `queue`).
    mark: i64,
    /// A higher mark is wanted before the next delivery.
    want_mark: bool,
    /// The mark of the run before: messages read below it may have been
    /// delivered then.
    recovered_mark: i64,
    /// The delivery-rate span: its start (ms), deliveries by then, and
    /// deliveries in the span before.
    rate_since: (i64, u64, u64),
}

/// The delivery rate is measured over the last one or two of these.
const RATE_SPAN_MS: i64 = 50;

impl Cursor {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        broker: Broker,
        vhost: String,
        name: String,
        topic: Arc<str>,
        args: QueueArgs,
        house: mpsc::UnboundedSender<Housekeeping>,
        read_ahead: usize,
        stored: &Stored,
        stats: Arc<QueueStats>,
    ) -> Cursor {
        Cursor {
            tail: broker.tail(&topic, 0, stored.next.max(stored.floor)),
            broker,
            vhost,
            name,
            topic,
            ready: Ready::new(args.max_priority),
            args,
            house,
            read_ahead: read_ahead.max(1),
            floor: stored.floor,
            end: stored.next,
            unacked: HashMap::new(),
            consumers: Vec::new(),
            turn: 0,
            stats,
            dirty: false,
            last_used: now_ms(),
            expired: false,
            rate_since: (now_ms(), 0, 0),
            mark: stored.mark,
            want_mark: false,
            recovered_mark: stored.mark,
        }
    }

    /// Adds a message read from the log (appended at `at_ms`).
    pub(super) fn add(&mut self, offset: i64, at_ms: i64, m: Message, redelivered: bool) {
        let ttl = match (self.args.message_ttl, message_ttl(&m)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.ready.insert(
            offset,
            Entry {
                message: Arc::new(m),
                redelivered,
                expires_at: ttl.map(|t| at_ms.saturating_add(t)),
            },
        );
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut fetching: Option<BoxFuture<'static, TailRead>> = None;
        let mut saving: Option<BoxFuture<'static, Option<i64>>> = None;
        loop {
            if fetching.is_none() && self.ready.len() < self.read_ahead {
                fetching = Some(self.fetch());
            }
            if saving.is_none() && (self.dirty || self.want_mark) {
                saving = Some(self.save(Mark::Ahead));
                self.dirty = false;
                self.want_mark = false;
            }
            let deadline = self.deadline();
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(mut cmd) = cmd else { return };
                    // Take whatever else is queued before dispatching.
                    loop {
                        match self.handle(cmd) {
                            Later::Nothing => {}
                            Later::Get { connection, channel, no_ack, reply } => {
                                // What was committed before the get is in
                                // the queue for it.
                                self.catch_up().await;
                                self.housekeep();
                                if self.ready.first_offset().is_some_and(|o| o >= self.mark) {
                                    if let Some(s) = saving.take() {
                                        self.stored(s.await);
                                    }
                                    let s = self.save(Mark::Ahead);
                                    self.stored(s.await);
                                }
                                let got = self.get(connection, channel, no_ack);
                                let _ = reply.send(got);
                            }
                            Later::Purge(reply) => {
                                // Everything committed before the purge goes.
                                self.catch_up().await;
                                let dropped = self.ready_count();
                                self.ready.clear();
                                let next = self.tail.position().max(self.end);
                                self.tail.seek(next);
                                self.dirty = true;
                                let _ = reply.send(u32::try_from(dropped).unwrap_or(u32::MAX));
                            }
                            Later::Sync(reply) => {
                                let stored = self.sync(saving.take()).await;
                                let _ = reply.send(stored);
                            }
                            Later::Stop(reply) => {
                                // Store the cursor, cancel the consumers.
                                if let Some(s) = saving.take() {
                                    s.await;
                                }
                                self.save(Mark::Exact).await;
                                for c in self.consumers.drain(..) {
                                    let _ = c.tx.send(Event::Cancelled { channel: c.channel, tag: c.tag });
                                }
                                let _ = reply.send(());
                                return;
                            }
                        }
                        match rx.try_recv() {
                            Ok(next) => cmd = next,
                            Err(_) => break,
                        }
                    }
                }
                r = async {
                    match fetching.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    fetching = None;
                    self.fetched(r);
                }
                m = async {
                    match saving.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    saving = None;
                    self.stored(m);
                }
                () = async {
                    match deadline {
                        Some(at) => {
                            let wait = u64::try_from(at - now_ms()).unwrap_or(0);
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                        }
                        None => std::future::pending().await,
                    }
                } => {}
            }
            self.housekeep();
            self.dispatch();
            self.publish_stats();
        }
    }

    /// The next moment something expires: a message, or the queue.
    fn deadline(&self) -> Option<i64> {
        let queue = self
            .args
            .expires
            .filter(|_| self.consumers.is_empty() && !self.expired)
            .map(|e| self.last_used.saturating_add(e));
        match (self.ready.next_expiry(), queue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expired messages go (dead-lettered if the queue says where); a
    /// queue over its length limit drops its head; an unused queue past
    /// `x-expires` asks to be deleted.
    fn housekeep(&mut self) {
        let now = now_ms();
        for (_, e) in self.ready.expired(now) {
            self.dead_letter(&e.message, DeathReason::Expired);
            self.dirty = true;
        }
        if self.args.overflow == Overflow::DropHead {
            loop {
                let over_count = self
                    .args
                    .max_length
                    .is_some_and(|max| self.ready_count() > max);
                let over_bytes = self
                    .args
                    .max_length_bytes
                    .is_some_and(|max| self.ready.bytes() > max);
                if !(over_count || over_bytes) {
                    break;
                }
                let Some((_, e)) = self.ready.pop_first() else {
                    break;
                };
                self.dead_letter(&e.message, DeathReason::MaxLen);
                self.dirty = true;
            }
        }
        if let Some(expires) = self.args.expires
            && !self.expired
            && self.consumers.is_empty()
            && now >= self.last_used.saturating_add(expires)
        {
            self.expired = true;
            let _ = self.house.send(Housekeeping::Expired {
                vhost: self.vhost.clone(),
                name: self.name.clone(),
            });
        }
    }

    fn dead_letter(&self, m: &Message, reason: DeathReason) {
        let Some(exchange) = &self.args.dead_letter_exchange else {
            return;
        };
        let now_s = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let mut out = dead_letter(m, &self.name, reason, now_s);
        let routing_key = self
            .args
            .dead_letter_routing_key
            .clone()
            .unwrap_or_else(|| m.routing_key.clone());
        out.exchange = exchange.clone();
        out.routing_key = routing_key;
        let _ = self.house.send(Housekeeping::DeadLetter {
            vhost: self.vhost.clone(),
            message: Box::new(out),
        });
    }

    /// The next read of the queue's log (see [`Tail`]).
    fn fetch(&self) -> BoxFuture<'static, TailRead> {
        self.tail.read().boxed()
    }

    /// Takes a read of the queue's log: its messages become ready.
    fn fetched(&mut self, read: TailRead) {
        match self.tail.advance(read) {
            Ok(Some(batch)) => self.take(batch),
            Ok(None) => {}
            Err(e) => debug!(queue = %self.name, "queue read: {e}"),
        }
    }

    fn take(&mut self, batch: TailBatch) {
        self.end = self.end.max(batch.high_watermark);
        for rec in batch.records {
            match Message::from_record(&rec) {
                Some(m) => {
                    let maybe = rec.offset < self.recovered_mark;
                    self.add(rec.offset, rec.timestamp_ms, m, maybe);
                }
                None => {
                    warn!(queue = %self.name, offset = rec.offset, "not a message; skipped");
                }
            }
        }
        self.dirty = true;
    }

    /// Reads what is committed but not read yet (up to twice the read-ahead).
    async fn catch_up(&mut self) {
        let Ok(Some((end, _))) = self
            .broker
            .list_offset(&self.topic, 0, OffsetSpec::Latest, Route::Leader)
            .await
        else {
            return;
        };
        self.end = self.end.max(end);
        let mut now = self.tail.clone().max_wait(Duration::ZERO);
        while now.position() < end && self.ready.len() < self.read_ahead * 2 {
            let before = now.position();
            let read = now.read().await;
            match now.advance(read) {
                Ok(Some(batch)) => self.take(batch),
                Ok(None) => {}
                Err(e) => debug!(queue = %self.name, "queue read: {e}"),
            }
            if now.position() <= before {
                break;
            }
        }
        self.tail.seek(now.position());
    }

    /// Stores the state as of now, after the save in flight (if any):
    /// true once stored, false if this node could not store it (it no
    /// longer runs the gateway).
    async fn sync(&mut self, in_flight: Option<BoxFuture<'static, Option<i64>>>) -> bool {
        let mut stored = true;
        if let Some(s) = in_flight {
            let mark = s.await;
            stored = mark.is_some();
            self.stored(mark);
        }
        // A failed save leaves its changes unstored: they go again.
        if self.dirty || !stored {
            self.dirty = false;
            let mark = self.save(Mark::Ahead).await;
            stored = mark.is_some();
            self.stored(mark);
        }
        stored
    }

    /// A save is done: with its mark, if it was stored.
    fn stored(&mut self, mark: Option<i64>) {
        if let Some(m) = mark {
            self.mark = self.mark.max(m);
        }
    }

    fn get(&mut self, connection: u64, channel: u16, no_ack: bool) -> Option<Delivery> {
        if self.ready.first_offset()? >= self.mark {
            // Not marked (its state could not be stored): not delivered.
            return None;
        }
        let (offset, e) = self.ready.pop_first()?;
        if !no_ack {
            self.unacked.insert(
                offset,
                Unacked {
                    connection,
                    channel,
                    consumer: None,
                    message: Arc::clone(&e.message),
                },
            );
        }
        self.dirty = true;
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        Some(Delivery {
            channel,
            topic: Arc::clone(&self.topic),
            consumer_tag: None,
            offset,
            redelivered: e.redelivered,
            message: e.message,
            remaining: u32::try_from(self.ready_count()).unwrap_or(u32::MAX),
            settled: no_ack,
            budgeted: false,
        })
    }

    /// Handles one command; what needs the task's awaiting comes back.
    fn handle(&mut self, cmd: Cmd) -> Later {
        match cmd {
            Cmd::Consume { consumer, reply } => {
                let exclusive_taken = self.consumers.iter().any(|c| c.exclusive);
                if exclusive_taken || (consumer.exclusive && !self.consumers.is_empty()) {
                    let _ = reply.send(Err(ConsumeRefused::Exclusive));
                } else {
                    self.consumers.push(consumer);
                    self.last_used = now_ms();
                    // Counted before consume-ok goes out (an if-unused
                    // delete right after must see it).
                    self.publish_stats();
                    let _ = reply.send(Ok(()));
                }
            }
            Cmd::Cancel {
                connection,
                channel,
                tag,
            } => {
                self.consumers.retain(|c| {
                    !(c.connection == connection && c.channel == channel && c.tag == tag)
                });
                self.last_used = now_ms();
            }
            Cmd::Ack { offsets } => {
                for o in offsets {
                    if self.unacked.remove(&o).is_some() {
                        self.stats.acked.fetch_add(1, Ordering::Relaxed);
                        self.dirty = true;
                    }
                }
            }
            Cmd::Reject { offsets, requeue } => {
                for o in offsets {
                    if let Some(u) = self.unacked.remove(&o) {
                        if requeue {
                            self.requeue(o, u.message);
                        } else {
                            self.dead_letter(&u.message, DeathReason::Rejected);
                        }
                        self.dirty = true;
                    }
                }
            }
            Cmd::Release {
                connection,
                channel,
            } => {
                self.consumers
                    .retain(|c| !(c.connection == connection && c.channel == channel));
                self.requeue_channel(connection, channel);
                self.last_used = now_ms();
            }
            Cmd::Recover {
                connection,
                channel,
            } => self.requeue_channel(connection, channel),
            Cmd::Get {
                connection,
                channel,
                no_ack,
                reply,
            } => {
                self.last_used = now_ms();
                return Later::Get {
                    connection,
                    channel,
                    no_ack,
                    reply,
                };
            }
            Cmd::Touch => self.last_used = now_ms(),
            Cmd::Poke => {}
            Cmd::Purge { reply } => return Later::Purge(reply),
            Cmd::Sync { reply } => return Later::Sync(reply),
            Cmd::Stop { reply } => return Later::Stop(reply),
        }
        Later::Nothing
    }

    /// Back to ready, marked redelivered (its TTL runs on from now).
    fn requeue(&mut self, offset: i64, message: Arc<Message>) {
        let expires_at = self.args.message_ttl.map(|t| now_ms().saturating_add(t));
        self.ready.insert(
            offset,
            Entry {
                message,
                redelivered: true,
                expires_at,
            },
        );
    }

    fn requeue_channel(&mut self, connection: u64, channel: u16) {
        let back: Vec<i64> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.connection == connection && u.channel == channel)
            .map(|(o, _)| *o)
            .collect();
        for o in back {
            if let Some(u) = self.unacked.remove(&o) {
                self.requeue(o, u.message);
            }
        }
        self.dirty = true;
    }

    /// Messages ready in memory or not read yet.
    fn ready_count(&self) -> usize {
        self.ready.len() + usize::try_from(self.end - self.tail.position()).unwrap_or(0)
    }

    /// Hands ready messages to consumers with room, round robin (only the
    /// first consumer with `x-single-active-consumer`).
    fn dispatch(&mut self) {
        if self.consumers.is_empty() {
            return;
        }
        let mut held: HashMap<(u64, u16, &str), usize> = HashMap::new();
        for u in self.unacked.values() {
            if let Some(tag) = &u.consumer {
                *held
                    .entry((u.connection, u.channel, tag.as_str()))
                    .or_default() += 1;
            }
        }
        let mut room: Vec<usize> = self
            .consumers
            .iter()
            .map(|c| {
                if c.prefetch == 0 || c.no_ack {
                    usize::MAX
                } else {
                    usize::from(c.prefetch).saturating_sub(
                        held.get(&(c.connection, c.channel, c.tag.as_str()))
                            .copied()
                            .unwrap_or(0),
                    )
                }
            })
            .collect();
        drop(held);
        let n = if self.args.single_active_consumer {
            1
        } else {
            self.consumers.len()
        };
        let mut gone = Vec::new();
        while !self.ready.is_empty() {
            let has_budget = |c: &Consumer| {
                c.no_ack
                    || c.budget
                        .as_ref()
                        .is_none_or(|b| b.held.load(Ordering::Acquire) < b.limit)
            };
            let Some(i) = (0..n)
                .map(|k| (self.turn + k) % n)
                .find(|i| room[*i] > 0 && !gone.contains(i) && has_budget(&self.consumers[*i]))
            else {
                break;
            };
            // Only below a stored mark (see the module docs of `queue`).
            if self.ready.first_offset().is_none_or(|o| o >= self.mark) {
                self.want_mark = true;
                break;
            }
            self.turn = (i + 1) % n;
            let Some((offset, e)) = self.ready.pop_first() else {
                break;
            };
            if offset + MARK_AHEAD / 2 >= self.mark {
                self.want_mark = true;
            }
            let c = &self.consumers[i];
            let budgeted = !c.no_ack && c.budget.is_some();
            if let Some(b) = c.budget.as_ref().filter(|_| budgeted) {
                b.held.fetch_add(1, Ordering::AcqRel);
            }
            let d = Delivery {
                channel: c.channel,
                topic: Arc::clone(&self.topic),
                consumer_tag: Some(c.tag.clone()),
                offset,
                redelivered: e.redelivered,
                message: Arc::clone(&e.message),
                remaining: 0,
                settled: c.no_ack,
                budgeted,
            };
            if c.tx.send(Event::Deliver(d)).is_err() {
                if let Some(b) = c.budget.as_ref().filter(|_| budgeted) {
                    b.release(1);
                }
                // Its connection is gone: the message stays ready.
                self.ready.insert(offset, e);
                gone.push(i);
                continue;
            }
            if !c.no_ack {
                self.unacked.insert(
                    offset,
                    Unacked {
                        connection: c.connection,
                        channel: c.channel,
                        consumer: Some(c.tag.clone()),
                        message: e.message,
                    },
                );
            }
            room[i] = room[i].saturating_sub(1);
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            self.dirty = true;
        }
        if !gone.is_empty() {
            let mut i = 0;
            self.consumers.retain(|_| {
                let keep = !gone.contains(&i);
                i += 1;
                keep
            });
            self.turn = 0;
        }
    }

    pub(super) fn publish_stats(&mut self) {
        self.stats
            .ready
            .store(self.ready_count() as u64, Ordering::Relaxed);
        self.stats
            .next
            .store(self.tail.position(), Ordering::Relaxed);
        self.stats.appended(self.end);
        // Deliveries in the current span and the one before: a rate over
        // one to two spans, known from the first deliveries on.
        let now = now_ms();
        let delivered = self.stats.delivered.load(Ordering::Relaxed);
        let (start, at_start, before) = &mut self.rate_since;
        if now - *start >= RATE_SPAN_MS {
            *before = delivered.saturating_sub(*at_start);
            *start = now;
            *at_start = delivered;
        }
        let recent = *before + delivered.saturating_sub(*at_start);
        let span = u64::try_from(RATE_SPAN_MS + now - *start)
            .unwrap_or(1)
            .max(1);
        self.stats
            .rate
            .store(recent * 1_000 / span, Ordering::Relaxed);
        self.stats.rate_at_ms.store(now, Ordering::Relaxed);
        if !self.stats.holds_back() {
            self.stats.room.notify_waiters();
        }
        self.stats
            .unacked
            .store(self.unacked.len() as u64, Ordering::Relaxed);
        self.stats
            .consumers
            .store(self.consumers.len() as u64, Ordering::Relaxed);
    }

    /// Writes the cursor state (in the background of the task's loop);
    /// the future gives the stored mark once the state is stored.
    fn save(&mut self, mark: Mark) -> BoxFuture<'static, Option<i64>> {
        let first_ready = self.ready.offsets().next();
        let first_unacked = self.unacked.keys().min().copied();
        self.floor = [first_ready, first_unacked, Some(self.tail.position())]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.tail.position());
        let mut pending: Vec<i64> = self.ready.offsets().collect();
        // Delivered before: unacknowledged, or requeued after a delivery.
        let mut delivered: Vec<i64> = self.unacked.keys().copied().collect();
        delivered.extend(self.ready.redelivered());
        pending.extend(self.unacked.keys().copied());
        pending.sort_unstable();
        delivered.sort_unstable();
        let base = self.ready.first_offset().unwrap_or(self.tail.position());
        let mark = stored_mark(mark, self.mark, base, self.floor, self.recovered_mark);
        let state = Stored {
            floor: self.floor,
            next: self.tail.position(),
            pending,
            delivered,
            mark,
        };
        let value = serde_json::to_vec(&state).unwrap_or_default();
        let broker = self.broker.clone();
        let topic = self.topic.to_string();
        async move {
            let record = NewRecord {
                key: Some(Bytes::from(topic.clone().into_bytes())),
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
                timestamp_ms: 0,
            };
            // Only while this node leads the partition: a node that lost
            // the gateway cannot undo its successor's acknowledgements.
            let request =
                ProduceRequest::records(ACKS_TOPIC, Some(0), vec![record]).route(Route::Local);
            let r = broker.produce(request).await;
            match r {
                Ok(_) => Some(mark),
                Err(e) => {
                    warn!(topic, "queue state not stored: {e}");
                    // Not at once again (deliveries wait for a mark).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    None
                }
            }
        }
        .boxed()
    }
}
