//! A queue: a one-partition log topic and the task that runs its cursor.
//!
//! # Format
//! Messages are records of the queue's topic (see `message.rs`); the
//! cursor's durable state is one record in the compacted topic
//! `__amqp_acks` (key: the queue's topic), JSON:
//! `{"floor": F, "next": N, "pending": [..], "delivered": [..]}`. Every
//! offset below F is settled (acknowledged, or dropped); between F and N
//! only the offsets in `pending` are not, and those in `delivered` had
//! been handed to a consumer. Nothing at or above N was read yet.
//!
//! # Invariants
//! - A message is in exactly one of: unread (offset ≥ `next`), `ready`,
//!   `unacked`, settled.
//! - A consumer never holds more unacknowledged messages than its prefetch
//!   (0: no limit).
//! - After a restart every settled message stays settled: the state is
//!   stored after each batch of acknowledgements, so an acknowledged
//!   message comes back only if the node stopped between the `basic.ack`
//!   and that write (AMQP acknowledgements have no reply to wait for).
//!   Messages that had been delivered and not acknowledged come back with
//!   `redelivered` set.
//!
//! # Concurrency
//! One task owns the cursor; channels talk to it through [`QueueHandle`].
//! Publishers append to the topic directly; the task long-polls the topic
//! for what is new.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::{Acks, Broker, FetchRequest, FetchResult, NewRecord, OffsetSpec};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::message::Message;

/// The compacted topic of the queues' cursor states.
pub(crate) const ACKS_TOPIC: &str = "__amqp_acks";

/// What a channel hears from the queues it consumes from.
#[derive(Debug)]
pub(crate) enum Event {
    Deliver(Delivery),
    /// The queue was deleted: the consumer is cancelled by the server.
    Cancelled {
        channel: u16,
        tag: String,
    },
}

/// One message handed to a consumer or a `basic.get`.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) channel: u16,
    /// The queue's topic.
    pub(crate) topic: Arc<str>,
    pub(crate) consumer_tag: Option<String>,
    pub(crate) offset: i64,
    pub(crate) redelivered: bool,
    pub(crate) message: Arc<Message>,
    /// For `basic.get-ok`: messages left in the queue.
    pub(crate) remaining: u32,
    /// Acknowledged on delivery (no-ack): nothing to acknowledge.
    pub(crate) settled: bool,
}

/// A consumer as the queue sees it.
#[derive(Debug)]
pub(crate) struct Consumer {
    /// The connection and channel it belongs to.
    pub(crate) connection: u64,
    pub(crate) channel: u16,
    pub(crate) tag: String,
    /// Unacknowledged deliveries it may hold; 0: no limit.
    pub(crate) prefetch: u16,
    pub(crate) no_ack: bool,
    pub(crate) exclusive: bool,
    pub(crate) tx: mpsc::UnboundedSender<Event>,
}

/// Why a consumer was refused.
#[derive(Debug)]
pub(crate) enum ConsumeRefused {
    /// Another consumer has the queue exclusively, or this one asked for
    /// it and others consume (405 ACCESS_REFUSED in RabbitMQ's terms: 403).
    Exclusive,
}

enum Cmd {
    Consume {
        consumer: Consumer,
        reply: oneshot::Sender<Result<(), ConsumeRefused>>,
    },
    Cancel {
        connection: u64,
        channel: u16,
        tag: String,
    },
    Ack {
        offsets: Vec<i64>,
    },
    Reject {
        offsets: Vec<i64>,
        requeue: bool,
    },
    /// A channel closed: its consumers go, its unacknowledged messages are
    /// requeued (redelivered).
    Release {
        connection: u64,
        channel: u16,
    },
    /// Requeue a channel's unacknowledged messages (`basic.recover`).
    Recover {
        connection: u64,
        channel: u16,
    },
    Get {
        connection: u64,
        channel: u16,
        no_ack: bool,
        reply: oneshot::Sender<Option<Delivery>>,
    },
    Purge {
        reply: oneshot::Sender<u32>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

/// Counts a queue keeps for declare-ok, the CLI and metrics.
#[derive(Debug, Default)]
pub(crate) struct QueueStats {
    pub(crate) ready: AtomicU64,
    pub(crate) unacked: AtomicU64,
    pub(crate) consumers: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) acked: AtomicU64,
}

/// A running queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    pub(crate) topic: Arc<str>,
    pub(crate) stats: Arc<QueueStats>,
}

/// The durable part of the cursor.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    floor: i64,
    next: i64,
    #[serde(default)]
    pending: Vec<i64>,
    #[serde(default)]
    delivered: Vec<i64>,
}

impl QueueHandle {
    /// Opens the queue stored in `topic` (which exists) and starts its task.
    pub(crate) async fn open(
        broker: Broker,
        name: Arc<str>,
        topic: &str,
        read_ahead: usize,
    ) -> crate::Result<QueueHandle> {
        let stored = load_state(&broker, topic).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(QueueStats::default());
        let topic: Arc<str> = Arc::from(topic);
        let mut cursor = Cursor {
            broker,
            name,
            topic: Arc::clone(&topic),
            read_ahead: read_ahead.max(1),
            next: stored.next.max(stored.floor),
            floor: stored.floor,
            end: stored.next,
            ready: BTreeMap::new(),
            unacked: HashMap::new(),
            consumers: Vec::new(),
            turn: 0,
            skip: BTreeSet::new(),
            stats: Arc::clone(&stats),
            dirty: false,
        };
        // What was read before the stop: pending ones come back (delivered
        // ones marked redelivered), the rest of that range is settled.
        if stored.next > stored.floor {
            let delivered: BTreeSet<i64> = stored.delivered.iter().copied().collect();
            let pending: BTreeSet<i64> = stored.pending.iter().copied().collect();
            let records = read(&cursor.broker, topic.as_ref(), stored.floor, stored.next).await?;
            for (offset, m) in records {
                if pending.contains(&offset) {
                    cursor
                        .ready
                        .insert(offset, (Arc::new(m), delivered.contains(&offset)));
                }
            }
            cursor.next = stored.next;
        }
        cursor.end = cursor.end.max(cursor.next);
        cursor.publish_stats();
        tokio::spawn(cursor.run(rx));
        Ok(QueueHandle { tx, topic, stats })
    }

    pub(crate) async fn consume(&self, consumer: Consumer) -> Result<(), ConsumeRefused> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Consume { consumer, reply }).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    pub(crate) fn cancel(&self, connection: u64, channel: u16, tag: &str) {
        let _ = self.tx.send(Cmd::Cancel {
            connection,
            channel,
            tag: tag.to_string(),
        });
    }

    pub(crate) fn ack(&self, offsets: Vec<i64>) {
        let _ = self.tx.send(Cmd::Ack { offsets });
    }

    pub(crate) fn reject(&self, offsets: Vec<i64>, requeue: bool) {
        let _ = self.tx.send(Cmd::Reject { offsets, requeue });
    }

    pub(crate) fn release(&self, connection: u64, channel: u16) {
        let _ = self.tx.send(Cmd::Release {
            connection,
            channel,
        });
    }

    pub(crate) fn recover(&self, connection: u64, channel: u16) {
        let _ = self.tx.send(Cmd::Recover {
            connection,
            channel,
        });
    }

    pub(crate) async fn get(
        &self,
        connection: u64,
        channel: u16,
        no_ack: bool,
    ) -> Option<Delivery> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Get {
                connection,
                channel,
                no_ack,
                reply,
            })
            .ok()?;
        rx.await.ok().flatten()
    }

    /// Drops every ready message; returns how many.
    pub(crate) async fn purge(&self) -> u32 {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Purge { reply }).is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// Stops the task; its consumers are told they are cancelled.
    pub(crate) async fn stop(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Stop { reply }).is_ok() {
            let _ = rx.await;
        }
    }

    /// Messages ready or unread.
    pub(crate) fn message_count(&self) -> u32 {
        u32::try_from(self.stats.ready.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    }

    pub(crate) fn consumer_count(&self) -> u32 {
        u32::try_from(self.stats.consumers.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    }
}

/// Appends `messages` to a queue's topic; `Ok` once committed.
pub(crate) async fn append(
    broker: &Broker,
    topic: &str,
    messages: &[Arc<Message>],
) -> crate::Result<()> {
    let records: Vec<NewRecord> = messages.iter().map(|m| m.to_record()).collect();
    broker
        .append_anywhere(topic, 0, records, Acks::All)
        .await
        .map(|_| ())
        .map_err(crate::Error::Broker)
}

async fn load_state(broker: &Broker, topic: &str) -> crate::Result<Stored> {
    let end = broker
        .list_offset_anywhere(ACKS_TOPIC, 0, OffsetSpec::Latest)
        .await?
        .map_or(0, |(o, _)| o);
    let mut state = Stored::default();
    let mut offset = 0;
    while offset < end {
        let r = broker
            .fetch_anywhere(FetchRequest {
                topic: ACKS_TOPIC.into(),
                partition: 0,
                offset,
                max_bytes: 1 << 20,
                min_bytes: 0,
                max_wait: Duration::ZERO,
            })
            .await;
        let r = match r {
            Ok(r) => r,
            Err(fjord_broker::Error::OffsetOutOfRange { earliest, .. }) if earliest > offset => {
                offset = earliest;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if r.records.is_empty() || r.next_offset <= offset {
            break;
        }
        for rec in fjord_broker::decode_records(r.records, offset)? {
            if rec.key.as_deref() == Some(topic.as_bytes()) {
                state = rec
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice(v).ok())
                    .unwrap_or_default();
            }
        }
        offset = r.next_offset;
    }
    // A queue whose log start moved (retention) starts there.
    if let Ok(Some((start, _))) = broker
        .list_offset_anywhere(topic, 0, OffsetSpec::Earliest)
        .await
        && start > state.floor
    {
        state.floor = start;
        state.next = state.next.max(start);
        state.pending.retain(|o| *o >= start);
    }
    Ok(state)
}

/// Deletes a queue's cursor state.
pub(crate) async fn forget_state(broker: &Broker, topic: &str) {
    let r = broker
        .append_anywhere(
            ACKS_TOPIC,
            0,
            vec![NewRecord {
                key: Some(Bytes::from(topic.to_string().into_bytes())),
                value: None,
                headers: Vec::new(),
                timestamp_ms: 0,
            }],
            Acks::All,
        )
        .await;
    if let Err(e) = r {
        debug!(topic, "queue state not deleted: {e}");
    }
}

/// The messages of `topic` in `[from, to)`.
async fn read(
    broker: &Broker,
    topic: &str,
    from: i64,
    to: i64,
) -> crate::Result<Vec<(i64, Message)>> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < to {
        let r = broker
            .fetch_anywhere(FetchRequest {
                topic: topic.to_string(),
                partition: 0,
                offset,
                max_bytes: 1 << 20,
                min_bytes: 0,
                max_wait: Duration::ZERO,
            })
            .await?;
        if r.records.is_empty() || r.next_offset <= offset {
            break;
        }
        for rec in fjord_broker::decode_records(r.records, offset)? {
            if rec.offset < to
                && let Some(m) = Message::from_record(&rec)
            {
                out.push((rec.offset, m));
            }
        }
        offset = r.next_offset;
    }
    Ok(out)
}

/// A command's part that needs the task to await.
enum Later {
    Nothing,
    Get {
        connection: u64,
        channel: u16,
        no_ack: bool,
        reply: oneshot::Sender<Option<Delivery>>,
    },
    Stop(oneshot::Sender<()>),
}

struct Unacked {
    connection: u64,
    channel: u16,
    consumer: Option<String>,
    message: Arc<Message>,
}

struct Cursor {
    broker: Broker,
    name: Arc<str>,
    topic: Arc<str>,
    read_ahead: usize,
    /// The next offset to read from the log.
    next: i64,
    /// Every offset below is settled.
    floor: i64,
    /// The log end as last heard.
    end: i64,
    /// Read, not delivered: offset → (message, redelivered).
    ready: BTreeMap<i64, (Arc<Message>, bool)>,
    unacked: HashMap<i64, Unacked>,
    consumers: Vec<Consumer>,
    /// Round-robin position in `consumers`.
    turn: usize,
    /// Offsets in [next, ...) settled before they were read (none today;
    /// kept for purge bookkeeping).
    skip: BTreeSet<i64>,
    stats: Arc<QueueStats>,
    /// The stored state is behind.
    dirty: bool,
}

impl Cursor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut fetching: Option<BoxFuture<'static, fjord_broker::Result<FetchResult>>> = None;
        let mut saving: Option<BoxFuture<'static, ()>> = None;
        loop {
            if fetching.is_none() && self.ready.len() < self.read_ahead {
                fetching = Some(self.fetch());
            }
            if saving.is_none() && self.dirty {
                saving = Some(self.save());
                self.dirty = false;
            }
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
                                let got = self.get(connection, channel, no_ack);
                                let _ = reply.send(got);
                            }
                            Later::Stop(reply) => {
                                // Store the cursor, cancel the consumers.
                                if let Some(s) = saving.take() {
                                    s.await;
                                }
                                self.save().await;
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
                () = async {
                    match saving.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    saving = None;
                }
            }
            self.dispatch();
            self.publish_stats();
        }
    }

    fn fetch(&self) -> BoxFuture<'static, fjord_broker::Result<FetchResult>> {
        let broker = self.broker.clone();
        let request = FetchRequest {
            topic: self.topic.to_string(),
            partition: 0,
            offset: self.next,
            max_bytes: 1 << 20,
            min_bytes: 1,
            max_wait: Duration::from_millis(500),
        };
        async move {
            let r = broker.fetch_anywhere(request).await;
            if r.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r
        }
        .boxed()
    }

    fn fetched(&mut self, r: fjord_broker::Result<FetchResult>) {
        let r = match r {
            Ok(r) => r,
            Err(fjord_broker::Error::OffsetOutOfRange { earliest, .. }) if earliest > self.next => {
                self.next = earliest;
                return;
            }
            Err(e) => {
                debug!(queue = %self.name, "queue read: {e}");
                return;
            }
        };
        self.end = self.end.max(r.high_watermark);
        if r.records.is_empty() {
            return;
        }
        match fjord_broker::decode_records(r.records, self.next) {
            Ok(records) => {
                for rec in records {
                    if self.skip.remove(&rec.offset) {
                        continue;
                    }
                    match Message::from_record(&rec) {
                        Some(m) => {
                            self.ready.insert(rec.offset, (Arc::new(m), false));
                        }
                        None => {
                            warn!(queue = %self.name, offset = rec.offset, "not a message; skipped")
                        }
                    }
                }
            }
            Err(e) => warn!(queue = %self.name, "a batch is skipped: {e}"),
        }
        self.next = r.next_offset.max(self.next);
        self.dirty = true;
    }

    /// Reads what is committed but not read yet (up to twice the read-ahead).
    async fn catch_up(&mut self) {
        let Ok(Some((end, _))) = self
            .broker
            .list_offset_anywhere(&self.topic, 0, OffsetSpec::Latest)
            .await
        else {
            return;
        };
        self.end = self.end.max(end);
        while self.next < end && self.ready.len() < self.read_ahead * 2 {
            let before = self.next;
            let r = self
                .broker
                .fetch_anywhere(FetchRequest {
                    topic: self.topic.to_string(),
                    partition: 0,
                    offset: self.next,
                    max_bytes: 1 << 20,
                    min_bytes: 0,
                    max_wait: Duration::ZERO,
                })
                .await;
            self.fetched(r);
            if self.next <= before {
                break;
            }
        }
    }

    fn get(&mut self, connection: u64, channel: u16, no_ack: bool) -> Option<Delivery> {
        let (offset, (message, redelivered)) = self.ready.pop_first()?;
        if !no_ack {
            self.unacked.insert(
                offset,
                Unacked {
                    connection,
                    channel,
                    consumer: None,
                    message: Arc::clone(&message),
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
            redelivered,
            message,
            remaining: u32::try_from(self.ready_count()).unwrap_or(u32::MAX),
            settled: no_ack,
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
                            self.ready.insert(o, (u.message, true));
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
                return Later::Get {
                    connection,
                    channel,
                    no_ack,
                    reply,
                };
            }
            Cmd::Purge { reply } => {
                let dropped = self.ready_count();
                self.ready.clear();
                self.next = self.next.max(self.end);
                self.dirty = true;
                let _ = reply.send(u32::try_from(dropped).unwrap_or(u32::MAX));
            }
            Cmd::Stop { reply } => return Later::Stop(reply),
        }
        Later::Nothing
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
                self.ready.insert(o, (u.message, true));
            }
        }
        self.dirty = true;
    }

    /// Messages ready in memory or not read yet.
    fn ready_count(&self) -> usize {
        self.ready.len() + usize::try_from(self.end - self.next).unwrap_or(0)
    }

    /// Hands ready messages to consumers with room, round robin.
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
        let n = self.consumers.len();
        let mut gone = Vec::new();
        while !self.ready.is_empty() {
            let Some(i) = (0..n)
                .map(|k| (self.turn + k) % n)
                .find(|i| room[*i] > 0 && !gone.contains(i))
            else {
                break;
            };
            self.turn = (i + 1) % n;
            let Some((offset, (message, redelivered))) = self.ready.pop_first() else {
                break;
            };
            let c = &self.consumers[i];
            let d = Delivery {
                channel: c.channel,
                topic: Arc::clone(&self.topic),
                consumer_tag: Some(c.tag.clone()),
                offset,
                redelivered,
                message: Arc::clone(&message),
                remaining: 0,
                settled: c.no_ack,
            };
            if c.tx.send(Event::Deliver(d)).is_err() {
                // Its connection is gone: the message stays ready.
                self.ready.insert(offset, (message, redelivered));
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
                        message,
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

    fn publish_stats(&self) {
        self.stats
            .ready
            .store(self.ready_count() as u64, Ordering::Relaxed);
        self.stats
            .unacked
            .store(self.unacked.len() as u64, Ordering::Relaxed);
        self.stats
            .consumers
            .store(self.consumers.len() as u64, Ordering::Relaxed);
    }

    /// Writes the cursor state (in the background of the task's loop).
    fn save(&mut self) -> BoxFuture<'static, ()> {
        let first_ready = self.ready.keys().next().copied();
        let first_unacked = self.unacked.keys().min().copied();
        self.floor = [first_ready, first_unacked, Some(self.next)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next);
        let mut pending: Vec<i64> = self.ready.keys().copied().collect();
        // Delivered before: unacknowledged, or requeued after a delivery.
        let mut delivered: Vec<i64> = self.unacked.keys().copied().collect();
        delivered.extend(
            self.ready
                .iter()
                .filter(|(_, (_, redelivered))| *redelivered)
                .map(|(o, _)| *o),
        );
        pending.extend(&delivered);
        pending.sort_unstable();
        let state = Stored {
            floor: self.floor,
            next: self.next,
            pending,
            delivered,
        };
        let value = serde_json::to_vec(&state).unwrap_or_default();
        let broker = self.broker.clone();
        let topic = self.topic.to_string();
        async move {
            let r = broker
                .append_anywhere(
                    ACKS_TOPIC,
                    0,
                    vec![NewRecord {
                        key: Some(Bytes::from(topic.clone().into_bytes())),
                        value: Some(Bytes::from(value)),
                        headers: Vec::new(),
                        timestamp_ms: 0,
                    }],
                    Acks::All,
                )
                .await;
            if let Err(e) = r {
                warn!(topic, "queue state not stored: {e}");
            }
        }
        .boxed()
    }
}
