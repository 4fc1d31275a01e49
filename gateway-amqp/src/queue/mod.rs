//! A queue: a one-partition log topic and the task that runs its cursor.
//!
//! # Format
//! Messages are records of the queue's topic (see `message.rs`); the
//! cursor's durable state is one record in the compacted topic
//! `__amqp_acks` (key: the queue's topic), JSON:
//! `{"floor": F, "next": N, "pending": [..], "delivered": [..], "mark": M}`.
//! Every offset below F is settled (acknowledged, or dropped); between F
//! and N only the offsets in `pending` are not, and those in `delivered`
//! had been handed to a consumer. Nothing at or above N was read yet. No
//! offset at or above M was delivered: the cursor stores a mark beyond an
//! offset before it delivers it (a little ahead, so that this rarely
//! waits), so after a crash or a failover every pending message below M
//! comes back with `redelivered` set ("may have been delivered", as the
//! spec words it), even if its delivery was not recorded yet.
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
//! - No offset at or above the stored mark was delivered (a delivery
//!   waits for a mark beyond it), and only the leader of `__amqp_acks`
//!   stores states: a node that lost the gateway delivers nothing new.
//!
//! # Concurrency
//! One task owns the cursor; channels talk to it through [`QueueHandle`].
//! Publishers append to the topic directly (held through a failover of
//! its leader, see `append.rs`); the task long-polls the topic for what
//! is new.

mod append;
mod args;
mod cursor;
mod mark;
mod ready;

pub(crate) use append::append;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use fjord_broker::{Broker, NewRecord, OffsetSpec, ProduceRequest, Route};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::codec::FieldTable;
use crate::message::Message;
use args::{Overflow, QueueArgs};
use cursor::Cursor;

/// The compacted topic of the queues' cursor states. Its leader runs the
/// gateway (see `gateway.rs`), and writes to it only while it leads: a node
/// that lost the gateway cannot overwrite its successor's states.
pub(crate) const ACKS_TOPIC: &str = "__amqp_acks";

/// Longest a closing channel waits for its queues' states to be stored.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// Counted in its channel's [`Budget`].
    pub(crate) budgeted: bool,
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
    /// The channel-wide limit (`basic.qos` with `global`), shared with the
    /// channel's other consumers.
    pub(crate) budget: Option<Arc<Budget>>,
}

/// Unacknowledged deliveries a channel's consumers may hold together.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) held: std::sync::atomic::AtomicU32,
    pub(crate) limit: u32,
}

impl Budget {
    /// Gives back `n` deliveries' room.
    pub(crate) fn release(&self, n: u32) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(n))
            });
    }
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
    /// The queue was redeclared: it is in use (for `x-expires`).
    Touch,
    /// Room was given back (a channel-wide limit): try delivering.
    Poke,
    /// Answer once the state as of this command is stored (true), or
    /// could not be (false).
    Sync {
        reply: oneshot::Sender<bool>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

/// What queues ask of the gateway.
#[derive(Debug)]
pub(crate) enum Housekeeping {
    /// Publish `message` (exchange and routing key already set to the
    /// dead-letter ones) in `vhost`.
    DeadLetter {
        vhost: String,
        message: Box<Message>,
    },
    /// The queue was unused for its `x-expires`: delete it.
    Expired { vhost: String, name: String },
}

/// Counts a queue keeps for declare-ok, the CLI and metrics.
#[derive(Debug, Default)]
pub(crate) struct QueueStats {
    pub(crate) ready: AtomicU64,
    pub(crate) unacked: AtomicU64,
    pub(crate) consumers: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) acked: AtomicU64,
    /// Messages appended to it (publishes and dead letters).
    pub(crate) published: AtomicU64,
    /// The log end as publishers left it (the offset after their last
    /// committed append).
    pub(crate) end: AtomicI64,
    /// The cursor's next offset to read.
    pub(crate) next: AtomicI64,
    /// Deliveries per second, as last measured, and when (ms).
    pub(crate) rate: AtomicU64,
    pub(crate) rate_at_ms: AtomicI64,
    /// Signalled when the queue stops holding back its publishers.
    pub(crate) room: tokio::sync::Notify,
}

/// Publisher flow control (RabbitMQ's credit flow plays this part): a
/// queue that delivers at least `BUSY_RATE` messages a second holds back
/// its publishers while more than `FLOW_WINDOW` worth of its delivery
/// rate (and at least `FLOW_MIN` messages) wait to be delivered, so a
/// publisher faster than the consumers cannot make the queue, and its
/// latency, grow without end. A slower queue (consumers that take their
/// time over each task, or none) takes every publish at once and grows.
const BUSY_RATE: u64 = 2_000;
const FLOW_MIN: u64 = 128;
const FLOW_WINDOW_MS: u64 = 4;

impl QueueStats {
    /// Messages published and not yet delivered: ready, or not read yet.
    fn backlog(&self) -> u64 {
        let unread = self.end.load(Ordering::Relaxed) - self.next.load(Ordering::Relaxed);
        self.ready.load(Ordering::Relaxed) + u64::try_from(unread).unwrap_or(0)
    }

    /// True while the queue holds back its publishers (see `BUSY_RATE`).
    pub(crate) fn holds_back(&self) -> bool {
        if self.consumers.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let fresh = crate::now_ms() - self.rate_at_ms.load(Ordering::Relaxed) < 200;
        let rate = if fresh {
            self.rate.load(Ordering::Relaxed)
        } else {
            0
        };
        rate >= BUSY_RATE && self.backlog() > (rate * FLOW_WINDOW_MS / 1_000).max(FLOW_MIN)
    }

    /// Records that the log reaches `end` (an append committed).
    pub(crate) fn appended(&self, end: i64) {
        self.end.fetch_max(end, Ordering::Relaxed);
    }
}

/// A running queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    pub(crate) topic: Arc<str>,
    pub(crate) stats: Arc<QueueStats>,
    /// `x-max-length` with `x-overflow: reject-publish`: publishes beyond
    /// it are refused.
    reject_beyond: Option<usize>,
}

/// The durable part of the cursor.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Stored {
    floor: i64,
    next: i64,
    #[serde(default)]
    pending: Vec<i64>,
    #[serde(default)]
    delivered: Vec<i64>,
    #[serde(default)]
    mark: i64,
}

impl QueueHandle {
    /// Opens the queue stored in `topic` (which exists) and starts its task.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open(
        broker: Broker,
        vhost: &str,
        name: &str,
        topic: &str,
        arguments: &FieldTable,
        read_ahead: usize,
        house: mpsc::UnboundedSender<Housekeeping>,
    ) -> crate::Result<QueueHandle> {
        let stored = load_state(&broker, topic).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(QueueStats::default());
        let topic: Arc<str> = Arc::from(topic);
        let args = QueueArgs::parse(arguments);
        let reject_beyond = args
            .max_length
            .filter(|_| args.overflow == Overflow::RejectPublish);
        let mut cursor = Cursor::new(
            broker,
            vhost.to_string(),
            name.to_string(),
            Arc::clone(&topic),
            args,
            house,
            read_ahead,
            &stored,
            Arc::clone(&stats),
        );
        // What was read before the stop: pending ones come back (delivered
        // ones marked redelivered), the rest of that range is settled.
        if stored.next > stored.floor {
            let delivered: BTreeSet<i64> = stored.delivered.iter().copied().collect();
            let pending: BTreeSet<i64> = stored.pending.iter().copied().collect();
            let records = read(&cursor.broker, topic.as_ref(), stored.floor, stored.next).await?;
            for (offset, at_ms, m) in records {
                if pending.contains(&offset) {
                    let maybe = delivered.contains(&offset) || offset < stored.mark;
                    cursor.add(offset, at_ms, m, maybe);
                }
            }
            cursor.tail.seek(stored.next);
        }
        cursor.end = cursor.end.max(cursor.tail.position());
        cursor.publish_stats();
        tokio::spawn(cursor.run(rx));
        Ok(QueueHandle {
            tx,
            topic,
            stats,
            reject_beyond,
        })
    }

    /// True when a publish must be refused: the queue is at its
    /// `x-max-length` with `x-overflow: reject-publish`.
    pub(crate) fn refuses_publish(&self) -> bool {
        self.reject_beyond
            .is_some_and(|max| self.stats.ready.load(Ordering::Relaxed) >= max as u64)
    }

    /// Makes the queue try delivering again.
    pub(crate) fn poke(&self) {
        let _ = self.tx.send(Cmd::Poke);
    }

    /// Marks the queue used (a redeclare).
    pub(crate) fn touch(&self) {
        let _ = self.tx.send(Cmd::Touch);
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

    /// Returns once the cursor state, with every command sent before, is
    /// stored (a closing channel's acknowledgements are durable before its
    /// close-ok): true; false when it could not be stored (this node no
    /// longer runs the gateway), the queue stopped, or `SYNC_WAIT` passed.
    pub(crate) async fn sync(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Sync { reply }).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(SYNC_WAIT, rx).await, Ok(Ok(true)))
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

async fn load_state(broker: &Broker, topic: &str) -> crate::Result<Stored> {
    let mut state = Stored::default();
    let (records, _) = broker.tail(ACKS_TOPIC, 0, 0).read_to_end().await?;
    for rec in records {
        if rec.key.as_deref() == Some(topic.as_bytes()) {
            state = rec
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice(v).ok())
                .unwrap_or_default();
        }
    }
    // A queue whose log start moved (retention) starts there.
    if let Ok(Some((start, _))) = broker
        .list_offset(topic, 0, OffsetSpec::Earliest, Route::Leader)
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
    // Only while this node runs the gateway (leads the topic).
    let tombstone = NewRecord {
        key: Some(Bytes::from(topic.to_string().into_bytes())),
        value: None,
        headers: Vec::new(),
        timestamp_ms: 0,
    };
    let request = ProduceRequest::records(ACKS_TOPIC, Some(0), vec![tombstone]).route(Route::Local);
    let r = broker.produce(request).await;
    if let Err(e) = r {
        debug!(topic, "queue state not deleted: {e}");
    }
}

/// The messages of `topic` in `[from, to)`: (offset, append time, message).
async fn read(
    broker: &Broker,
    topic: &str,
    from: i64,
    to: i64,
) -> crate::Result<Vec<(i64, i64, Message)>> {
    Ok(broker
        .tail(topic, 0, from)
        .read_to(Some(to))
        .await?
        .into_iter()
        .filter_map(|rec| Some((rec.offset, rec.timestamp_ms, Message::from_record(&rec)?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(consumers: u64, rate: u64, ready: u64, unread: i64) -> QueueStats {
        let s = QueueStats::default();
        s.consumers.store(consumers, Ordering::Relaxed);
        s.rate.store(rate, Ordering::Relaxed);
        s.rate_at_ms.store(crate::now_ms(), Ordering::Relaxed);
        s.ready.store(ready, Ordering::Relaxed);
        s.next.store(1_000, Ordering::Relaxed);
        s.appended(1_000 + unread);
        s
    }

    #[test]
    fn a_busy_queue_with_a_backlog_holds_its_publishers_back() {
        // 50,000 deliveries/s: up to 200 waiting (4 ms of them) is fine.
        assert!(!stats(1, 50_000, 150, 50).holds_back());
        assert!(stats(1, 50_000, 150, 51).holds_back());
        assert!(stats(1, 50_000, 1_000, 0).holds_back());
    }

    #[test]
    fn slow_idle_or_unconsumed_queues_take_every_publish() {
        // Consumers taking their time: the queue just grows.
        assert!(!stats(3, BUSY_RATE - 1, 100_000, 100_000).holds_back());
        // Nobody consumes.
        assert!(!stats(0, 50_000, 100_000, 0).holds_back());
        // A rate measured long ago says nothing.
        let s = stats(1, 50_000, 100_000, 0);
        s.rate_at_ms
            .store(crate::now_ms() - 5_000, Ordering::Relaxed);
        assert!(!s.holds_back());
        // A small backlog never holds back.
        assert!(!stats(1, 10_000, FLOW_MIN, 0).holds_back());
    }
}
