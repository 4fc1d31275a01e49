//! A confirming publisher: numbered messages, each to one of the queues
//! through the default exchange, a window of them at a time on a channel
//! in confirm mode, from a connection that moves to the next node when it
//! is lost.
//!
//! Every publish is a new attempt with its own id (see `history.rs`): a
//! message nacked, or not confirmed before its connection was lost, is
//! published again as its next attempt, on the next connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};

use crate::amqp::history::{AmqpHistory, Attempt, PublisherLog, message_id, queue_name};
use crate::amqp::link::{Link, bounded};
use crate::mqtt::session::Net;
use crate::stop::Stop;

/// Messages published before their confirms are awaited.
const WINDOW: usize = 10;

/// How long a confirm may take: a publish is held (not nacked) while its
/// queue's leader moves, up to 10 s, after the broker's own wait.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// One publisher of the workload.
#[derive(Debug, Clone)]
pub struct PublisherSpec {
    /// Its index in the history; its name is `pub-<id>`.
    pub id: usize,
    /// The node it first connects to.
    pub node: usize,
    /// Queues `q0..q<queues>`: message `seq` goes to `seq % queues`.
    pub queues: usize,
}

/// Publishes until stopped; records every attempt and its outcome.
pub async fn publisher(
    spec: PublisherSpec,
    net: Net,
    history: Arc<Mutex<AmqpHistory>>,
    stop: Stop,
) {
    let mut link = Link::new(format!("pub-{}", spec.id), spec.node, net);
    let mut p = Publisher {
        spec,
        history,
        next_seq: 0,
        again: VecDeque::new(),
    };
    let mut first = true;
    while !stop.stopped() {
        let Some(conn) = link.connect().await else {
            continue;
        };
        if !std::mem::take(&mut first) {
            p.record(|l| l.reconnects += 1);
        }
        p.publish_on(&conn, &stop).await;
        let _ = bounded(conn.close(200, "done".into())).await;
        if !stop.stopped() {
            link.move_on();
        }
    }
    link.leave();
}

/// A publisher's state between connections.
struct Publisher {
    spec: PublisherSpec,
    history: Arc<Mutex<AmqpHistory>>,
    next_seq: u64,
    /// Messages to publish again (seq, next attempt), first.
    again: VecDeque<(u64, u32)>,
}

impl Publisher {
    fn record(&self, update: impl FnOnce(&mut PublisherLog)) {
        if let Ok(mut h) = self.history.lock()
            && let Some(p) = h.publishers.get_mut(self.spec.id)
        {
            update(p);
        }
    }

    /// The next message to publish: one to publish again, or a new one.
    fn next(&mut self) -> (u64, u32) {
        self.again.pop_front().unwrap_or_else(|| {
            self.next_seq += 1;
            (self.next_seq - 1, 0)
        })
    }

    /// Publishes windows of messages on `conn` until stopped or the
    /// connection fails.
    async fn publish_on(&mut self, conn: &Connection, stop: &Stop) {
        let Some(ch) = bounded(conn.create_channel()).await else {
            return;
        };
        if bounded(ch.confirm_select(ConfirmSelectOptions::default()))
            .await
            .is_none()
        {
            return;
        }
        while !stop.stopped() {
            if !self.window(&ch).await {
                return;
            }
        }
    }

    /// Publishes one window and awaits its confirms; false once the
    /// channel failed (what was not confirmed is published again later).
    async fn window(&mut self, ch: &Channel) -> bool {
        let mut sent: Vec<((u64, u32), PublisherConfirm)> = Vec::with_capacity(WINDOW);
        let mut ok = true;
        for _ in 0..WINDOW {
            let (seq, attempt) = self.next();
            let queue = usize::try_from(seq).unwrap_or(0) % self.spec.queues.max(1);
            let id = message_id(self.spec.id, seq, attempt);
            self.record(|l| {
                l.attempts.push(Attempt {
                    id: id.clone(),
                    queue,
                });
            });
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(id.clone().into());
            let published = bounded(ch.basic_publish(
                "".into(),
                queue_name(queue).into(),
                BasicPublishOptions::default(),
                id.as_bytes(),
                props,
            ))
            .await;
            match published {
                Some(confirm) => sent.push(((seq, attempt), confirm)),
                None => {
                    self.again.push_back((seq, attempt + 1));
                    ok = false;
                    break;
                }
            }
        }
        for ((seq, attempt), confirm) in sent {
            ok &= self.settle(seq, attempt, ok, confirm).await;
        }
        ok
    }

    /// Awaits one confirm (unless the channel already failed); false if
    /// the channel failed.
    async fn settle(
        &mut self,
        seq: u64,
        attempt: u32,
        ok: bool,
        confirm: PublisherConfirm,
    ) -> bool {
        let id = message_id(self.spec.id, seq, attempt);
        let outcome = if ok {
            tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await.ok()
        } else {
            None
        };
        match outcome {
            Some(Ok(c)) if c.is_ack() => {
                self.record(|l| {
                    l.confirmed.insert(id);
                });
                true
            }
            Some(Ok(c)) if c.is_nack() => {
                self.record(|l| {
                    l.nacked.insert(id);
                });
                self.again.push_back((seq, attempt + 1));
                true
            }
            _ => {
                self.again.push_back((seq, attempt + 1));
                false
            }
        }
    }
}
