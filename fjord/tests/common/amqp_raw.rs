//! A raw AMQP 0-9-1 client for the bad-input tests: frames built with the
//! gateway's codec and written byte for byte, answers read back as codec
//! types; and a well-behaved `lapin` client that checks the server stays
//! healthy around them.
#![allow(dead_code)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_gateway_amqp::codec::{
    self, BasicAck, BasicProperties, BasicPublish, ConfirmSelect, ConnectionOpen,
    ConnectionStartOk, ContentHeader, FieldTable, Frame, FramePayload, Method, QueueDeclare, Tune,
    class,
};
use lapin::options::BasicAckOptions;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Server, amqp};

/// The failure bound of every wait.
pub const WAIT: Duration = Duration::from_secs(15);

/// What the raw client settles on in tune-ok.
pub const FRAME_MAX: u32 = 4096;

/// The queue the raw clients publish to.
pub const TARGET: &str = "target";

pub fn frame(channel: u16, payload: FramePayload) -> BytesMut {
    let mut out = BytesMut::new();
    codec::encode_frame(&Frame { channel, payload }, &mut out).unwrap();
    out
}

pub fn method_frame(channel: u16, m: Method) -> BytesMut {
    frame(channel, FramePayload::Method(m))
}

/// A frame with any type and payload, framed correctly.
pub fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out.push(codec::FRAME_END);
    out
}

pub fn publish_method(exchange: &str, routing_key: &str) -> Method {
    Method::BasicPublish(BasicPublish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory: false,
        immediate: false,
    })
}

/// A content header announcing `body_size` bytes.
pub fn header(channel: u16, body_size: u64) -> BytesMut {
    frame(
        channel,
        FramePayload::Header(ContentHeader {
            class_id: class::BASIC,
            body_size,
            properties: BasicProperties::default(),
        }),
    )
}

pub fn body(channel: u16, bytes: &[u8]) -> BytesMut {
    frame(channel, FramePayload::Body(Bytes::copy_from_slice(bytes)))
}

/// basic.publish, its content header (the true size) and body frames.
pub fn publish_frames(channel: u16, exchange: &str, routing_key: &str, bytes: &[u8]) -> BytesMut {
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

pub fn declare(queue: &str, durable: bool, arguments: FieldTable) -> Method {
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

pub fn start_ok(response: &[u8]) -> Method {
    Method::ConnectionStartOk(ConnectionStartOk {
        client_properties: FieldTable::new(),
        mechanism: "PLAIN".into(),
        response: Bytes::copy_from_slice(response),
        locale: "en_US".into(),
    })
}

/// A client speaking frames over `S` (TCP unless TLS): the codec's types
/// in, bytes out, and back.
pub struct Raw<S = TcpStream> {
    pub io: S,
    pub buf: BytesMut,
}

impl Raw {
    pub async fn dial(server: &Server) -> Raw {
        let io = tokio::time::timeout(WAIT, TcpStream::connect(&server.amqp))
            .await
            .expect("connected in time")
            .unwrap();
        Raw::over(io)
    }

    /// Sends the protocol header and, after connection.start, start-ok
    /// with `response` (PLAIN).
    pub async fn login(server: &Server, response: &[u8]) -> Raw {
        let mut c = Raw::dial(server).await;
        c.send_bytes(&codec::PROTOCOL_HEADER).await;
        let start = c.method(0).await;
        assert!(matches!(start, Method::ConnectionStart(_)), "{start:?}");
        c.send(0, start_ok(response)).await;
        c
    }

    /// Logs in as guest, settles on `FRAME_MAX` and `heartbeat` seconds,
    /// and sends connection.open for `vhost`.
    pub async fn handshake(server: &Server, vhost: &str, heartbeat: u16) -> Raw {
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
    pub async fn open(server: &Server) -> Raw {
        let mut c = Raw::handshake(server, "/", 0).await;
        assert_eq!(c.method(0).await, Method::ConnectionOpenOk);
        c
    }

    /// An open connection with channel 1 open in confirm mode.
    pub async fn confirming(server: &Server) -> Raw {
        let mut c = Raw::open(server).await;
        c.open_channel(1).await;
        let ok = c
            .call(1, Method::ConfirmSelect(ConfirmSelect { no_wait: false }))
            .await;
        assert_eq!(ok, Method::ConfirmSelectOk);
        c
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    /// A client on a connected stream that has sent nothing yet.
    pub fn over(io: S) -> Raw<S> {
        Raw {
            io,
            buf: BytesMut::new(),
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, channel: u16, m: Method) {
        self.send_bytes(&method_frame(channel, m)).await;
    }

    /// The next frame; `None` once the server closed the connection.
    pub async fn frame(&mut self) -> Option<Frame> {
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
    pub async fn method(&mut self, channel: u16) -> Method {
        match self.frame().await {
            Some(Frame {
                channel: c,
                payload: FramePayload::Method(m),
            }) if c == channel => m,
            other => panic!("expected a method on channel {channel}, got {other:?}"),
        }
    }

    /// Sends `m` and returns the next method on its channel.
    pub async fn call(&mut self, channel: u16, m: Method) -> Method {
        self.send(channel, m).await;
        self.method(channel).await
    }

    pub async fn open_channel(&mut self, channel: u16) {
        let ok = self.call(channel, Method::ChannelOpen).await;
        assert_eq!(ok, Method::ChannelOpenOk, "channel.open {channel}");
    }

    /// Declares a (transient) queue: the connection still works.
    pub async fn works(&mut self, channel: u16) {
        let ok = self
            .call(channel, declare("scratch", false, FieldTable::new()))
            .await;
        assert!(matches!(ok, Method::QueueDeclareOk(_)), "{ok:?}");
    }

    /// Publishes `text` to the target queue on a confirm channel and waits
    /// for its confirm, the `seq`th.
    pub async fn publish_confirmed(&mut self, channel: u16, text: &str, seq: u64) {
        self.send_bytes(&publish_frames(channel, "", TARGET, text.as_bytes()))
            .await;
        self.confirmed(channel, seq).await;
    }

    pub async fn confirmed(&mut self, channel: u16, seq: u64) {
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
    pub async fn channel_closed(&mut self, channel: u16, want: Reply) {
        let close = self.method(channel).await;
        assert_close(close, false, want);
        self.send(channel, Method::ChannelCloseOk).await;
    }

    /// Expects connection.close with `want` and nothing after it; answers
    /// close-ok and expects the socket to close. Returns the reply text.
    pub async fn connection_closed(mut self, want: Reply) -> String {
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
pub type Reply = (u16, u16, u16);

/// Asserts that `m` is connection.close (or channel.close) with `want`;
/// returns its reply text.
pub fn assert_close(m: Method, connection: bool, want: Reply) -> String {
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
pub struct Healthy {
    pub _conn: lapin::Connection,
    pub ch: lapin::Channel,
    pub consumer: lapin::Consumer,
    pub sent: usize,
}

impl Healthy {
    /// Connects and declares the queues the tests use.
    pub async fn connect(server: &Server) -> Healthy {
        let conn = amqp::connect(server).await;
        let ch = amqp::channel(&conn).await;
        for queue in ["healthy", TARGET] {
            amqp::durable_queue(&ch, queue).await;
        }
        amqp::confirm(&ch).await;
        let consumer = amqp::consume(&ch, "healthy", "h").await;
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
    pub async fn round_trip(&mut self) {
        self.sent += 1;
        let text = format!("ping-{}", self.sent);
        let props = lapin::BasicProperties::default();
        let acked =
            tokio::time::timeout(WAIT, amqp::publish(&self.ch, "", "healthy", &text, props))
                .await
                .expect("confirmed in time");
        assert!(acked, "{text} confirmed");
        let d = amqp::delivery(&mut self.consumer).await;
        assert_eq!(amqp::body(&d), text);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }

    /// Takes every message in `queue` with `basic.get`.
    pub async fn drain(&self, queue: &str) -> Vec<String> {
        amqp::drain(&self.ch, queue).await
    }
}

/// Reads until the server closes the connection.
pub async fn read_to_close(io: &mut TcpStream) -> Vec<u8> {
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
