//! One client connection: the handshake (protocol header, start, tune,
//! open), then channels and their methods until close.
//!
//! # Concurrency
//! One task per connection reads frames, handles them in order, and writes
//! replies and deliveries; queues send deliveries to it over a channel.
//! Publishes read together are appended together (one append per queue),
//! and their confirms go out once every append is committed.
//!
//! # Errors
//! A channel error (4xx) closes the channel with channel.close; a
//! connection error (5xx) closes the connection with connection.close.
//! Nothing of a publish whose frames are bad reaches a queue; the confirms
//! of publishes complete before the error go out before the close, and
//! nothing follows a connection.close.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::codec::{
    self, BasicDeliver, BasicProperties, BasicPublish, BasicReturn, Close, ConnectionStart,
    ContentHeader, DecodeError, FieldTable, FieldValue, Frame, FramePayload, Method,
    ProtocolHeader, Tune, class, reply,
};
use crate::engine::Engine;
use crate::message::Message;
use crate::queue::{self, Delivery, Event, QueueHandle};
use crate::refusal::{Answer, Refusal};

mod handshake;
mod methods;
mod publish;

use handshake::{handshake, write_method};

/// Bytes of input a connection reads ahead while it has publishes to
/// append.
const READ_AHEAD: usize = 1 << 20;

/// Serves one client until it goes away.
pub(crate) async fn serve<S>(gw: Arc<Engine>, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    gw.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let id = gw.next_id();
    Box::pin(run(Arc::clone(&gw), io, id)).await;
    gw.drop_exclusive(id).await;
    gw.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

/// A publish waiting for its content.
struct Incoming {
    publish: BasicPublish,
    header: Option<ContentHeader>,
    body: BytesMut,
}

/// A publish whose content is complete, waiting for its appends.
struct Outgoing {
    channel: u16,
    /// Its confirm sequence number, in confirm mode.
    seq: Option<u64>,
    message: Arc<Message>,
    queues: Vec<QueueHandle>,
    mandatory: bool,
    /// A queue it was routed to refused it (`x-overflow: reject-publish`).
    refused: bool,
}

/// An acknowledgement held back by a transaction.
enum TxAck {
    Ack(u64, bool),
    Nack(u64, bool, bool),
}

#[derive(Default)]
struct Channel {
    /// The server closed it and waits for close-ok.
    closing: bool,
    incoming: Option<Incoming>,
    confirm: bool,
    next_seq: u64,
    tx: bool,
    tx_publishes: Vec<Outgoing>,
    tx_acks: Vec<TxAck>,
    prefetch: u16,
    /// Consumer tag → (vhost queue name, queue).
    consumers: HashMap<String, (String, QueueHandle)>,
    next_tag: u64,
    /// Delivery tag → (queue, offset, counted in `budget`).
    unacked: BTreeMap<u64, (QueueHandle, i64, bool)>,
    /// `basic.qos` with `global`: the room its consumers share.
    budget: Option<Arc<queue::Budget>>,
    /// Queues it took messages from (to requeue on close).
    used: HashMap<String, QueueHandle>,
}

struct Conn {
    gw: Arc<Engine>,
    id: u64,
    vhost: String,
    frame_max: u32,
    channel_max: u16,
    channels: HashMap<u16, Channel>,
    events: mpsc::UnboundedSender<Event>,
    out: BytesMut,
    pending: Vec<Outgoing>,
    /// It has published (a resource alarm stops reading from it).
    published: bool,
    /// Queues it published to that hold it back for now (flow control):
    /// it is not read until they have room.
    flow: Vec<QueueHandle>,
}

enum Step {
    Go,
    /// The client closed the connection (close-ok sent).
    Closed,
    /// A connection error: connection.close sent.
    Fail,
}

async fn run<S>(gw: Arc<Engine>, mut io: S, id: u64)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut rbuf = BytesMut::with_capacity(4096);
    let deadline = tokio::time::Instant::now() + gw.config.handshake_timeout;
    // Protocol header.
    loop {
        match codec::check_protocol_header(&rbuf) {
            ProtocolHeader::Valid => break,
            ProtocolHeader::Unsupported => {
                let _ = io.write_all(&codec::PROTOCOL_HEADER).await;
                let _ = io.shutdown().await;
                return;
            }
            ProtocolHeader::Incomplete => {}
        }
        match tokio::time::timeout_at(deadline, io.read_buf(&mut rbuf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
    let _ = rbuf.split_to(8);
    let Some((vhost, tune, hears_blocked)) =
        Box::pin(handshake(&gw, &mut io, &mut rbuf, deadline)).await
    else {
        let _ = io.shutdown().await;
        return;
    };
    let (events, mut rx) = mpsc::unbounded_channel();
    let mut conn = Conn {
        gw: Arc::clone(&gw),
        id,
        vhost,
        frame_max: tune.frame_max,
        channel_max: tune.channel_max,
        channels: HashMap::new(),
        events,
        out: BytesMut::new(),
        pending: Vec::new(),
        published: false,
        flow: Vec::new(),
    };
    let mut alarm = gw.alarm.subscribe();
    let mut vhost_deleted = gw.vhost_deleted.subscribe();
    // Told connection.blocked (only a connection that publishes is, as in
    // RabbitMQ: clients hold back every frame while blocked).
    let mut told = false;
    let heartbeat = (tune.heartbeat > 0).then(|| Duration::from_secs(u64::from(tune.heartbeat)));
    let mut beat = tokio::time::interval(heartbeat.map_or(Duration::from_secs(3600), |h| h / 2));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = tokio::time::Instant::now();
    let end = loop {
        // Handle every whole frame read so far, and what the socket
        // already holds (up to READ_AHEAD), so publishes that arrived
        // together are appended together.
        let mut step = Step::Go;
        loop {
            match codec::decode_frame(&mut rbuf, conn.frame_max) {
                Ok(Some(frame)) => {
                    step = conn.frame(frame).await;
                    if !matches!(step, Step::Go) {
                        break;
                    }
                }
                Ok(None) => {
                    if conn.pending.is_empty() || rbuf.len() >= READ_AHEAD {
                        break;
                    }
                    rbuf.reserve(64 << 10);
                    match io.read_buf(&mut rbuf).now_or_never() {
                        Some(Ok(n)) if n > 0 => heard = tokio::time::Instant::now(),
                        _ => break,
                    }
                }
                Err(e) => {
                    debug!(connection = id, "bad frame: {e}");
                    let (class_id, method_id) = e.method_ids();
                    conn.close_connection(e.reply_code(), &frame_text(&e), class_id, method_id)
                        .await;
                    step = Step::Fail;
                    break;
                }
            }
        }
        conn.flush_publishes().await;
        let reason = alarm.borrow_and_update().reason();
        match reason {
            Some(reason) if conn.published && !told => {
                told = true;
                if hears_blocked {
                    conn.send(
                        0,
                        Method::ConnectionBlocked(codec::ConnectionBlocked { reason }),
                    );
                }
            }
            None if told => {
                told = false;
                if hears_blocked {
                    conn.send(0, Method::ConnectionUnblocked);
                }
            }
            _ => {}
        }
        if !conn.out.is_empty() {
            if io.write_all(&conn.out).await.is_err() {
                break Step::Closed;
            }
            conn.out.clear();
        }
        if !matches!(step, Step::Go) {
            break step;
        }
        rbuf.reserve(64 << 10);
        tokio::select! {
            // A resource alarm stops reading from connections that publish
            // (their publishes would wait anyway); consumers go on.
            r = io.read_buf(&mut rbuf), if !told && conn.flow.is_empty() => match r {
                Ok(n) if n > 0 => heard = tokio::time::Instant::now(),
                _ => break Step::Closed,
            },
            Some(ev) = rx.recv() => {
                conn.event(ev);
                while let Ok(ev) = rx.try_recv() {
                    conn.event(ev);
                    if conn.out.len() > 1 << 20 {
                        break;
                    }
                }
            }
            // Handled at the top of the loop.
            Ok(()) = alarm.changed() => {}
            () = room(&conn.flow), if !conn.flow.is_empty() => {
                conn.flow.retain(|q| q.stats.holds_back());
                // Not read meanwhile: its silence is ours.
                heard = tokio::time::Instant::now();
            }
            _ = beat.tick(), if heartbeat.is_some() => {
                // A blocked connection is not read: its silence is ours.
                if told {
                    heard = tokio::time::Instant::now();
                }
                if let Some(h) = heartbeat
                    && heard.elapsed() > h * 2
                {
                    debug!(connection = id, "missed heartbeats");
                    break Step::Closed;
                }
                conn.put(0, FramePayload::Heartbeat);
            }
            Ok(v) = vhost_deleted.recv() => {
                if v == conn.vhost {
                    let text = format!("CONNECTION_FORCED - vhost '{v}' is deleted");
                    conn.close_connection(reply::CONNECTION_FORCED, &text, 0, 0).await;
                    let _ = io.write_all(&conn.out).await;
                    break Step::Fail;
                }
            }
            _ = gw.shutdown.cancelled() => {
                conn.close_connection(reply::CONNECTION_FORCED, "CONNECTION_FORCED - broker shutdown", 0, 0).await;
                let _ = io.write_all(&conn.out).await;
                break Step::Fail;
            }
        }
    };
    if matches!(end, Step::Fail) {
        // Wait briefly for close-ok, then go. Only close-ok counts now, and
        // what comes before it may be the rest of a bad frame: look for its
        // bytes rather than decode, keeping no more than could start one.
        let mut close_ok = BytesMut::new();
        write_method(&mut close_ok, 0, Method::ConnectionCloseOk);
        let keep = close_ok.len() - 1;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match io.read_buf(&mut rbuf).await {
                    Ok(n) if n > 0 => {}
                    _ => return,
                }
                if rbuf.windows(close_ok.len()).any(|w| w == &close_ok[..]) {
                    return;
                }
                let _ = rbuf.split_to(rbuf.len().saturating_sub(keep));
            }
        })
        .await;
    }
    let _ = io.shutdown().await;
    conn.release_all().await;
}

/// Returns when one of `queues` may have room (a notification, or a
/// short while: the caller checks again).
async fn room(queues: &[QueueHandle]) {
    if queues.is_empty() {
        return;
    }
    let waits = queues.iter().map(|q| Box::pin(q.stats.room.notified()));
    let _ = tokio::time::timeout(
        Duration::from_millis(20),
        futures::future::select_all(waits),
    )
    .await;
}

fn frame_text(e: &DecodeError) -> String {
    let name = match e.reply_code() {
        reply::FRAME_ERROR => "FRAME_ERROR",
        reply::SYNTAX_ERROR => "SYNTAX_ERROR",
        reply::NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        reply::UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        _ => "COMMAND_INVALID",
    };
    format!("{name} - {e}")
}

impl Conn {
    fn put(&mut self, channel: u16, payload: FramePayload) {
        let _ = codec::encode_frame(&Frame { channel, payload }, &mut self.out);
    }

    fn send(&mut self, channel: u16, m: Method) {
        self.put(channel, FramePayload::Method(m));
    }

    fn send_content(&mut self, channel: u16, m: Method, props: &BasicProperties, body: &[u8]) {
        self.send(channel, m);
        let _ = codec::encode_content(
            channel,
            class::BASIC,
            props,
            body,
            self.frame_max,
            &mut self.out,
        );
    }

    /// Queues connection.close, after the returns and confirms of the
    /// complete publishes before it: nothing may follow a close.
    async fn close_connection(&mut self, code: u16, text: &str, class_id: u16, method_id: u16) {
        self.flush_publishes().await;
        self.send(
            0,
            Method::ConnectionClose(Close {
                reply_code: code,
                reply_text: text.to_string(),
                class_id,
                method_id,
            }),
        );
    }

    /// Closes the connection (a hard error): nothing more is read.
    async fn fail(&mut self, code: u16, text: &str, class_id: u16, method_id: u16) -> Step {
        self.close_connection(code, text, class_id, method_id).await;
        Step::Fail
    }

    /// Answers a refusal on its level.
    async fn refuse(&mut self, channel: u16, r: Refusal, class_id: u16, method_id: u16) -> Step {
        if r.closes_connection() || channel == 0 {
            return self.fail(r.code, &r.text, class_id, method_id).await;
        }
        // The confirms of the channel's complete publishes go before its
        // close (afterwards the channel is closing and gets none).
        self.flush_publishes().await;
        self.release_channel(channel).await;
        if let Some(ch) = self.channels.get_mut(&channel) {
            *ch = Channel {
                closing: true,
                ..Channel::default()
            };
        }
        self.send(
            channel,
            Method::ChannelClose(Close {
                reply_code: r.code,
                reply_text: r.text,
                class_id,
                method_id,
            }),
        );
        Step::Go
    }

    async fn frame(&mut self, frame: Frame) -> Step {
        let channel = frame.channel;
        match frame.payload {
            FramePayload::Heartbeat => Step::Go,
            FramePayload::Method(m) => {
                let (class_id, method_id) = (m.class_id(), m.method_id());
                // A method while a publish waits for its content.
                if let Some(ch) = self.channels.get(&channel)
                    && ch.incoming.is_some()
                    && !ch.closing
                {
                    let text = format!(
                        "UNEXPECTED_FRAME - expected content header or body for channel {channel}, got {}",
                        m.name()
                    );
                    return self
                        .fail(reply::UNEXPECTED_FRAME, &text, class_id, method_id)
                        .await;
                }
                match self.method(channel, m).await {
                    Ok(step) => step,
                    Err(r) => self.refuse(channel, r, class_id, method_id).await,
                }
            }
            FramePayload::Header(h) => self.content_header(channel, h).await,
            FramePayload::Body(b) => self.content_body(channel, b).await,
        }
    }

    /// Content on a channel that is not open: 504 CHANNEL_ERROR, as for
    /// a method there.
    async fn unopened(&mut self, channel: u16, what: &str) -> Step {
        self.fail(
            reply::CHANNEL_ERROR,
            &format!("CHANNEL_ERROR - {what} on channel {channel}, which is not open"),
            0,
            0,
        )
        .await
    }

    async fn unexpected(&mut self, channel: u16, what: &str) -> Step {
        self.fail(
            reply::UNEXPECTED_FRAME,
            &format!("UNEXPECTED_FRAME - {what} on channel {channel} without a publish before it"),
            0,
            0,
        )
        .await
    }

    /// A delivery from a queue.
    fn event(&mut self, ev: Event) {
        match ev {
            Event::Deliver(d) => self.deliver(d),
            Event::Cancelled { channel, tag } => {
                if let Some(ch) = self.channels.get_mut(&channel)
                    && ch.consumers.remove(&tag).is_some()
                    && !ch.closing
                {
                    self.send(
                        channel,
                        Method::BasicCancel(codec::BasicCancel {
                            consumer_tag: tag,
                            no_wait: true,
                        }),
                    );
                }
            }
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let Some(ch) = self.channels.get_mut(&d.channel).filter(|c| !c.closing) else {
            // The channel is gone: its release requeues what it held.
            if let Some(q) = self.gw.queue_by_topic(&d.topic)
                && !d.settled
            {
                q.reject(vec![d.offset], true);
            }
            return;
        };
        ch.next_tag += 1;
        let tag = ch.next_tag;
        if !d.settled
            && let Some(q) = self.gw.queue_by_topic(&d.topic)
        {
            ch.used.insert(q.topic.to_string(), q.clone());
            ch.unacked.insert(tag, (q, d.offset, d.budgeted));
        }
        let m = Method::BasicDeliver(BasicDeliver {
            consumer_tag: d.consumer_tag.unwrap_or_default(),
            delivery_tag: tag,
            redelivered: d.redelivered,
            exchange: d.message.exchange.clone(),
            routing_key: d.message.routing_key.clone(),
        });
        self.send_content(d.channel, m, &d.message.properties, &d.message.body.clone());
    }

    /// Requeues what a channel holds and drops its consumers; false when
    /// the queues' states (with the channel's acknowledgements) could not
    /// be stored.
    async fn release_channel(&mut self, channel: u16) -> bool {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return true;
        };
        let consumers: Vec<(String, (String, QueueHandle))> = ch.consumers.drain().collect();
        let used: Vec<QueueHandle> = ch.used.drain().map(|(_, q)| q).collect();
        ch.unacked.clear();
        for (_, (_, q)) in &consumers {
            q.release(self.id, channel);
        }
        for q in &used {
            q.release(self.id, channel);
        }
        // The channel's acknowledgements are durable before it is gone
        // (its close-ok, the connection's end).
        let mut synced = std::collections::HashSet::new();
        let mut stored = true;
        for q in consumers.iter().map(|(_, (_, q))| q).chain(&used) {
            if synced.insert(Arc::clone(&q.topic)) {
                stored &= q.sync().await;
            }
        }
        for (_, (name, _)) in consumers {
            self.consumer_gone(name);
        }
        stored
    }

    async fn release_all(&mut self) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            self.release_channel(id).await;
        }
        let n = self.channels.len() as i64;
        self.gw.metrics.channels.fetch_sub(n, Ordering::Relaxed);
        self.channels.clear();
    }

    /// Tells the gateway, in the background, that a consumer of queue
    /// `name` went (an auto-delete queue may go with it).
    fn consumer_gone(&self, name: String) {
        let gw = Arc::clone(&self.gw);
        let vhost = self.vhost.clone();
        tokio::spawn(async move { gw.consumer_gone(&vhost, &name).await });
    }

    /// The connection's vhost, for a method on `channel` (which must be
    /// open, as for [`Conn::channel_mut`]).
    fn vhost_for(&mut self, channel: u16) -> Answer<String> {
        self.channel_mut(channel)?;
        Ok(self.vhost.clone())
    }

    /// The channel a method other than channel.open is for.
    fn channel_mut(&mut self, channel: u16) -> Answer<&mut Channel> {
        self.channels.get_mut(&channel).ok_or_else(|| {
            Refusal::new(
                reply::CHANNEL_ERROR,
                format!("CHANNEL_ERROR - expected 'channel.open' for channel {channel}"),
            )
        })
    }
}
