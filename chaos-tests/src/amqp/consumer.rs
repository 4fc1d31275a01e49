//! An acking consumer: one channel consuming every queue with manual
//! acknowledgements and a prefetch, from a connection that moves to the
//! next node when it is lost.
//!
//! It holds a few deliveries before acknowledging them (so it has some
//! unacknowledged when it goes), and after every few acknowledgements asks
//! `basic.qos` again: the answer tells that the acknowledgements before it
//! arrived. A killing consumer closes its channel at a random moment
//! (seeded) with the deliveries it holds unacknowledged, and consumes
//! again on a new connection: the gateway must give them again, with
//! `redelivered`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{SelectAll, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::amqp::history::{Acked, AmqpHistory, ConsumerLog, Delivered, queue_name};
use crate::amqp::link::{Link, OP_TIMEOUT, bounded};
use crate::mqtt::session::Net;
use crate::stop::Stop;

/// Acknowledgements sent between two `basic.qos` round trips.
const ACKS_PER_CHECK: usize = 20;

/// One consumer of the workload.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Its index in the history; its name is `con-<index>`.
    pub index: usize,
    /// The node it first connects to.
    pub node: usize,
    pub queues: usize,
    pub prefetch: u16,
    /// It kills its channel now and then.
    pub kills: bool,
    pub seed: u64,
}

/// What the run tells a consumer.
#[derive(Clone)]
pub struct Control {
    /// Stop killing channels (the faults are over).
    pub calm: Stop,
    /// Close cleanly and end.
    pub stop: Stop,
}

/// How a channel's life ended.
enum Ended {
    Killed,
    Lost,
    Stopped,
}

/// Consumes until stopped; `ready` is told once the first channel
/// consumes every queue.
pub async fn consumer(
    spec: ConsumerSpec,
    net: Net,
    history: Arc<Mutex<AmqpHistory>>,
    ready: tokio::sync::oneshot::Sender<()>,
    control: Control,
) {
    let mut link = Link::new(format!("con-{}", spec.index), spec.node, net);
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut ready = Some(ready);
    let mut session = 0;
    while !control.stop.stopped() {
        let Some(conn) = link.connect().await else {
            continue;
        };
        let kill_after = (spec.kills && !control.calm.stopped()).then(|| rng.random_range(30..300));
        let mut s = Session {
            spec: &spec,
            history: &history,
            session,
            held: VecDeque::new(),
            unconfirmed: Vec::new(),
            given: 0,
        };
        let ended = s.run(&conn, kill_after, &control, &mut ready).await;
        let _ = tokio::time::timeout(OP_TIMEOUT, conn.close(200, "done".into())).await;
        session += 1;
        match ended {
            Ended::Stopped => break,
            Ended::Killed => s.record(|c| c.kills += 1),
            Ended::Lost => {
                s.record(|c| c.reconnects += 1);
                link.move_on();
            }
        }
    }
    link.leave();
}

/// One channel's life.
struct Session<'a> {
    spec: &'a ConsumerSpec,
    history: &'a Mutex<AmqpHistory>,
    session: usize,
    /// Deliveries not acknowledged yet: (id, delivery).
    held: VecDeque<(String, Delivery)>,
    /// Indexes (in the consumer's acks) of acknowledgements not known
    /// arrived yet.
    unconfirmed: Vec<usize>,
    /// Deliveries on this channel.
    given: usize,
}

impl Session<'_> {
    fn record(&self, update: impl FnOnce(&mut ConsumerLog)) {
        if let Ok(mut h) = self.history.lock()
            && let Some(c) = h.consumers.get_mut(self.spec.index)
        {
            update(c);
        }
    }

    async fn run(
        &mut self,
        conn: &Connection,
        kill_after: Option<usize>,
        control: &Control,
        ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Ended {
        let Some((ch, mut stream)) = self.subscribe(conn).await else {
            return Ended::Lost;
        };
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        loop {
            if control.stop.stopped() {
                return self.close(&ch, true).await;
            }
            if kill_after.is_some_and(|k| self.given >= k) && !control.calm.stopped() {
                return self.close(&ch, false).await;
            }
            let next = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
            let alive = match next {
                Ok(Some(Ok((queue, d)))) => self.take(&ch, queue, d).await,
                Ok(Some(Err(_)) | None) => false,
                // Idle: acknowledge what is held.
                Err(_) => self.ack_held(0).await && self.check(&ch).await,
            };
            if !alive {
                return Ended::Lost;
            }
        }
    }

    /// A channel with the prefetch, consuming every queue.
    async fn subscribe(&self, conn: &Connection) -> Option<(Channel, SelectAll<Deliveries>)> {
        let ch = bounded(conn.create_channel()).await?;
        bounded(ch.basic_qos(self.spec.prefetch, BasicQosOptions::default())).await?;
        let mut all = SelectAll::new();
        for q in 0..self.spec.queues {
            let tag = format!("con-{}-{q}", self.spec.index);
            let consumer = bounded(ch.basic_consume(
                queue_name(q).into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ))
            .await?;
            let tagged: Deliveries = Box::pin(consumer.map(move |d| d.map(|d| (q, d))));
            all.push(tagged);
        }
        Some((ch, all))
    }

    /// Records a delivery and holds it; acknowledges the oldest held
    /// beyond a few. False once the channel failed.
    async fn take(&mut self, ch: &Channel, queue: usize, d: Delivery) -> bool {
        let id = d.properties.message_id().as_ref().map_or_else(
            || String::from_utf8_lossy(&d.data).into_owned(),
            |m| m.to_string(),
        );
        let delivered = |at| Delivered {
            id: id.clone(),
            queue,
            redelivered: d.redelivered,
            session: self.session,
            at,
        };
        if let Ok(mut h) = self.history.lock() {
            let at = h.tick();
            if let Some(c) = h.consumers.get_mut(self.spec.index) {
                c.deliveries.push(delivered(at));
            }
        }
        self.given += 1;
        self.held.push_back((id, d));
        let keep = usize::from(self.spec.prefetch / 4);
        self.ack_held(keep).await
            && (self.unconfirmed.len() < ACKS_PER_CHECK || self.check(ch).await)
    }

    /// Acknowledges held deliveries, oldest first, until `keep` are held.
    async fn ack_held(&mut self, keep: usize) -> bool {
        while self.held.len() > keep {
            let Some((id, d)) = self.held.pop_front() else {
                break;
            };
            if bounded(d.ack(BasicAckOptions::default())).await.is_none() {
                return false;
            }
            let session = self.session;
            let mut index = None;
            self.record(|c| {
                index = Some(c.acks.len());
                c.acks.push(Acked {
                    id,
                    session,
                    arrived: None,
                    stored: None,
                });
            });
            self.unconfirmed.extend(index);
        }
        true
    }

    /// A `basic.qos` round trip: the acknowledgements sent before it
    /// arrived. False once the channel failed.
    async fn check(&mut self, ch: &Channel) -> bool {
        if self.unconfirmed.is_empty() {
            return true;
        }
        let qos = ch.basic_qos(self.spec.prefetch, BasicQosOptions::default());
        if !matches!(tokio::time::timeout(OP_TIMEOUT, qos).await, Ok(Ok(()))) {
            return false;
        }
        self.mark(false);
        true
    }

    /// Stamps the unconfirmed acknowledgements arrived (and stored).
    fn mark(&mut self, stored: bool) {
        let unconfirmed = std::mem::take(&mut self.unconfirmed);
        let session = self.session;
        if let Ok(mut h) = self.history.lock() {
            let at = h.tick();
            if let Some(c) = h.consumers.get_mut(self.spec.index) {
                for i in unconfirmed {
                    if let Some(a) = c.acks.get_mut(i) {
                        a.arrived = Some(at);
                    }
                }
                if stored {
                    for a in c.acks.iter_mut().filter(|a| a.session == session) {
                        a.arrived.get_or_insert(at);
                        a.stored.get_or_insert(at);
                    }
                }
            }
        }
    }

    /// Closes the channel, acknowledging what it holds first if `settle`,
    /// else leaving it unacknowledged (a kill).
    async fn close(&mut self, ch: &Channel, settle: bool) -> Ended {
        if settle && !self.ack_held(0).await {
            return Ended::Lost;
        }
        let closed = tokio::time::timeout(OP_TIMEOUT, ch.close(200, "bye".into())).await;
        if !matches!(closed, Ok(Ok(()))) {
            return Ended::Lost;
        }
        self.mark(true);
        if settle {
            Ended::Stopped
        } else {
            Ended::Killed
        }
    }
}

/// A consumer's deliveries, tagged with the queue's index.
type Deliveries =
    std::pin::Pin<Box<dyn futures::Stream<Item = lapin::Result<(usize, Delivery)>> + Send>>;
