//! Byte-literal tests of the protocol header, of representative frames (as
//! RabbitMQ and its clients send them) and of every decoding error, and the
//! helpers they share.

use bytes::{Bytes, BytesMut};

use super::*;

const MAX: u32 = 131_072;

/// Concatenates the parts of a byte literal.
pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Decodes `bytes` as exactly one frame.
pub(crate) fn decode_all(bytes: &[u8]) -> Frame {
    assert_eq!(check_frame(bytes, MAX), Ok(bytes.len()));
    let mut buf = BytesMut::from(bytes);
    let frame = decode_frame(&mut buf, MAX).unwrap().expect("a whole frame");
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    frame
}

/// Decodes `bytes`, expecting an error.
pub(crate) fn decode_err(bytes: &[u8]) -> DecodeError {
    decode_frame(&mut BytesMut::from(bytes), MAX).expect_err("an error")
}

/// Encodes `frame`.
pub(crate) fn encode_all(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(frame, &mut out).unwrap();
    out.to_vec()
}

/// Encodes `frame`, expecting an error and an untouched buffer.
pub(crate) fn encode_err(frame: &Frame) -> EncodeError {
    let mut out = BytesMut::from(&b"before"[..]);
    let err = encode_frame(frame, &mut out).expect_err("an error");
    assert_eq!(&out[..], b"before");
    err
}

fn method(channel: u16, method: Method) -> Frame {
    Frame {
        channel,
        payload: FramePayload::Method(method),
    }
}

/// Asserts that `bytes` and `frame` are each other's encoding.
pub(crate) fn both_ways(bytes: &[u8], frame: &Frame) {
    assert_eq!(&decode_all(bytes), frame);
    assert_eq!(encode_all(frame), bytes);
}

#[test]
fn protocol_header() {
    assert_eq!(PROTOCOL_HEADER, *b"AMQP\x00\x00\x09\x01");
    assert_eq!(
        check_protocol_header(b"AMQP\0\0\x09\x01"),
        ProtocolHeader::Valid
    );
    // Frames may follow in the same read.
    assert_eq!(
        check_protocol_header(b"AMQP\0\0\x09\x01\x01\0\0"),
        ProtocolHeader::Valid
    );
    for prefix in [&b""[..], b"A", b"AMQ", b"AMQP\0\0\x09"] {
        assert_eq!(check_protocol_header(prefix), ProtocolHeader::Incomplete);
    }
    // 0-9 and 0-8 headers, 1.0, HTTP, TLS: decided at the first odd byte.
    for other in [
        &b"AMQP\x01\x01\x00\x09"[..],
        b"AMQP\x01\x01\x08\x00",
        b"AMQP\x00\x01\x00\x00",
        b"AMQP\x00\x00\x09\x02",
        b"GET / HTTP/1.1",
        b"\x16\x03\x01",
        b"G",
    ] {
        assert_eq!(check_protocol_header(other), ProtocolHeader::Unsupported);
    }
}

/// connection.start as a server sends it, with a nested capabilities table.
#[test]
fn connection_start() {
    let bytes = cat(&[
        &[1, 0, 0, 0, 0, 0, 0x5e], // method frame, channel 0, 94 bytes
        &[0, 10, 0, 10, 0, 9],     // connection.start, version 0-9
        &[0, 0, 0, 0x39],          // server-properties, 57 bytes
        b"\x07productS\x00\x00\x00\x05Fjord",
        b"\x0ccapabilitiesF\x00\x00\x00\x15",
        b"\x12publisher_confirmst\x01",
        b"\x00\x00\x00\x0ePLAIN AMQPLAIN",
        b"\x00\x00\x00\x05en_US",
        &[0xce],
    ]);
    let capabilities: FieldTable = [("publisher_confirms", FieldValue::Bool(true))]
        .into_iter()
        .collect();
    let frame = method(
        0,
        Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: [
                (
                    "product",
                    FieldValue::LongString(Bytes::from_static(b"Fjord")),
                ),
                ("capabilities", FieldValue::Table(capabilities)),
            ]
            .into_iter()
            .collect(),
            mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
            locales: Bytes::from_static(b"en_US"),
        }),
    );
    both_ways(&bytes, &frame);
}

/// connection.start-ok with a PLAIN response, as pika sends it.
#[test]
fn connection_start_ok_plain() {
    let bytes = cat(&[
        &[1, 0, 0, 0, 0, 0, 0x35],
        &[0, 10, 0, 11],
        b"\x00\x00\x00\x11\x07productS\x00\x00\x00\x04pika",
        b"\x05PLAIN",
        b"\x00\x00\x00\x0c\x00guest\x00guest",
        b"\x05en_US",
        &[0xce],
    ]);
    let frame = decode_all(&bytes);
    let FramePayload::Method(Method::ConnectionStartOk(start_ok)) = &frame.payload else {
        panic!("{frame:?}");
    };
    assert_eq!(start_ok.mechanism, "PLAIN");
    assert_eq!(start_ok.locale, "en_US");
    assert_eq!(
        start_ok.client_properties.get("product"),
        Some(&FieldValue::LongString(Bytes::from_static(b"pika")))
    );
    assert_eq!(
        parse_plain(&start_ok.response),
        Some(("guest".into(), "guest".into()))
    );
    assert_eq!(encode_all(&frame), bytes);
}

#[test]
fn connection_tune_and_open() {
    let tune = Tune {
        channel_max: 2047,
        frame_max: 131_072,
        heartbeat: 60,
    };
    let bytes = [
        1, 0, 0, 0, 0, 0, 12, 0, 10, 0, 30, 0x07, 0xff, 0, 2, 0, 0, 0, 60, 0xce,
    ];
    both_ways(&bytes, &method(0, Method::ConnectionTune(tune)));
    let mut ok = bytes;
    ok[10] = 31;
    both_ways(&ok, &method(0, Method::ConnectionTuneOk(tune)));

    // connection.open "/" with the reserved capabilities and insist.
    let open = [1, 0, 0, 0, 0, 0, 8, 0, 10, 0, 40, 1, b'/', 0, 0, 0xce];
    let frame = method(
        0,
        Method::ConnectionOpen(ConnectionOpen {
            virtual_host: "/".into(),
        }),
    );
    both_ways(&open, &frame);
    // Old clients fill the reserved fields in: read past, written empty.
    let filled = [1, 0, 0, 0, 0, 0, 9, 0, 10, 0, 40, 1, b'/', 1, 0xff, 1, 0xce];
    assert_eq!(decode_all(&filled), frame);
    // connection.open-ok with its reserved known-hosts.
    both_ways(
        &[1, 0, 0, 0, 0, 0, 5, 0, 10, 0, 41, 0, 0xce],
        &method(0, Method::ConnectionOpenOk),
    );
}

/// basic.publish, its content header and one body frame, as one read.
#[test]
fn basic_publish_with_content() {
    let bytes = cat(&[
        &[1, 0, 1, 0, 0, 0, 14],
        &[0, 60, 0, 40, 0, 0], // basic.publish, reserved
        b"\x00\x05hello\x01",  // exchange "", routing key, mandatory
        &[0xce],
        &[2, 0, 1, 0, 0, 0, 37],
        &[0, 60, 0, 0], // class basic, weight
        &[0, 0, 0, 0, 0, 0, 0, 11],
        &[0xb0, 0x00], // content-type, headers, delivery-mode
        b"\x0atext/plain",
        b"\x00\x00\x00\x07\x01xI\x00\x00\x00\x01",
        &[2],
        &[0xce],
        &[3, 0, 1, 0, 0, 0, 11],
        b"hello world",
        &[0xce],
    ]);
    let publish = Method::BasicPublish(BasicPublish {
        exchange: String::new(),
        routing_key: "hello".into(),
        mandatory: true,
        immediate: false,
    });
    assert!(publish.has_content());
    let properties = BasicProperties {
        content_type: Some("text/plain".into()),
        headers: Some([("x", FieldValue::I32(1))].into_iter().collect()),
        delivery_mode: Some(2),
        ..BasicProperties::default()
    };
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(
        decode_frame(&mut buf, MAX),
        Ok(Some(method(1, publish.clone())))
    );
    let header = Frame {
        channel: 1,
        payload: FramePayload::Header(ContentHeader {
            class_id: class::BASIC,
            body_size: 11,
            properties: properties.clone(),
        }),
    };
    assert_eq!(decode_frame(&mut buf, MAX), Ok(Some(header)));
    let body = Frame {
        channel: 1,
        payload: FramePayload::Body(Bytes::from_static(b"hello world")),
    };
    assert_eq!(decode_frame(&mut buf, MAX), Ok(Some(body)));
    assert!(buf.is_empty());

    let mut out = BytesMut::new();
    encode_frame(&method(1, publish), &mut out).unwrap();
    encode_content(1, class::BASIC, &properties, b"hello world", MAX, &mut out).unwrap();
    assert_eq!(&out[..], &bytes[..]);
}

#[test]
fn content_fits_frame_max() {
    let properties = BasicProperties::default();
    // A header without properties is 22 bytes; body frames then carry up to
    // 14 bytes each under frame_max 22.
    let expected = cat(&[
        &[
            2, 0, 3, 0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0xce,
        ],
        &[3, 0, 3, 0, 0, 0, 11],
        b"hello world",
        &[0xce],
    ]);
    for frame_max in [22, 0, MAX] {
        let mut out = BytesMut::new();
        encode_content(
            3,
            class::BASIC,
            &properties,
            b"hello world",
            frame_max,
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..], &expected[..], "frame_max {frame_max}");
    }
}

#[test]
fn body_frames_respect_a_small_frame_max() {
    let mut out = BytesMut::new();
    let props = BasicProperties::default();
    // The 22-byte header needs frame_max 22; body frames then carry 14 bytes.
    encode_content(1, class::BASIC, &props, &[7u8; 30], 22, &mut out).unwrap();
    let mut sizes = Vec::new();
    while let Some(frame) = decode_frame(&mut out, 22).unwrap() {
        if let FramePayload::Body(b) = frame.payload {
            sizes.push(b.len());
        }
    }
    assert_eq!(sizes, [14, 14, 2]);
    // Empty body: the header alone.
    let mut out = BytesMut::new();
    encode_content(1, class::BASIC, &props, b"", 22, &mut out).unwrap();
    assert_eq!(out.len(), 22);
}

#[test]
fn encode_content_errors_leave_out_untouched() {
    let props = BasicProperties::default();
    let mut out = BytesMut::from(&b"before"[..]);
    assert_eq!(
        encode_content(1, class::BASIC, &props, b"x", 21, &mut out),
        Err(EncodeError::FrameTooLarge { size: 22, max: 21 })
    );
    let huge_header = BasicProperties {
        message_id: Some("m".repeat(256)),
        ..BasicProperties::default()
    };
    assert!(matches!(
        encode_content(1, class::BASIC, &huge_header, b"x", 0, &mut out),
        Err(EncodeError::Invalid(_))
    ));
    assert!(matches!(
        encode_content(1, class::QUEUE, &props, b"x", 0, &mut out),
        Err(EncodeError::Invalid(_))
    ));
    assert_eq!(&out[..], b"before");
}

#[test]
fn heartbeat() {
    let bytes = [8, 0, 0, 0, 0, 0, 0, 0xce];
    let frame = Frame {
        channel: 0,
        payload: FramePayload::Heartbeat,
    };
    both_ways(&bytes, &frame);
    assert!(matches!(
        decode_err(&[8, 0, 1, 0, 0, 0, 0, 0xce]),
        DecodeError::HeartbeatChannel(1)
    ));
    let err = decode_err(&[8, 0, 0, 0, 0, 0, 1, 0, 0xce]);
    assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
    assert_eq!(err.reply_code(), reply::FRAME_ERROR);
    assert!(matches!(
        encode_err(&Frame {
            channel: 2,
            payload: FramePayload::Heartbeat
        }),
        EncodeError::Invalid(_)
    ));
}

#[test]
fn decode_waits_and_takes_one_frame_at_a_time() {
    let heartbeat = [8, 0, 0, 0, 0, 0, 0, 0xce];
    let mut buf = BytesMut::from(&heartbeat[..]);
    buf.extend_from_slice(&heartbeat[..5]);
    assert!(matches!(decode_frame(&mut buf, MAX), Ok(Some(_))));
    assert_eq!(check_frame(&buf, MAX), Err(DecodeError::Incomplete(3)));
    assert_eq!(decode_frame(&mut buf, MAX), Ok(None));
    assert_eq!(buf.len(), 5);
    buf.extend_from_slice(&heartbeat[5..7]);
    assert_eq!(check_frame(&buf, MAX), Err(DecodeError::Incomplete(1)));
    buf.extend_from_slice(&heartbeat[7..]);
    assert!(matches!(decode_frame(&mut buf, MAX), Ok(Some(_))));
    assert!(buf.is_empty());
    // Once the size is known, the whole remainder is asked for.
    assert_eq!(
        check_frame(&[3, 0, 1, 0, 0, 0x10, 0], MAX),
        Err(DecodeError::Incomplete(4097))
    );
}

#[test]
fn frame_max_counts_the_whole_frame() {
    // A body frame of 4088 payload bytes is exactly 4096.
    let header = [3, 0, 1, 0, 0, 0x0f, 0xf8];
    assert_eq!(
        check_frame(&header, 4096),
        Err(DecodeError::Incomplete(4089))
    );
    let too_big = [3, 0, 1, 0, 0, 0x0f, 0xf9];
    let err = DecodeError::FrameTooLarge {
        size: 4097,
        max: 4096,
    };
    assert_eq!(check_frame(&too_big, 4096), Err(err.clone()));
    let mut buf = BytesMut::from(&too_big[..]);
    assert_eq!(decode_frame(&mut buf, 4096), Err(err.clone()));
    assert_eq!(buf.len(), 7, "nothing consumed");
    assert_eq!(err.reply_code(), reply::FRAME_ERROR);
    // 0 is no limit: a 4 GiB frame is merely incomplete.
    let huge = [3, 0, 1, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        check_frame(&huge, 0),
        Err(DecodeError::Incomplete(0xffff_ffff + 1))
    );
    assert_eq!(decode_frame(&mut BytesMut::from(&huge[..]), 0), Ok(None));
}

#[test]
fn framing_errors() {
    let err = decode_err(&[8, 0, 0, 0, 0, 0, 0, 0x00]);
    assert_eq!(err, DecodeError::BadFrameEnd(0));
    assert_eq!(err.reply_code(), reply::FRAME_ERROR);
    // The frame-end is where the size says, not at the end of the buffer.
    let err = decode_err(&[3, 0, 1, 0, 0, 0, 1, b'x', b'y', 0xce]);
    assert_eq!(err, DecodeError::BadFrameEnd(b'y'));
    for kind in [0, 4, 7, 9, 0xce, 0xff] {
        let err = decode_err(&[kind, 0, 0, 0, 0, 0, 0, 0xce]);
        assert_eq!(err, DecodeError::UnknownFrameType(kind));
        assert_eq!(err.reply_code(), reply::FRAME_ERROR);
        // Refused as soon as the header is in.
        assert_eq!(
            check_frame(&[kind, 0, 0, 0, 0, 0, 0], MAX),
            Err(DecodeError::UnknownFrameType(kind))
        );
    }
    // A body frame on channel 0 and a method on channel 9 frame fine: which
    // channel may carry what is the connection's call.
    assert!(matches!(
        decode_all(&[3, 0, 0, 0, 0, 0, 0, 0xce]).payload,
        FramePayload::Body(b) if b.is_empty()
    ));
}

#[test]
fn malformed_method_payloads() {
    // connection.tune without its heartbeat.
    let err = decode_err(&[1, 0, 0, 0, 0, 0, 10, 0, 10, 0, 30, 0, 0, 0, 0, 0, 0, 0xce]);
    assert!(
        matches!(&err, DecodeError::Malformed(m) if m.contains("connection.tune")),
        "{err:?}"
    );
    assert_eq!(err.reply_code(), reply::FRAME_ERROR);
    // Too short for class and method ids.
    for payload in [&[][..], &[0], &[0, 10, 0]] {
        let mut bytes = vec![1, 0, 0, 0, 0, 0, u8::try_from(payload.len()).unwrap()];
        bytes.extend_from_slice(payload);
        bytes.push(0xce);
        assert!(matches!(decode_err(&bytes), DecodeError::Malformed(_)));
    }
    // A shortstr running past the payload (queue.declare-ok).
    let err = decode_err(&[1, 0, 1, 0, 0, 0, 6, 0, 50, 0, 11, 9, b'q', 0xce]);
    assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
    // A field table length past the payload (basic.consume arguments).
    let consume = [
        1, 0, 1, 0, 0, 0, 14, 0, 60, 0, 20, 0, 0, 1, b'q', 0, 0, 0, 0, 0, 9, 0xce,
    ];
    assert!(matches!(decode_err(&consume), DecodeError::Malformed(_)));
    // Decoding consumed the broken frame.
    let mut buf = BytesMut::from(&consume[..]);
    assert!(decode_frame(&mut buf, MAX).is_err());
    assert!(buf.is_empty());
}

#[test]
fn trailing_bytes_in_a_method() {
    // channel.close-ok with a byte after it.
    let err = decode_err(&[1, 0, 1, 0, 0, 0, 5, 0, 20, 0, 41, 0, 0xce]);
    assert!(
        matches!(&err, DecodeError::Malformed(m) if m.contains("channel.close-ok")),
        "{err:?}"
    );
    assert_eq!(err.reply_code(), reply::FRAME_ERROR);
    // basic.ack with a second bit octet.
    let ack = [
        1, 0, 1, 0, 0, 0, 14, 0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 7, 1, 1, 0xce,
    ];
    assert!(matches!(decode_err(&ack), DecodeError::Malformed(_)));
    let ok = [
        1, 0, 1, 0, 0, 0, 13, 0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 7, 1, 0xce,
    ];
    both_ways(
        &ok,
        &method(
            1,
            Method::BasicAck(BasicAck {
                delivery_tag: 7,
                multiple: true,
            }),
        ),
    );
}

#[test]
fn unknown_methods() {
    // access.request (gone from 0-9-1), an unknown basic method, and 40/41
    // (exchange.unbind-ok is 51).
    for (class_id, method_id) in [(30, 10), (60, 200), (40, 41), (0, 0), (70, 10)] {
        let [c0, c1] = u16::to_be_bytes(class_id);
        let [m0, m1] = u16::to_be_bytes(method_id);
        let err = decode_err(&[1, 0, 1, 0, 0, 0, 4, c0, c1, m0, m1, 0xce]);
        assert_eq!(
            err,
            DecodeError::UnknownMethod {
                class_id,
                method_id
            }
        );
        assert_eq!(err.reply_code(), reply::NOT_IMPLEMENTED);
    }
    both_ways(
        &[1, 0, 1, 0, 0, 0, 4, 0, 40, 0, 51, 0xce],
        &method(1, Method::ExchangeUnbindOk),
    );
}

#[test]
fn shortstrs_must_be_utf8() {
    // queue.declare with queue name 0xff.
    let bytes = [
        1, 0, 1, 0, 0, 0, 13, 0, 50, 0, 10, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0xce,
    ];
    let err = decode_err(&bytes);
    assert!(
        matches!(&err, DecodeError::Syntax(m) if m.contains("queue.declare")),
        "{err:?}"
    );
    assert_eq!(err.reply_code(), reply::SYNTAX_ERROR);
    let mut fine = bytes;
    fine[14] = b'q';
    assert!(matches!(
        decode_all(&fine).payload,
        FramePayload::Method(Method::QueueDeclare(QueueDeclare { ref queue, .. })) if queue == "q"
    ));
}

#[test]
fn declare_bits_share_one_octet() {
    // exchange.declare "x" "topic", durable and nowait: 0b10010.
    let bytes = cat(&[
        &[1, 0, 1, 0, 0, 0, 19],
        &[0, 40, 0, 10, 0, 0],
        b"\x01x\x05topic",
        &[0b1_0010],
        &[0, 0, 0, 0],
        &[0xce],
    ]);
    let frame = method(
        1,
        Method::ExchangeDeclare(ExchangeDeclare {
            exchange: "x".into(),
            exchange_type: "topic".into(),
            passive: false,
            durable: true,
            auto_delete: false,
            internal: false,
            no_wait: true,
            arguments: FieldTable::new(),
        }),
    );
    both_ways(&bytes, &frame);
}

#[test]
fn encoder_refuses_what_the_decoder_would() {
    let long = "q".repeat(256);
    let frame = method(
        1,
        Method::QueuePurge(QueuePurge {
            queue: long,
            no_wait: false,
        }),
    );
    assert!(matches!(encode_err(&frame), EncodeError::Invalid(_)));
    let mut headers = FieldTable::new();
    headers.insert("k".repeat(300), FieldValue::Void);
    let frame = method(
        1,
        Method::QueueBind(QueueBind {
            queue: "q".into(),
            exchange: "x".into(),
            routing_key: String::new(),
            no_wait: false,
            arguments: headers,
        }),
    );
    assert!(matches!(encode_err(&frame), EncodeError::Invalid(_)));
}

#[test]
fn method_ids_names_and_content() {
    let deliver = Method::BasicDeliver(BasicDeliver {
        consumer_tag: "c".into(),
        delivery_tag: 1,
        redelivered: false,
        exchange: String::new(),
        routing_key: "q".into(),
    });
    assert_eq!((deliver.class_id(), deliver.method_id()), (60, 60));
    assert_eq!(deliver.name(), "basic.deliver");
    assert!(deliver.has_content());
    assert!(!Method::BasicQosOk.has_content());
    assert_eq!(Method::ExchangeUnbindOk.method_id(), 51);
    assert_eq!(Method::TxRollbackOk.name(), "tx.rollback-ok");
    assert_eq!(Method::ConfirmSelectOk.class_id(), class::CONFIRM);
}

#[test]
fn reply_codes_of_errors() {
    let cases = [
        (DecodeError::Incomplete(1), reply::FRAME_ERROR),
        (DecodeError::Syntax(String::new()), reply::SYNTAX_ERROR),
        (
            DecodeError::UnknownMethod {
                class_id: 1,
                method_id: 2,
            },
            reply::NOT_IMPLEMENTED,
        ),
        (
            DecodeError::UnexpectedContentClass { class_id: 10 },
            reply::UNEXPECTED_FRAME,
        ),
    ];
    for (err, code) in cases {
        assert_eq!(err.reply_code(), code, "{err}");
    }
    assert_eq!(
        DecodeError::BadFrameEnd(0).to_string(),
        "frame-end octet 0x00 instead of 0xce"
    );
}
