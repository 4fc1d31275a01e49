//! Bad AMQP 0-9-1 input, frame by frame over raw TCP, against a real
//! `fjord serve`: each mistake gets the specification's reply code on the
//! right level (channel.close for soft errors, after which the connection
//! goes on; connection.close for hard ones, then the socket closes), with
//! the class and method of the offending method where there is one. A
//! `lapin` client on another connection publishes and consumes throughout,
//! and a publish whose frames were bad never reaches a queue: `basic.get`
//! finds exactly the messages that were properly published and confirmed.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::Server;
use fjord_gateway_amqp::codec::{
    self, BasicAck, BasicDeliver, BasicGet, BasicProperties, BasicPublish, Close, ConfirmSelect,
    ConnectionOpen, ConnectionStartOk, ContentHeader, FieldTable, FieldValue, Frame, FramePayload,
    Method, QueueDeclare, Tune, class, reply,
};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The failure bound of every wait.
const WAIT: Duration = Duration::from_secs(15);

/// What the raw client settles on in tune-ok.
const FRAME_MAX: u32 = 4096;

/// The queue the raw clients publish to.
const TARGET: &str = "target";

fn start(dir: &tempfile::TempDir) -> Server {
    Server::start_with(&dir.path().join("data"), &[])
}

fn frame(channel: u16, payload: FramePayload) -> BytesMut {
    let mut out = BytesMut::new();
    codec::encode_frame(&Frame { channel, payload }, &mut out).unwrap();
    out
}

fn method_frame(channel: u16, m: Method) -> BytesMut {
    frame(channel, FramePayload::Method(m))
}

/// A frame with any type and payload, framed correctly.
fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out.push(codec::FRAME_END);
    out
}

fn publish_method(exchange: &str, routing_key: &str) -> Method {
    Method::BasicPublish(BasicPublish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory: false,
        immediate: false,
    })
}

/// A content header announcing `body_size` bytes.
fn header(channel: u16, body_size: u64) -> BytesMut {
    frame(
        channel,
        FramePayload::Header(ContentHeader {
            class_id: class::BASIC,
            body_size,
            properties: BasicProperties::default(),
        }),
    )
}

fn body(channel: u16, bytes: &[u8]) -> BytesMut {
    frame(channel, FramePayload::Body(Bytes::copy_from_slice(bytes)))
}

/// basic.publish, its content header (the true size) and body frames.
fn publish_frames(channel: u16, exchange: &str, routing_key: &str, bytes: &[u8]) -> BytesMut {
    let mut out = method_frame(channel, publish_method(exchange, routing_key));
    codec::encode_content(
        channel,
        class::BASIC,
        &BasicProperties::default(),
        bytes,
        FRAME_MAX,
        &mut out,
    )
    .unwrap();
    out
}

fn declare(queue: &str, durable: bool, arguments: FieldTable) -> Method {
    Method::QueueDeclare(QueueDeclare {
        queue: queue.into(),
        passive: false,
        durable,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments,
    })
}

fn start_ok(response: &[u8]) -> Method {
    Method::ConnectionStartOk(ConnectionStartOk {
        client_properties: FieldTable::new(),
        mechanism: "PLAIN".into(),
        response: Bytes::copy_from_slice(response),
        locale: "en_US".into(),
    })
}

/// A client speaking frames: the codec's types in, bytes out, and back.
struct Raw {
    io: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn dial(server: &Server) -> Raw {
        let io = tokio::time::timeout(WAIT, TcpStream::connect(&server.amqp))
            .await
            .expect("connected in time")
            .unwrap();
        Raw {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Sends the protocol header and, after connection.start, start-ok
    /// with `response` (PLAIN).
    async fn login(server: &Server, response: &[u8]) -> Raw {
        let mut c = Raw::dial(server).await;
        c.send_bytes(&codec::PROTOCOL_HEADER).await;
        let start = c.method(0).await;
        assert!(matches!(start, Method::ConnectionStart(_)), "{start:?}");
        c.send(0, start_ok(response)).await;
        c
    }

    /// Logs in as guest, settles on `FRAME_MAX` and `heartbeat` seconds,
    /// and sends connection.open for `vhost`.
    async fn handshake(server: &Server, vhost: &str, heartbeat: u16) -> Raw {
        let mut c = Raw::login(server, b"\0guest\0guest").await;
        let tune = c.method(0).await;
        let Method::ConnectionTune(Tune { channel_max, .. }) = tune else {
            panic!("expected connection.tune, got {tune:?}");
        };
        let frame_max = FRAME_MAX;
        let tune_ok = Tune {
            channel_max,
            frame_max,
            heartbeat,
        };
        c.send(0, Method::ConnectionTuneOk(tune_ok)).await;
        let virtual_host = vhost.to_string();
        c.send(0, Method::ConnectionOpen(ConnectionOpen { virtual_host }))
            .await;
        c
    }

    /// An open connection on "/" without heartbeats.
    async fn open(server: &Server) -> Raw {
        let mut c = Raw::handshake(server, "/", 0).await;
        assert_eq!(c.method(0).await, Method::ConnectionOpenOk);
        c
    }

    /// An open connection with channel 1 open in confirm mode.
    async fn confirming(server: &Server) -> Raw {
        let mut c = Raw::open(server).await;
        c.open_channel(1).await;
        let ok = c
            .call(1, Method::ConfirmSelect(ConfirmSelect { no_wait: false }))
            .await;
        assert_eq!(ok, Method::ConfirmSelectOk);
        c
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, channel: u16, m: Method) {
        self.send_bytes(&method_frame(channel, m)).await;
    }

    /// The next frame; `None` once the server closed the connection.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = codec::decode_frame(&mut self.buf, 0).unwrap() {
                return Some(f);
            }
            let read = tokio::time::timeout(WAIT, self.io.read_buf(&mut self.buf))
                .await
                .unwrap_or_else(|_| panic!("nothing from the server within {WAIT:?}"));
            match read {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "a partial frame: {:02x?}", self.buf);
                    return None;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The next frame, which must be a method on `channel`.
    async fn method(&mut self, channel: u16) -> Method {
        match self.frame().await {
            Some(Frame {
                channel: c,
                payload: FramePayload::Method(m),
            }) if c == channel => m,
            other => panic!("expected a method on channel {channel}, got {other:?}"),
        }
    }

    /// Sends `m` and returns the next method on its channel.
    async fn call(&mut self, channel: u16, m: Method) -> Method {
        self.send(channel, m).await;
        self.method(channel).await
    }

    async fn open_channel(&mut self, channel: u16) {
        let ok = self.call(channel, Method::ChannelOpen).await;
        assert_eq!(ok, Method::ChannelOpenOk, "channel.open {channel}");
    }

    /// Declares a (transient) queue: the connection still works.
    async fn works(&mut self, channel: u16) {
        let ok = self
            .call(channel, declare("scratch", false, FieldTable::new()))
            .await;
        assert!(matches!(ok, Method::QueueDeclareOk(_)), "{ok:?}");
    }

    /// Publishes `text` to the target queue on a confirm channel and waits
    /// for its confirm, the `seq`th.
    async fn publish_confirmed(&mut self, channel: u16, text: &str, seq: u64) {
        self.send_bytes(&publish_frames(channel, "", TARGET, text.as_bytes()))
            .await;
        self.confirmed(channel, seq).await;
    }

    async fn confirmed(&mut self, channel: u16, seq: u64) {
        let ack = self.method(channel).await;
        assert_eq!(
            ack,
            Method::BasicAck(BasicAck {
                delivery_tag: seq,
                multiple: false
            }),
            "confirm {seq}"
        );
    }

    /// Expects channel.close with `want` and answers close-ok.
    async fn channel_closed(&mut self, channel: u16, want: Reply) {
        let close = self.method(channel).await;
        assert_close(close, false, want);
        self.send(channel, Method::ChannelCloseOk).await;
    }

    /// Expects connection.close with `want` and nothing after it; answers
    /// close-ok and expects the socket to close. Returns the reply text.
    async fn connection_closed(mut self, want: Reply) -> String {
        let close = self.method(0).await;
        let text = assert_close(close, true, want);
        // The server may already be gone: a failed write is fine.
        let close_ok = method_frame(0, Method::ConnectionCloseOk);
        let _ = self.io.write_all(&close_ok).await;
        assert_eq!(self.frame().await, None, "after connection.close ({text})");
        text
    }
}

/// The reply code, class id and method id of a close.
type Reply = (u16, u16, u16);

/// Asserts that `m` is connection.close (or channel.close) with `want`;
/// returns its reply text.
fn assert_close(m: Method, connection: bool, want: Reply) -> String {
    let close = match (m, connection) {
        (Method::ConnectionClose(c), true) | (Method::ChannelClose(c), false) => c,
        (other, _) => panic!("expected a close with {want:?}, got {other:?}"),
    };
    let got = (close.reply_code, close.class_id, close.method_id);
    assert_eq!(got, want, "{}", close.reply_text);
    close.reply_text
}

/// A well-behaved `lapin` client on a connection of its own: a confirm
/// channel, and a consumer on a queue of its own.
struct Healthy {
    _conn: lapin::Connection,
    ch: lapin::Channel,
    consumer: lapin::Consumer,
    sent: usize,
}

impl Healthy {
    /// Connects and declares the queues the tests use.
    async fn connect(server: &Server) -> Healthy {
        let uri = format!("amqp://guest:guest@{}/%2f", server.amqp);
        let conn = tokio::time::timeout(
            WAIT,
            lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()),
        )
        .await
        .expect("connected in time")
        .unwrap();
        let ch = conn.create_channel().await.unwrap();
        for queue in ["healthy", TARGET] {
            ch.queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        }
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let consumer = ch
            .basic_consume(
                "healthy".into(),
                "h".into(),
                BasicConsumeOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        let mut h = Healthy {
            _conn: conn,
            ch,
            consumer,
            sent: 0,
        };
        h.round_trip().await;
        h
    }

    /// Publishes a message with confirm and consumes it back.
    async fn round_trip(&mut self) {
        self.sent += 1;
        let text = format!("ping-{}", self.sent);
        let confirm = tokio::time::timeout(WAIT, async {
            self.ch
                .basic_publish(
                    "".into(),
                    "healthy".into(),
                    BasicPublishOptions::default(),
                    text.as_bytes(),
                    lapin::BasicProperties::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap()
        })
        .await
        .expect("confirmed in time");
        assert!(confirm.is_ack(), "{text} confirmed");
        let d = tokio::time::timeout(WAIT, self.consumer.next())
            .await
            .expect("delivered in time")
            .unwrap()
            .unwrap();
        assert_eq!(String::from_utf8(d.data.clone()).unwrap(), text);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }

    /// Takes every message in `queue` with `basic.get`.
    async fn drain(&self, queue: &str) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(m) = self
            .ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            got.push(String::from_utf8(m.delivery.data.clone()).unwrap());
        }
        got
    }
}

/// Reads until the server closes the connection.
async fn read_to_close(io: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let read = tokio::time::timeout(WAIT, io.read_buf(&mut out))
            .await
            .unwrap_or_else(|_| panic!("not closed within {WAIT:?} (read {out:02x?})"));
        match read {
            Ok(0) => return out,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[tokio::test]
async fn a_wrong_protocol_header_is_answered_with_0_9_1_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut healthy = Healthy::connect(&server).await;
    for header in [
        &b"AMQP\x01\x01\x00\x09"[..], // 0-9 (and 0-8) style
        b"AMQP\x00\x00\x09\x00",      // 0-9-0
        b"AMQP\x00\x01\x00\x00",      // 1.0
        b"AMQP\x03\x01\x00\x00",      // 1.0 SASL
        b"GET / HT",                  // not AMQP at all
    ] {
        let mut c = Raw::dial(&server).await;
        c.send_bytes(header).await;
        assert_eq!(
            read_to_close(&mut c.io).await,
            codec::PROTOCOL_HEADER,
            "answer to {header:02x?}"
        );
        healthy.round_trip().await;
    }
}

#[tokio::test]
async fn handshake_refusals_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut healthy = Healthy::connect(&server).await;

    // Bad credentials: the server advertises authentication_failure_close,
    // so it says 403 in a connection.close about start-ok, and closes. The
    // same for an unknown user and a response that is not PLAIN at all.
    for response in [&b"\0guest\0wrong"[..], b"\0nobody\0guest", b"guest"] {
        let c = Raw::login(&server, response).await;
        let refused = (reply::ACCESS_REFUSED, class::CONNECTION, 11);
        c.connection_closed(refused).await;
        healthy.round_trip().await;
    }

    // Bad frames and wrong methods before the connection is open get a
    // connection.close too: a bad frame-end 501, another method than
    // start-ok 503 naming it, content 503.
    let start = async || {
        let mut c = Raw::dial(&server).await;
        c.send_bytes(&codec::PROTOCOL_HEADER).await;
        let m = c.method(0).await;
        assert!(matches!(m, Method::ConnectionStart(_)), "{m:?}");
        c
    };
    let mut c = start().await;
    let mut bad_end = method_frame(0, start_ok(b"\0guest\0guest")).to_vec();
    if let Some(last) = bad_end.last_mut() {
        *last = 0;
    }
    c.send_bytes(&bad_end).await;
    c.connection_closed((reply::FRAME_ERROR, 0, 0)).await;
    let mut c = start().await;
    let virtual_host = "/".to_string();
    c.send(0, Method::ConnectionOpen(ConnectionOpen { virtual_host }))
        .await;
    let text = c
        .connection_closed((reply::COMMAND_INVALID, class::CONNECTION, 40))
        .await;
    assert!(text.contains("start-ok"), "{text}");
    let mut c = start().await;
    c.send_bytes(&body(1, b"early")).await;
    c.connection_closed((reply::COMMAND_INVALID, 0, 0)).await;
    healthy.round_trip().await;

    // A heartbeat before the connection is open is no error.
    let mut c = start().await;
    c.send_bytes(&raw_frame(8, 0, &[])).await;
    c.send(0, start_ok(b"\0guest\0guest")).await;
    let tune = c.method(0).await;
    assert!(matches!(tune, Method::ConnectionTune(_)), "{tune:?}");

    // connection.open to a vhost that does not exist: 530 NOT_ALLOWED.
    let c = Raw::handshake(&server, "nowhere", 0).await;
    let text = c
        .connection_closed((reply::NOT_ALLOWED, class::CONNECTION, 40))
        .await;
    assert!(text.contains("nowhere"), "{text}");
    healthy.round_trip().await;
}

#[tokio::test]
async fn framing_errors_close_the_connection_with_501_and_drop_the_publish() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut healthy = Healthy::connect(&server).await;
    let mut stored = Vec::new();

    // Each case: one good publish, confirmed, then a publish whose frames
    // go wrong after its header.
    let cases: Vec<(&str, Vec<u8>, u16, u16)> = vec![
        // A body frame larger than frame-max (refused on its header).
        (
            "frame larger than frame-max",
            [&header(1, 5000)[..], &raw_frame(3, 1, &[b'x'; 5000])].concat(),
            0,
            0,
        ),
        // A body frame whose last octet is not 0xce.
        (
            "bad frame-end",
            {
                let mut b = [&header(1, 4)[..], &body(1, b"oops")].concat();
                *b.last_mut().unwrap() = 0x00;
                b
            },
            0,
            0,
        ),
        // A body frame with more than the header declared.
        (
            "body larger than declared",
            [&header(1, 3)[..], &body(1, b"ten bytes!")].concat(),
            class::BASIC,
            40,
        ),
        // A heartbeat on a channel other than 0, between header and body.
        (
            "heartbeat on channel 1",
            [&header(1, 4)[..], &raw_frame(8, 1, &[])].concat(),
            0,
            0,
        ),
        // A heartbeat with a payload.
        (
            "heartbeat with a payload",
            [&header(1, 4)[..], &raw_frame(8, 0, b"oops")].concat(),
            0,
            0,
        ),
        // A frame type that does not exist.
        (
            "unknown frame type",
            [&header(1, 4)[..], &raw_frame(9, 1, b"oops")].concat(),
            0,
            0,
        ),
    ];
    for (name, bad, class_id, method_id) in cases {
        let mut c = Raw::confirming(&server).await;
        let good = format!("good before {name}");
        c.publish_confirmed(1, &good, 1).await;
        stored.push(good);
        let mut bytes = method_frame(1, publish_method("", TARGET)).to_vec();
        bytes.extend_from_slice(&bad);
        c.send_bytes(&bytes).await;
        let text = c
            .connection_closed((reply::FRAME_ERROR, class_id, method_id))
            .await;
        assert!(text.starts_with("FRAME_ERROR"), "{name}: {text}");
        healthy.round_trip().await;
    }

    // A good publish and a bad frame in one write: the good one is stored
    // and confirmed, and the confirm comes before connection.close, which
    // is the last frame.
    let mut c = Raw::confirming(&server).await;
    let mut bytes = publish_frames(1, "", TARGET, b"good in the same write").to_vec();
    let mut bad = method_frame(1, publish_method("", TARGET)).to_vec();
    *bad.last_mut().unwrap() = 0xcd;
    bytes.extend_from_slice(&bad);
    c.send_bytes(&bytes).await;
    c.confirmed(1, 1).await;
    stored.push("good in the same write".into());
    c.connection_closed((reply::FRAME_ERROR, 0, 0)).await;

    healthy.round_trip().await;
    assert_eq!(healthy.drain(TARGET).await, stored);
}

#[tokio::test]
async fn frames_in_the_wrong_state_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut healthy = Healthy::connect(&server).await;
    let mut stored = Vec::new();

    // A method on a channel that was never opened: 504 CHANNEL_ERROR.
    let mut c = Raw::open(&server).await;
    c.send(5, declare("q", false, FieldTable::new())).await;
    c.connection_closed((reply::CHANNEL_ERROR, class::QUEUE, 10))
        .await;
    healthy.round_trip().await;

    // A method on a channel the client closed: 504.
    let mut c = Raw::open(&server).await;
    c.open_channel(2).await;
    let ok = c
        .call(
            2,
            Method::ChannelClose(Close {
                reply_code: reply::REPLY_SUCCESS,
                reply_text: "bye".into(),
                class_id: 0,
                method_id: 0,
            }),
        )
        .await;
    assert_eq!(ok, Method::ChannelCloseOk);
    c.send(
        2,
        Method::BasicGet(BasicGet {
            queue: TARGET.into(),
            no_ack: true,
        }),
    )
    .await;
    c.connection_closed((reply::CHANNEL_ERROR, class::BASIC, 70))
        .await;
    healthy.round_trip().await;

    // A second channel.open on an open channel: 504.
    let mut c = Raw::open(&server).await;
    c.open_channel(1).await;
    c.send(1, Method::ChannelOpen).await;
    c.connection_closed((reply::CHANNEL_ERROR, class::CHANNEL, 10))
        .await;
    healthy.round_trip().await;

    // Unknown class and method ids: 540 NOT_IMPLEMENTED, naming them.
    for (class_id, method_id) in [(class::BASIC, 99), (class::ACCESS, 10), (77, 1)] {
        let mut c = Raw::open(&server).await;
        c.open_channel(1).await;
        let mut payload = Vec::new();
        payload.put_u16(class_id);
        payload.put_u16(method_id);
        c.send_bytes(&raw_frame(1, 1, &payload)).await;
        let text = c
            .connection_closed((reply::NOT_IMPLEMENTED, class_id, method_id))
            .await;
        assert!(text.starts_with("NOT_IMPLEMENTED"), "{text}");
    }
    healthy.round_trip().await;

    // A method a client never sends (basic.deliver): 503 COMMAND_INVALID.
    let mut c = Raw::open(&server).await;
    c.open_channel(1).await;
    c.send(
        1,
        Method::BasicDeliver(BasicDeliver {
            consumer_tag: "t".into(),
            delivery_tag: 1,
            redelivered: false,
            exchange: String::new(),
            routing_key: TARGET.into(),
        }),
    )
    .await;
    c.connection_closed((reply::COMMAND_INVALID, class::BASIC, 60))
        .await;
    healthy.round_trip().await;

    // A content header and no body: a method arrives on the channel while
    // the publish waits for its body. 505 UNEXPECTED_FRAME, naming the
    // method; nothing of the publish is stored.
    let mut c = Raw::confirming(&server).await;
    c.publish_confirmed(1, "good before a missing body", 1)
        .await;
    stored.push("good before a missing body".to_string());
    let mut bytes = method_frame(1, publish_method("", TARGET));
    bytes.extend_from_slice(&header(1, 4));
    bytes.extend_from_slice(&method_frame(1, declare("q", false, FieldTable::new())));
    c.send_bytes(&bytes).await;
    c.connection_closed((reply::UNEXPECTED_FRAME, class::QUEUE, 10))
        .await;
    healthy.round_trip().await;

    // A publish and no content header: the next publish is unexpected.
    let mut c = Raw::confirming(&server).await;
    let mut bytes = method_frame(1, publish_method("", TARGET));
    bytes.extend_from_slice(&publish_frames(1, "", TARGET, b"second"));
    c.send_bytes(&bytes).await;
    c.connection_closed((reply::UNEXPECTED_FRAME, class::BASIC, 40))
        .await;
    healthy.round_trip().await;

    // A content body, or a content header, with no publish before it: 505.
    for content in [body(1, b"orphan"), header(1, 6)] {
        let mut c = Raw::confirming(&server).await;
        c.send_bytes(&content).await;
        c.connection_closed((reply::UNEXPECTED_FRAME, 0, 0)).await;
    }
    // Content on a channel that was never opened: 504 CHANNEL_ERROR.
    for content in [body(9, b"orphan"), header(9, 6)] {
        let mut c = Raw::confirming(&server).await;
        c.send_bytes(&content).await;
        c.connection_closed((reply::CHANNEL_ERROR, 0, 0)).await;
    }
    // A body after a complete empty message (header with size 0) is one
    // too many.
    let mut c = Raw::confirming(&server).await;
    let mut bytes = method_frame(1, publish_method("", TARGET));
    bytes.extend_from_slice(&header(1, 0));
    c.send_bytes(&bytes).await;
    c.confirmed(1, 1).await;
    stored.push(String::new());
    c.send_bytes(&body(1, b"late")).await;
    c.connection_closed((reply::UNEXPECTED_FRAME, 0, 0)).await;

    healthy.round_trip().await;
    assert_eq!(healthy.drain(TARGET).await, stored);
}

#[tokio::test]
async fn soft_errors_close_only_the_channel_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut healthy = Healthy::connect(&server).await;
    let mut c = Raw::open(&server).await;

    // Declaring an existing queue with other arguments: 406, channel-level.
    c.open_channel(1).await;
    let mut other = FieldTable::new();
    other.insert("x-max-length", FieldValue::I32(10));
    c.send(1, declare(TARGET, true, other)).await;
    c.channel_closed(1, (reply::PRECONDITION_FAILED, class::QUEUE, 10))
        .await;
    c.open_channel(2).await;
    c.works(2).await;
    healthy.round_trip().await;

    // Publishing to a missing exchange: 404, channel-level, after the good
    // publish before it on the same channel is confirmed.
    c.open_channel(3).await;
    let ok = c
        .call(3, Method::ConfirmSelect(ConfirmSelect { no_wait: false }))
        .await;
    assert_eq!(ok, Method::ConfirmSelectOk);
    c.publish_confirmed(3, "good before a missing exchange", 1)
        .await;
    c.send_bytes(&publish_frames(3, "nowhere", "k", b"lost"))
        .await;
    c.channel_closed(3, (reply::NOT_FOUND, class::BASIC, 40))
        .await;
    c.works(2).await;

    // The same with both publishes in one write: the good one's confirm
    // still comes before channel.close.
    c.open_channel(3).await;
    let ok = c
        .call(3, Method::ConfirmSelect(ConfirmSelect { no_wait: false }))
        .await;
    assert_eq!(ok, Method::ConfirmSelectOk);
    let mut bytes = publish_frames(3, "", TARGET, b"good in the same write");
    bytes.extend_from_slice(&publish_frames(3, "nowhere", "k", b"lost"));
    c.send_bytes(&bytes).await;
    c.confirmed(3, 1).await;
    c.channel_closed(3, (reply::NOT_FOUND, class::BASIC, 40))
        .await;
    c.works(2).await;
    healthy.round_trip().await;

    // Acknowledging an unknown delivery tag: 406, channel-level.
    c.open_channel(4).await;
    c.send(
        4,
        Method::BasicAck(BasicAck {
            delivery_tag: 99,
            multiple: false,
        }),
    )
    .await;
    // Until its close-ok, the server ignores what else comes on the
    // channel: this declare gets no answer (the next frame is the answer
    // on channel 2).
    let close = c.method(4).await;
    c.send(4, declare("ignored", false, FieldTable::new()))
        .await;
    assert_close(close, false, (reply::PRECONDITION_FAILED, class::BASIC, 80));
    c.send(4, Method::ChannelCloseOk).await;
    c.works(2).await;

    // Closed channels can be opened again and work.
    for channel in [1, 3, 4] {
        c.open_channel(channel).await;
        c.works(channel).await;
    }
    healthy.round_trip().await;
    assert_eq!(
        healthy.drain(TARGET).await,
        ["good before a missing exchange", "good in the same write"]
    );
}

#[tokio::test]
async fn a_client_silent_past_two_heartbeat_intervals_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut healthy = Healthy::connect(&server).await;
    let mut c = Raw::handshake(&server, "/", 1).await;
    assert_eq!(c.method(0).await, Method::ConnectionOpenOk);
    // The server sends heartbeats; this client never does, and is cut off
    // (without connection.close, as the specification says).
    let beats = tokio::time::timeout(WAIT, async {
        let mut beats = 0;
        while let Some(f) = c.frame().await {
            assert_eq!((f.channel, &f.payload), (0, &FramePayload::Heartbeat));
            beats += 1;
        }
        beats
    })
    .await
    .unwrap_or_else(|_| panic!("still connected after {WAIT:?}"));
    assert!(beats > 0, "the server sent heartbeats");
    healthy.round_trip().await;
}
