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

use bytes::BufMut;
use common::Server;
use common::amqp_raw::*;
use fjord_gateway_amqp::codec::{
    self, BasicAck, BasicDeliver, BasicGet, Close, ConfirmSelect, ConnectionOpen, FieldTable,
    FieldValue, FramePayload, Method, class, reply,
};

fn start(dir: &tempfile::TempDir) -> Server {
    Server::start_with(&dir.path().join("data"), &[])
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
