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
use tracing::debug;

use crate::codec::{
    self, BasicCancelOk, BasicConsumeOk, BasicDeliver, BasicGetOk, BasicProperties, BasicPublish,
    BasicReturn, Close, ConnectionStart, ContentHeader, DecodeError, FieldTable, FieldValue, Flow,
    Frame, FramePayload, MessageCount, Method, ProtocolHeader, QueueDeclareOk, Tune, class, reply,
};
use crate::gateway::{Answer, Inner, Refusal};
use crate::message::Message;
use crate::queue::{self, Consumer, Delivery, Event, QueueHandle};
use crate::routing::Destination;

/// Bytes of input a connection reads ahead while it has publishes to
/// append.
const READ_AHEAD: usize = 1 << 20;

/// Serves one client until it goes away.
pub(crate) async fn serve<S>(gw: Arc<Inner>, io: S)
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
    gw: Arc<Inner>,
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
}

enum Step {
    Go,
    /// The client closed the connection (close-ok sent).
    Closed,
    /// A connection error: connection.close sent.
    Fail,
}

async fn run<S>(gw: Arc<Inner>, mut io: S, id: u64)
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
    };
    let mut alarm = gw.alarm.subscribe();
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
                    let (class_id, method_id) = match e {
                        DecodeError::UnknownMethod {
                            class_id,
                            method_id,
                        } => (class_id, method_id),
                        _ => (0, 0),
                    };
                    conn.close_connection(e.reply_code(), &frame_text(&e), class_id, method_id)
                        .await;
                    step = Step::Fail;
                    break;
                }
            }
        }
        conn.flush_publishes().await;
        let reason = alarm.borrow_and_update().clone();
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
            r = io.read_buf(&mut rbuf), if !told => match r {
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

fn server_properties() -> FieldTable {
    let mut caps = FieldTable::new();
    for c in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "per_consumer_qos",
        "authentication_failure_close",
    ] {
        caps.insert(c, FieldValue::Bool(true));
    }
    let mut t = FieldTable::new();
    let text = |s: &str| FieldValue::LongString(Bytes::from(s.to_string().into_bytes()));
    t.insert("product", text("Fjord"));
    t.insert("version", text(env!("CARGO_PKG_VERSION")));
    t.insert("platform", text("Rust"));
    t.insert("capabilities", FieldValue::Table(caps));
    t
}

fn write_method(out: &mut BytesMut, channel: u16, m: Method) {
    let _ = codec::encode_frame(
        &Frame {
            channel,
            payload: FramePayload::Method(m),
        },
        out,
    );
}

/// start/start-ok, tune/tune-ok, open/open-ok. `None`: the client was
/// refused or went away.
async fn handshake<S>(
    gw: &Inner,
    io: &mut S,
    rbuf: &mut BytesMut,
    deadline: tokio::time::Instant,
) -> Option<(String, Tune, bool)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut out = BytesMut::new();
    write_method(
        &mut out,
        0,
        Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
            locales: Bytes::from_static(b"en_US"),
        }),
    );
    io.write_all(&out).await.ok()?;
    out.clear();
    let next = async |rbuf: &mut BytesMut, io: &mut S| -> Option<Method> {
        loop {
            match codec::decode_frame(rbuf, codec::FRAME_MIN_SIZE) {
                Ok(Some(Frame {
                    payload: FramePayload::Method(m),
                    ..
                })) => return Some(m),
                Ok(Some(_)) => return None,
                Ok(None) => {}
                Err(e) => {
                    debug!("bad frame in handshake: {e}");
                    return None;
                }
            }
            match tokio::time::timeout_at(deadline, io.read_buf(rbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    };
    let Method::ConnectionStartOk(ok) = next(rbuf, io).await? else {
        return None;
    };
    let creds = match ok.mechanism.as_str() {
        "PLAIN" => codec::parse_plain(&ok.response),
        "AMQPLAIN" => codec::parse_amqplain(&ok.response),
        _ => None,
    };
    let allowed = match &creds {
        Some((user, pass)) if gw.config.allow_guest && user == "guest" && pass == "guest" => true,
        Some((user, pass)) => gw.broker.authenticate(user, pass.as_bytes()).is_some(),
        None => false,
    };
    if !allowed {
        let text = format!(
            "ACCESS_REFUSED - Login was refused using authentication mechanism {}",
            ok.mechanism
        );
        write_method(
            &mut out,
            0,
            Method::ConnectionClose(Close {
                reply_code: reply::ACCESS_REFUSED,
                reply_text: text,
                class_id: class::CONNECTION,
                method_id: 11,
            }),
        );
        let _ = io.write_all(&out).await;
        return None;
    }
    let offered = Tune {
        channel_max: gw.config.channel_max,
        frame_max: gw.config.frame_max,
        heartbeat: gw.config.heartbeat,
    };
    write_method(&mut out, 0, Method::ConnectionTune(offered));
    io.write_all(&out).await.ok()?;
    out.clear();
    let Method::ConnectionTuneOk(asked) = next(rbuf, io).await? else {
        return None;
    };
    let pick = |asked: u32, offered: u32| match (asked, offered) {
        (0, o) => o,
        (a, 0) => a,
        (a, o) => a.min(o),
    };
    let tune = Tune {
        channel_max: u16::try_from(pick(
            u32::from(asked.channel_max),
            u32::from(offered.channel_max),
        ))
        .unwrap_or(offered.channel_max),
        frame_max: pick(asked.frame_max, offered.frame_max).max(codec::FRAME_MIN_SIZE),
        heartbeat: asked.heartbeat,
    };
    let Method::ConnectionOpen(open) = next(rbuf, io).await? else {
        return None;
    };
    if !gw.has_vhost(&open.virtual_host).await {
        write_method(
            &mut out,
            0,
            Method::ConnectionClose(Close {
                reply_code: reply::NOT_ALLOWED,
                reply_text: format!("NOT_ALLOWED - vhost {} not found", open.virtual_host),
                class_id: class::CONNECTION,
                method_id: 40,
            }),
        );
        let _ = io.write_all(&out).await;
        return None;
    }
    write_method(&mut out, 0, Method::ConnectionOpenOk);
    io.write_all(&out).await.ok()?;
    let hears_blocked = matches!(
        ok.client_properties.get("capabilities"),
        Some(FieldValue::Table(caps)) if caps.get("connection.blocked") == Some(&FieldValue::Bool(true))
    );
    Some((open.virtual_host, tune, hears_blocked))
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

    /// Answers a refusal on its level.
    async fn refuse(&mut self, channel: u16, r: Refusal, class_id: u16, method_id: u16) -> Step {
        if r.closes_connection() || channel == 0 {
            self.close_connection(r.code, &r.text, class_id, method_id)
                .await;
            return Step::Fail;
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
                    self.close_connection(
                        reply::UNEXPECTED_FRAME,
                        &format!("UNEXPECTED_FRAME - expected content header or body for channel {channel}, got {}", m.name()),
                        class_id,
                        method_id,
                    )
                    .await;
                    return Step::Fail;
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

    async fn content_header(&mut self, channel: u16, h: ContentHeader) -> Step {
        let max_body = 128u64 << 20;
        let Some(ch) = self.channels.get_mut(&channel) else {
            return self.unexpected(channel, "content header").await;
        };
        if ch.closing {
            return Step::Go;
        }
        match &mut ch.incoming {
            Some(inc) if inc.header.is_none() => {
                if h.body_size > max_body {
                    self.close_connection(
                        reply::FRAME_ERROR,
                        &format!("FRAME_ERROR - message body of {} bytes exceeds the maximum of {max_body}", h.body_size),
                        class::BASIC,
                        40,
                    )
                    .await;
                    return Step::Fail;
                }
                let empty = h.body_size == 0;
                inc.header = Some(h);
                if empty {
                    return self.content_done(channel).await;
                }
                Step::Go
            }
            _ => self.unexpected(channel, "content header").await,
        }
    }

    async fn content_body(&mut self, channel: u16, b: Bytes) -> Step {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return self.unexpected(channel, "content body").await;
        };
        if ch.closing {
            return Step::Go;
        }
        match &mut ch.incoming {
            Some(Incoming {
                header: Some(h),
                body,
                ..
            }) => {
                body.extend_from_slice(&b);
                let size = body.len() as u64;
                if size > h.body_size {
                    let declared = h.body_size;
                    self.close_connection(
                        reply::FRAME_ERROR,
                        &format!("FRAME_ERROR - content body of {size} bytes is larger than the {declared} declared"),
                        class::BASIC,
                        40,
                    )
                    .await;
                    return Step::Fail;
                }
                if size == h.body_size {
                    return self.content_done(channel).await;
                }
                Step::Go
            }
            _ => self.unexpected(channel, "content body").await,
        }
    }

    async fn unexpected(&mut self, channel: u16, what: &str) -> Step {
        self.close_connection(
            reply::UNEXPECTED_FRAME,
            &format!("UNEXPECTED_FRAME - {what} on channel {channel} without a publish before it"),
            0,
            0,
        )
        .await;
        Step::Fail
    }

    /// A publish is complete: route it and queue it for appending.
    async fn content_done(&mut self, channel: u16) -> Step {
        let Some(inc) = self
            .channels
            .get_mut(&channel)
            .and_then(|c| c.incoming.take())
        else {
            return Step::Go;
        };
        let Some(header) = inc.header else {
            return Step::Go;
        };
        let message = Arc::new(Message {
            exchange: inc.publish.exchange.clone(),
            routing_key: inc.publish.routing_key.clone(),
            properties: header.properties,
            body: inc.body.freeze(),
        });
        let routed = self
            .gw
            .route(
                &self.vhost,
                &inc.publish.exchange,
                &inc.publish.routing_key,
                message.properties.headers.as_ref(),
            )
            .await;
        let mut queues = match routed {
            Ok(q) => q,
            Err(r) => return self.refuse(channel, r, class::BASIC, 40).await,
        };
        let before = queues.len();
        queues.retain(|q| !q.refuses_publish());
        let refused = queues.len() < before;
        self.gw.metrics.published.fetch_add(1, Ordering::Relaxed);
        self.published = true;
        if queues.is_empty() {
            self.gw.metrics.unroutable.fetch_add(1, Ordering::Relaxed);
        }
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Step::Go;
        };
        let seq = ch.confirm.then(|| {
            ch.next_seq += 1;
            ch.next_seq
        });
        let out = Outgoing {
            channel,
            seq,
            message,
            queues,
            mandatory: inc.publish.mandatory,
            refused,
        };
        if ch.tx {
            ch.tx_publishes.push(out);
        } else {
            self.pending.push(out);
        }
        Step::Go
    }

    /// Appends every pending publish (one append per queue), then sends
    /// returns and confirms in publish order.
    async fn flush_publishes(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let failed = append_all(&self.gw, &pending).await;
        self.answer_publishes(pending, &failed);
    }

    fn answer_publishes(
        &mut self,
        done: Vec<Outgoing>,
        failed: &std::collections::HashSet<String>,
    ) {
        // Per channel: the last sequence number, and whether all succeeded.
        let mut confirms: BTreeMap<u16, Vec<(u64, bool)>> = BTreeMap::new();
        for o in done {
            let ok = !o.refused && o.queues.iter().all(|q| !failed.contains(q.topic.as_ref()));
            if o.queues.is_empty() && o.mandatory && !o.refused {
                self.send_content(
                    o.channel,
                    Method::BasicReturn(BasicReturn {
                        reply_code: reply::NO_ROUTE,
                        reply_text: "NO_ROUTE".into(),
                        exchange: o.message.exchange.clone(),
                        routing_key: o.message.routing_key.clone(),
                    }),
                    &o.message.properties,
                    &o.message.body.clone(),
                );
            }
            if let Some(seq) = o.seq {
                confirms.entry(o.channel).or_default().push((seq, ok));
            }
        }
        for (channel, seqs) in confirms {
            if self.channels.get(&channel).is_none_or(|c| c.closing) {
                continue;
            }
            if seqs.iter().all(|(_, ok)| *ok) {
                // One multiple ack covers every earlier sequence number:
                // confirms on a channel go out in order.
                if let Some((last, _)) = seqs.last() {
                    self.send(
                        channel,
                        Method::BasicAck(codec::BasicAck {
                            delivery_tag: *last,
                            multiple: seqs.len() > 1,
                        }),
                    );
                }
            } else {
                for (seq, ok) in seqs {
                    if ok {
                        self.send(
                            channel,
                            Method::BasicAck(codec::BasicAck {
                                delivery_tag: seq,
                                multiple: false,
                            }),
                        );
                    } else {
                        self.send(
                            channel,
                            Method::BasicNack(codec::BasicNack {
                                delivery_tag: seq,
                                multiple: false,
                                requeue: false,
                            }),
                        );
                    }
                }
            }
            self.gw.metrics.confirmed.fetch_add(1, Ordering::Relaxed);
        }
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

    /// Requeues what a channel holds and drops its consumers.
    async fn release_channel(&mut self, channel: u16) {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
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
        for (_, (name, _)) in consumers {
            let gw = Arc::clone(&self.gw);
            let vhost = self.vhost.clone();
            tokio::spawn(async move { gw.consumer_gone(&vhost, &name).await });
        }
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

    /// Binds (`bind`) or unbinds `to` and `source`; sends `ok` after.
    #[allow(clippy::too_many_arguments)]
    async fn binding(
        &mut self,
        channel: u16,
        source: &str,
        to: Destination,
        routing_key: &str,
        arguments: FieldTable,
        bind: bool,
        ok: Option<Method>,
    ) -> Answer<()> {
        self.channel_mut(channel)?;
        let vhost = self.vhost.clone();
        self.gw
            .bind(&vhost, source, to, routing_key, arguments, bind, self.id)
            .await?;
        if let Some(ok) = ok {
            self.send(channel, ok);
        }
        Ok(())
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

    #[allow(clippy::too_many_lines)]
    async fn method(&mut self, channel: u16, m: Method) -> Answer<Step> {
        // Connection class on channel 0 only, others never on channel 0.
        if channel == 0 {
            return Ok(match m {
                Method::ConnectionClose(_) => {
                    self.send(0, Method::ConnectionCloseOk);
                    Step::Closed
                }
                Method::ConnectionCloseOk => Step::Closed,
                Method::ConnectionUpdateSecret(_) => {
                    self.send(0, Method::ConnectionUpdateSecretOk);
                    Step::Go
                }
                other => {
                    return Err(Refusal::new(
                        reply::COMMAND_INVALID,
                        format!("COMMAND_INVALID - {} on channel 0", other.name()),
                    ));
                }
            });
        }
        if m.class_id() == class::CONNECTION {
            return Err(Refusal::new(
                reply::COMMAND_INVALID,
                format!("COMMAND_INVALID - {} on channel {channel}", m.name()),
            ));
        }
        // A channel the server closed ignores all but close and close-ok.
        if let Some(ch) = self.channels.get(&channel)
            && ch.closing
        {
            match m {
                Method::ChannelCloseOk => {
                    self.channels.remove(&channel);
                    self.gw.metrics.channels.fetch_sub(1, Ordering::Relaxed);
                }
                Method::ChannelClose(_) => {
                    self.send(channel, Method::ChannelCloseOk);
                }
                _ => {}
            }
            return Ok(Step::Go);
        }
        let vhost = self.vhost.clone();
        match m {
            Method::ChannelOpen => {
                if self.channels.contains_key(&channel) {
                    return Err(Refusal::new(
                        reply::CHANNEL_ERROR,
                        format!("CHANNEL_ERROR - second 'channel.open' seen for channel {channel}"),
                    ));
                }
                if channel > self.channel_max {
                    return Err(Refusal::new(
                        reply::NOT_ALLOWED,
                        format!(
                            "NOT_ALLOWED - channel {channel} above channel-max {}",
                            self.channel_max
                        ),
                    ));
                }
                self.channels.insert(channel, Channel::default());
                self.gw.metrics.channels.fetch_add(1, Ordering::Relaxed);
                self.send(channel, Method::ChannelOpenOk);
            }
            Method::ChannelClose(_) => {
                self.channel_mut(channel)?;
                self.release_channel(channel).await;
                self.channels.remove(&channel);
                self.gw.metrics.channels.fetch_sub(1, Ordering::Relaxed);
                self.send(channel, Method::ChannelCloseOk);
            }
            Method::ChannelCloseOk => {
                self.channel_mut(channel)?;
            }
            Method::ChannelFlow(f) => {
                self.channel_mut(channel)?;
                self.send(channel, Method::ChannelFlowOk(Flow { active: f.active }));
            }
            Method::ChannelFlowOk(_) => {
                self.channel_mut(channel)?;
            }
            Method::ExchangeDeclare(d) => {
                self.channel_mut(channel)?;
                self.gw
                    .declare_exchange(
                        &vhost,
                        &d.exchange,
                        &d.exchange_type,
                        d.passive,
                        d.durable,
                        d.auto_delete,
                        d.internal,
                        d.arguments,
                    )
                    .await?;
                if !d.no_wait {
                    self.send(channel, Method::ExchangeDeclareOk);
                }
            }
            Method::ExchangeDelete(d) => {
                self.channel_mut(channel)?;
                self.gw
                    .delete_exchange(&vhost, &d.exchange, d.if_unused)
                    .await?;
                if !d.no_wait {
                    self.send(channel, Method::ExchangeDeleteOk);
                }
            }
            Method::ExchangeBind(b) => {
                let to = Destination::exchange(&b.destination);
                let ok = (!b.no_wait).then_some(Method::ExchangeBindOk);
                self.binding(
                    channel,
                    &b.source,
                    to,
                    &b.routing_key,
                    b.arguments,
                    true,
                    ok,
                )
                .await?;
            }
            Method::ExchangeUnbind(b) => {
                let to = Destination::exchange(&b.destination);
                let ok = (!b.no_wait).then_some(Method::ExchangeUnbindOk);
                self.binding(
                    channel,
                    &b.source,
                    to,
                    &b.routing_key,
                    b.arguments,
                    false,
                    ok,
                )
                .await?;
            }
            Method::QueueDeclare(d) => {
                self.channel_mut(channel)?;
                let declared = self
                    .gw
                    .declare_queue(
                        &vhost,
                        &d.queue,
                        d.passive,
                        d.durable,
                        d.exclusive,
                        d.auto_delete,
                        d.arguments,
                        self.id,
                    )
                    .await?;
                if !d.no_wait {
                    self.send(
                        channel,
                        Method::QueueDeclareOk(QueueDeclareOk {
                            queue: declared.name,
                            message_count: declared.messages,
                            consumer_count: declared.consumers,
                        }),
                    );
                }
            }
            Method::QueueBind(b) => {
                let to = Destination::queue(&b.queue);
                let ok = (!b.no_wait).then_some(Method::QueueBindOk);
                self.binding(
                    channel,
                    &b.exchange,
                    to,
                    &b.routing_key,
                    b.arguments,
                    true,
                    ok,
                )
                .await?;
            }
            Method::QueueUnbind(b) => {
                let to = Destination::queue(&b.queue);
                let ok = Some(Method::QueueUnbindOk);
                self.binding(
                    channel,
                    &b.exchange,
                    to,
                    &b.routing_key,
                    b.arguments,
                    false,
                    ok,
                )
                .await?;
            }
            Method::QueuePurge(p) => {
                self.channel_mut(channel)?;
                let q = self.gw.queue(&vhost, &p.queue, self.id).await?;
                let n = q.purge().await;
                if !p.no_wait {
                    self.send(
                        channel,
                        Method::QueuePurgeOk(MessageCount { message_count: n }),
                    );
                }
            }
            Method::QueueDelete(d) => {
                self.channel_mut(channel)?;
                let n = self
                    .gw
                    .delete_queue(&vhost, &d.queue, d.if_unused, d.if_empty, Some(self.id))
                    .await?;
                if !d.no_wait {
                    self.send(
                        channel,
                        Method::QueueDeleteOk(MessageCount { message_count: n }),
                    );
                }
            }
            Method::BasicQos(q) => {
                let ch = self.channel_mut(channel)?;
                if q.global {
                    // Shared by the consumers the channel starts from now.
                    ch.budget = (q.prefetch_count > 0).then(|| {
                        Arc::new(queue::Budget {
                            held: std::sync::atomic::AtomicU32::new(0),
                            limit: u32::from(q.prefetch_count),
                        })
                    });
                } else {
                    ch.prefetch = q.prefetch_count;
                }
                self.send(channel, Method::BasicQosOk);
            }
            Method::BasicConsume(c) => {
                self.channel_mut(channel)?;
                let q = self.gw.queue(&vhost, &c.queue, self.id).await?;
                let ch = self.channel_mut(channel)?;
                let tag = if c.consumer_tag.is_empty() {
                    format!("amq.ctag-{}-{}", channel, ch.consumers.len() + 1)
                } else {
                    c.consumer_tag.clone()
                };
                if ch.consumers.contains_key(&tag) {
                    return Err(Refusal::new(
                        reply::NOT_ALLOWED,
                        format!("NOT_ALLOWED - attempt to reuse consumer tag '{tag}'"),
                    ));
                }
                let prefetch = ch.prefetch;
                let budget = ch.budget.clone();
                ch.consumers
                    .insert(tag.clone(), (c.queue.clone(), q.clone()));
                ch.used.insert(q.topic.to_string(), q.clone());
                // consume-ok goes before any delivery.
                if !c.no_wait {
                    self.send(
                        channel,
                        Method::BasicConsumeOk(BasicConsumeOk {
                            consumer_tag: tag.clone(),
                        }),
                    );
                }
                let refused = q
                    .consume(Consumer {
                        connection: self.id,
                        channel,
                        tag: tag.clone(),
                        prefetch,
                        no_ack: c.no_ack,
                        exclusive: c.exclusive,
                        tx: self.events.clone(),
                        budget,
                    })
                    .await;
                if refused.is_err() {
                    if let Ok(ch) = self.channel_mut(channel) {
                        ch.consumers.remove(&tag);
                    }
                    return Err(Refusal::new(
                        reply::ACCESS_REFUSED,
                        format!(
                            "ACCESS_REFUSED - queue '{}' in vhost '{vhost}' in exclusive use",
                            c.queue
                        ),
                    ));
                }
            }
            Method::BasicCancel(c) => {
                let ch = self.channel_mut(channel)?;
                if let Some((name, q)) = ch.consumers.remove(&c.consumer_tag) {
                    q.cancel(self.id, channel, &c.consumer_tag);
                    let gw = Arc::clone(&self.gw);
                    let vhost = vhost.clone();
                    tokio::spawn(async move { gw.consumer_gone(&vhost, &name).await });
                }
                if !c.no_wait {
                    self.send(
                        channel,
                        Method::BasicCancelOk(BasicCancelOk {
                            consumer_tag: c.consumer_tag,
                        }),
                    );
                }
            }
            Method::BasicPublish(p) => {
                let ch = self.channel_mut(channel)?;
                ch.incoming = Some(Incoming {
                    publish: p,
                    header: None,
                    body: BytesMut::new(),
                });
            }
            Method::BasicGet(g) => {
                self.channel_mut(channel)?;
                // Earlier publishes of this connection are in the queue first.
                self.flush_publishes().await;
                let q = self.gw.queue(&vhost, &g.queue, self.id).await?;
                match q.get(self.id, channel, g.no_ack).await {
                    Some(d) => {
                        let ch = self.channel_mut(channel)?;
                        ch.next_tag += 1;
                        let tag = ch.next_tag;
                        ch.used.insert(q.topic.to_string(), q.clone());
                        if !d.settled {
                            ch.unacked.insert(tag, (q.clone(), d.offset, false));
                        }
                        self.send_content(
                            channel,
                            Method::BasicGetOk(BasicGetOk {
                                delivery_tag: tag,
                                redelivered: d.redelivered,
                                exchange: d.message.exchange.clone(),
                                routing_key: d.message.routing_key.clone(),
                                message_count: d.remaining,
                            }),
                            &d.message.properties,
                            &d.message.body.clone(),
                        );
                    }
                    None => self.send(channel, Method::BasicGetEmpty),
                }
            }
            Method::BasicAck(a) => {
                let ch = self.channel_mut(channel)?;
                if ch.tx {
                    ch.tx_acks.push(TxAck::Ack(a.delivery_tag, a.multiple));
                } else {
                    settle(ch, a.delivery_tag, a.multiple, None)?;
                }
            }
            Method::BasicNack(n) => {
                let ch = self.channel_mut(channel)?;
                if ch.tx {
                    ch.tx_acks
                        .push(TxAck::Nack(n.delivery_tag, n.multiple, n.requeue));
                } else {
                    settle(ch, n.delivery_tag, n.multiple, Some(n.requeue))?;
                }
            }
            Method::BasicReject(r) => {
                let ch = self.channel_mut(channel)?;
                if ch.tx {
                    ch.tx_acks
                        .push(TxAck::Nack(r.delivery_tag, false, r.requeue));
                } else {
                    settle(ch, r.delivery_tag, false, Some(r.requeue))?;
                }
            }
            Method::BasicRecover(r) | Method::BasicRecoverAsync(r) => {
                let ch = self.channel_mut(channel)?;
                let _ = r.requeue;
                ch.unacked.clear();
                if let Some(b) = &ch.budget {
                    b.release(u32::MAX);
                }
                let used: Vec<QueueHandle> = ch.used.values().cloned().collect();
                for q in used {
                    q.recover(self.id, channel);
                }
                self.send(channel, Method::BasicRecoverOk);
            }
            Method::ConfirmSelect(c) => {
                let ch = self.channel_mut(channel)?;
                if ch.tx {
                    return Err(Refusal::new(
                        reply::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
                    ));
                }
                ch.confirm = true;
                if !c.no_wait {
                    self.send(channel, Method::ConfirmSelectOk);
                }
            }
            Method::TxSelect => {
                let ch = self.channel_mut(channel)?;
                if ch.confirm {
                    return Err(Refusal::new(
                        reply::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
                    ));
                }
                ch.tx = true;
                self.send(channel, Method::TxSelectOk);
            }
            Method::TxCommit => {
                let ch = self.channel_mut(channel)?;
                if !ch.tx {
                    return Err(Refusal::new(
                        reply::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - channel is not transactional",
                    ));
                }
                let publishes = std::mem::take(&mut ch.tx_publishes);
                let acks = std::mem::take(&mut ch.tx_acks);
                self.flush_publishes().await;
                let failed = append_all(&self.gw, &publishes).await;
                if !failed.is_empty() {
                    return Err(Refusal::new(
                        reply::INTERNAL_ERROR,
                        "INTERNAL_ERROR - the transaction's messages could not all be stored",
                    ));
                }
                self.answer_publishes(publishes, &failed);
                let ch = self.channel_mut(channel)?;
                for a in acks {
                    match a {
                        TxAck::Ack(tag, multiple) => settle(ch, tag, multiple, None)?,
                        TxAck::Nack(tag, multiple, requeue) => {
                            settle(ch, tag, multiple, Some(requeue))?;
                        }
                    }
                }
                self.send(channel, Method::TxCommitOk);
            }
            Method::TxRollback => {
                let ch = self.channel_mut(channel)?;
                if !ch.tx {
                    return Err(Refusal::new(
                        reply::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - channel is not transactional",
                    ));
                }
                ch.tx_publishes.clear();
                ch.tx_acks.clear();
                self.send(channel, Method::TxRollbackOk);
            }
            other => {
                self.channel_mut(channel)?;
                return Err(Refusal::new(
                    reply::COMMAND_INVALID,
                    format!("COMMAND_INVALID - a client does not send {}", other.name()),
                ));
            }
        }
        Ok(Step::Go)
    }
}

/// Acknowledges (`requeue` None) or rejects delivery `tag` (and with
/// `multiple` every earlier one; tag 0 with `multiple`: all).
fn settle(ch: &mut Channel, tag: u64, multiple: bool, requeue: Option<bool>) -> Answer<()> {
    let tags: Vec<u64> = if multiple {
        let upto = if tag == 0 { u64::MAX } else { tag };
        ch.unacked.range(..=upto).map(|(t, _)| *t).collect()
    } else if ch.unacked.contains_key(&tag) {
        vec![tag]
    } else {
        Vec::new()
    };
    if tags.is_empty() && !(multiple && tag == 0) {
        return Err(Refusal::new(
            reply::PRECONDITION_FAILED,
            format!("PRECONDITION_FAILED - unknown delivery tag {tag}"),
        ));
    }
    let mut by_queue: HashMap<String, (QueueHandle, Vec<i64>)> = HashMap::new();
    let mut freed = 0u32;
    for t in tags {
        if let Some((q, offset, budgeted)) = ch.unacked.remove(&t) {
            freed += u32::from(budgeted);
            by_queue
                .entry(q.topic.to_string())
                .or_insert_with(|| (q, Vec::new()))
                .1
                .push(offset);
        }
    }
    for (_, (q, offsets)) in by_queue {
        match requeue {
            None => q.ack(offsets),
            Some(requeue) => q.reject(offsets, requeue),
        }
    }
    // Room given back: every queue the channel consumes from may deliver.
    if freed > 0
        && let Some(b) = &ch.budget
    {
        b.release(freed);
        for (_, q) in ch.consumers.values() {
            q.poke();
        }
    }
    Ok(())
}

/// Appends each queue's messages of `publishes` as one batch, all queues at
/// once; returns the topics whose append failed.
async fn append_all(gw: &Inner, publishes: &[Outgoing]) -> std::collections::HashSet<String> {
    let mut by_queue: HashMap<String, Vec<Arc<Message>>> = HashMap::new();
    for o in publishes {
        for q in &o.queues {
            by_queue
                .entry(q.topic.to_string())
                .or_default()
                .push(Arc::clone(&o.message));
        }
    }
    let appends = by_queue.into_iter().map(|(topic, messages)| async move {
        let r = queue::append(&gw.broker, &topic, &messages).await;
        (topic, r)
    });
    futures::future::join_all(appends)
        .await
        .into_iter()
        .filter_map(|(topic, r)| match r {
            Ok(()) => None,
            Err(e) => {
                debug!(topic, "append failed: {e}");
                Some(topic)
            }
        })
        .collect()
}
