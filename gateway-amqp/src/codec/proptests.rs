//! Property tests: arbitrary methods, content headers and field tables
//! round-trip; content split by `encode_content` reassembles; arbitrary and
//! mutated bytes never make `decode_frame` panic or over-consume; a valid
//! encoding fed byte by byte is incomplete until its last byte.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option::of as opt;
use proptest::prelude::*;
use proptest::sample::select;

use super::data_types::{Reader, Writer};
use super::*;

const MAX: u32 = 1 << 20;

/// Any text up to 12 characters (at most 48 bytes: a valid shortstr).
fn text() -> impl Strategy<Value = String> {
    "(?s).{0,12}"
}

fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        any::<u32>().prop_map(|b| FieldValue::F32(f32::from_bits(b))),
        any::<u64>().prop_map(|b| FieldValue::F64(f64::from_bits(b))),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        bin().prop_map(FieldValue::LongString),
        bin().prop_map(FieldValue::ByteArray),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(FieldValue::Array),
            vec((text(), inner), 0..4)
                .prop_map(|entries| FieldValue::Table(FieldTable::from(entries))),
        ]
    })
}

fn table() -> impl Strategy<Value = FieldTable> {
    vec((text(), field_value()), 0..5).prop_map(FieldTable::from)
}

fn properties() -> impl Strategy<Value = BasicProperties> {
    let a = (
        opt(text()),
        opt(text()),
        opt(table()),
        opt(any::<u8>()),
        opt(any::<u8>()),
    );
    let b = (
        opt(text()),
        opt(text()),
        opt(text()),
        opt(text()),
        opt(any::<u64>()),
    );
    let c = (opt(text()), opt(text()), opt(text()), opt(text()));
    (a, b, c).prop_map(|(a, b, c)| BasicProperties {
        content_type: a.0,
        content_encoding: a.1,
        headers: a.2,
        delivery_mode: a.3,
        priority: a.4,
        correlation_id: b.0,
        reply_to: b.1,
        expiration: b.2,
        message_id: b.3,
        timestamp: b.4,
        message_type: c.0,
        user_id: c.1,
        app_id: c.2,
        cluster_id: c.3,
    })
}

fn close() -> impl Strategy<Value = Close> {
    (any::<u16>(), text(), any::<u16>(), any::<u16>()).prop_map(
        |(reply_code, reply_text, class_id, method_id)| Close {
            reply_code,
            reply_text,
            class_id,
            method_id,
        },
    )
}

fn tune() -> impl Strategy<Value = Tune> {
    (any::<u16>(), any::<u32>(), any::<u16>()).prop_map(|(channel_max, frame_max, heartbeat)| {
        Tune {
            channel_max,
            frame_max,
            heartbeat,
        }
    })
}

fn connection_method() -> BoxedStrategy<Method> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), table(), bin(), bin()).prop_map(|(ma, mi, t, m, l)| {
            Method::ConnectionStart(ConnectionStart {
                version_major: ma,
                version_minor: mi,
                server_properties: t,
                mechanisms: m,
                locales: l,
            })
        }),
        (table(), text(), bin(), text()).prop_map(|(t, m, r, l)| {
            Method::ConnectionStartOk(ConnectionStartOk {
                client_properties: t,
                mechanism: m,
                response: r,
                locale: l,
            })
        }),
        bin().prop_map(|challenge| Method::ConnectionSecure(ConnectionSecure { challenge })),
        bin().prop_map(|response| Method::ConnectionSecureOk(ConnectionSecureOk { response })),
        tune().prop_map(Method::ConnectionTune),
        tune().prop_map(Method::ConnectionTuneOk),
        text().prop_map(|virtual_host| Method::ConnectionOpen(ConnectionOpen { virtual_host })),
        close().prop_map(Method::ConnectionClose),
        text().prop_map(|reason| Method::ConnectionBlocked(ConnectionBlocked { reason })),
        (bin(), text()).prop_map(|(new_secret, reason)| {
            Method::ConnectionUpdateSecret(ConnectionUpdateSecret { new_secret, reason })
        }),
        any::<bool>().prop_map(|active| Method::ChannelFlow(Flow { active })),
        any::<bool>().prop_map(|active| Method::ChannelFlowOk(Flow { active })),
        close().prop_map(Method::ChannelClose),
        any::<bool>().prop_map(|no_wait| Method::ConfirmSelect(ConfirmSelect { no_wait })),
    ]
    .boxed()
}

fn exchange_and_queue_method() -> BoxedStrategy<Method> {
    let bits = || vec(any::<bool>(), 5);
    let bind = || {
        (text(), text(), text(), any::<bool>(), table()).prop_map(|(d, s, k, n, a)| ExchangeBind {
            destination: d,
            source: s,
            routing_key: k,
            no_wait: n,
            arguments: a,
        })
    };
    prop_oneof![
        (text(), text(), bits(), table()).prop_map(|(e, t, b, a)| {
            Method::ExchangeDeclare(ExchangeDeclare {
                exchange: e,
                exchange_type: t,
                passive: b[0],
                durable: b[1],
                auto_delete: b[2],
                internal: b[3],
                no_wait: b[4],
                arguments: a,
            })
        }),
        (text(), any::<bool>(), any::<bool>()).prop_map(|(e, u, n)| {
            Method::ExchangeDelete(ExchangeDelete {
                exchange: e,
                if_unused: u,
                no_wait: n,
            })
        }),
        bind().prop_map(Method::ExchangeBind),
        bind().prop_map(Method::ExchangeUnbind),
        (text(), bits(), table()).prop_map(|(q, b, a)| {
            Method::QueueDeclare(QueueDeclare {
                queue: q,
                passive: b[0],
                durable: b[1],
                exclusive: b[2],
                auto_delete: b[3],
                no_wait: b[4],
                arguments: a,
            })
        }),
        (text(), any::<u32>(), any::<u32>()).prop_map(|(q, m, c)| {
            Method::QueueDeclareOk(QueueDeclareOk {
                queue: q,
                message_count: m,
                consumer_count: c,
            })
        }),
        (text(), text(), text(), any::<bool>(), table()).prop_map(|(q, e, k, n, a)| {
            Method::QueueBind(QueueBind {
                queue: q,
                exchange: e,
                routing_key: k,
                no_wait: n,
                arguments: a,
            })
        }),
        (text(), any::<bool>())
            .prop_map(|(queue, no_wait)| Method::QueuePurge(QueuePurge { queue, no_wait })),
        any::<u32>().prop_map(|message_count| Method::QueuePurgeOk(MessageCount { message_count })),
        (text(), bits()).prop_map(|(q, b)| {
            Method::QueueDelete(QueueDelete {
                queue: q,
                if_unused: b[0],
                if_empty: b[1],
                no_wait: b[2],
            })
        }),
        any::<u32>()
            .prop_map(|message_count| Method::QueueDeleteOk(MessageCount { message_count })),
        (text(), text(), text(), table()).prop_map(|(q, e, k, a)| {
            Method::QueueUnbind(QueueUnbind {
                queue: q,
                exchange: e,
                routing_key: k,
                arguments: a,
            })
        }),
    ]
    .boxed()
}

fn basic_method() -> BoxedStrategy<Method> {
    let tag = any::<u64>();
    prop_oneof![
        (any::<u32>(), any::<u16>(), any::<bool>()).prop_map(|(s, c, g)| {
            Method::BasicQos(BasicQos {
                prefetch_size: s,
                prefetch_count: c,
                global: g,
            })
        }),
        (text(), text(), vec(any::<bool>(), 4), table()).prop_map(|(q, t, b, a)| {
            Method::BasicConsume(BasicConsume {
                queue: q,
                consumer_tag: t,
                no_local: b[0],
                no_ack: b[1],
                exclusive: b[2],
                no_wait: b[3],
                arguments: a,
            })
        }),
        text().prop_map(|consumer_tag| Method::BasicConsumeOk(BasicConsumeOk { consumer_tag })),
        (text(), any::<bool>()).prop_map(|(consumer_tag, no_wait)| {
            Method::BasicCancel(BasicCancel {
                consumer_tag,
                no_wait,
            })
        }),
        text().prop_map(|consumer_tag| Method::BasicCancelOk(BasicCancelOk { consumer_tag })),
        (text(), text(), any::<bool>(), any::<bool>()).prop_map(|(e, k, m, i)| {
            Method::BasicPublish(BasicPublish {
                exchange: e,
                routing_key: k,
                mandatory: m,
                immediate: i,
            })
        }),
        (any::<u16>(), text(), text(), text()).prop_map(|(c, t, e, k)| {
            Method::BasicReturn(BasicReturn {
                reply_code: c,
                reply_text: t,
                exchange: e,
                routing_key: k,
            })
        }),
        (text(), tag, any::<bool>(), text(), text()).prop_map(|(c, d, r, e, k)| {
            Method::BasicDeliver(BasicDeliver {
                consumer_tag: c,
                delivery_tag: d,
                redelivered: r,
                exchange: e,
                routing_key: k,
            })
        }),
        (text(), any::<bool>())
            .prop_map(|(queue, no_ack)| Method::BasicGet(BasicGet { queue, no_ack })),
        (tag, any::<bool>(), text(), text(), any::<u32>()).prop_map(|(d, r, e, k, m)| {
            Method::BasicGetOk(BasicGetOk {
                delivery_tag: d,
                redelivered: r,
                exchange: e,
                routing_key: k,
                message_count: m,
            })
        }),
        (tag, any::<bool>()).prop_map(|(delivery_tag, multiple)| {
            Method::BasicAck(BasicAck {
                delivery_tag,
                multiple,
            })
        }),
        (tag, any::<bool>()).prop_map(|(delivery_tag, requeue)| {
            Method::BasicReject(BasicReject {
                delivery_tag,
                requeue,
            })
        }),
        any::<bool>().prop_map(|requeue| Method::BasicRecoverAsync(BasicRecover { requeue })),
        any::<bool>().prop_map(|requeue| Method::BasicRecover(BasicRecover { requeue })),
        (tag, any::<bool>(), any::<bool>()).prop_map(|(delivery_tag, multiple, requeue)| {
            Method::BasicNack(BasicNack {
                delivery_tag,
                multiple,
                requeue,
            })
        }),
    ]
    .boxed()
}

/// Every method without arguments.
fn empty_methods() -> Vec<Method> {
    vec![
        Method::ConnectionOpenOk,
        Method::ConnectionCloseOk,
        Method::ConnectionUnblocked,
        Method::ConnectionUpdateSecretOk,
        Method::ChannelOpen,
        Method::ChannelOpenOk,
        Method::ChannelCloseOk,
        Method::ExchangeDeclareOk,
        Method::ExchangeDeleteOk,
        Method::ExchangeBindOk,
        Method::ExchangeUnbindOk,
        Method::QueueBindOk,
        Method::QueueUnbindOk,
        Method::BasicQosOk,
        Method::BasicGetEmpty,
        Method::BasicRecoverOk,
        Method::ConfirmSelectOk,
        Method::TxSelect,
        Method::TxSelectOk,
        Method::TxCommit,
        Method::TxCommitOk,
        Method::TxRollback,
        Method::TxRollbackOk,
    ]
}

fn any_method() -> impl Strategy<Value = Method> {
    prop_oneof![
        connection_method(),
        exchange_and_queue_method(),
        basic_method(),
        select(empty_methods()),
    ]
}

fn any_frame() -> impl Strategy<Value = Frame> {
    let payload = prop_oneof![
        4 => any_method().prop_map(FramePayload::Method),
        2 => (properties(), any::<u64>()).prop_map(|(properties, body_size)| {
            FramePayload::Header(ContentHeader {
                class_id: class::BASIC,
                body_size,
                properties,
            })
        }),
        1 => bin().prop_map(FramePayload::Body),
        1 => Just(FramePayload::Heartbeat),
    ];
    (any::<u16>(), payload).prop_map(|(channel, payload)| Frame {
        channel: if payload == FramePayload::Heartbeat {
            0
        } else {
            channel
        },
        payload,
    })
}

fn encoded(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    encode_frame(frame, &mut out).unwrap();
    out
}

/// Decodes arbitrary input: no panic, never more consumed than given, and a
/// decoded frame consumed exactly what `check_frame` measured.
fn decode_any(bytes: &[u8], frame_max: u32) {
    let mut buf = BytesMut::from(bytes);
    let checked = check_frame(bytes, frame_max);
    match decode_frame(&mut buf, frame_max) {
        Ok(Some(_)) => assert_eq!(Ok(bytes.len() - buf.len()), checked),
        Ok(None) => {
            assert_eq!(buf.len(), bytes.len());
            assert!(matches!(checked, Err(DecodeError::Incomplete(_))));
        }
        Err(_) => assert!(buf.len() <= bytes.len()),
    }
}

#[test]
fn every_method_id_is_distinct() {
    let mut seen = std::collections::HashSet::new();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut methods = empty_methods();
    for strategy in [
        connection_method(),
        exchange_and_queue_method(),
        basic_method(),
    ] {
        for _ in 0..400 {
            methods.push(strategy.new_tree(&mut runner).unwrap().current());
        }
    }
    for method in &methods {
        seen.insert((method.class_id(), method.method_id(), method.name()));
    }
    // 14 connection, 6 channel, 8 exchange, 10 queue, 18 basic, 2 confirm,
    // 6 tx: every one generated, no two alike.
    assert_eq!(seen.len(), 64);
    let ids: std::collections::HashSet<_> = seen.iter().map(|(c, m, _)| (c, m)).collect();
    assert_eq!(ids.len(), 64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip(frame in any_frame()) {
        let bytes = encoded(&frame);
        prop_assert_eq!(check_frame(&bytes, MAX), Ok(bytes.len()));
        let mut buf = bytes.clone();
        prop_assert_eq!(decode_frame(&mut buf, MAX), Ok(Some(frame.clone())));
        prop_assert!(buf.is_empty());
        // Exactly its own size as frame_max is enough.
        let size = u32::try_from(bytes.len()).unwrap();
        let mut buf = bytes.clone();
        prop_assert_eq!(decode_frame(&mut buf, size), Ok(Some(frame)));
        let too_large = matches!(
            check_frame(&bytes, size - 1),
            Err(DecodeError::FrameTooLarge { .. })
        );
        prop_assert!(too_large);
    }

    #[test]
    fn field_tables_round_trip(table in table()) {
        let mut out = BytesMut::new();
        Writer::new(&mut out).table(&table, "t").unwrap();
        let mut r = Reader::new(out.freeze());
        prop_assert_eq!(r.table("t").unwrap(), table);
        prop_assert!(r.is_empty());
    }

    #[test]
    fn content_reassembles(
        properties in properties(),
        body in vec(any::<u8>(), 0..600),
        extra in 0u32..200,
        channel in 1u16..,
    ) {
        let mut header = BytesMut::new();
        encode_content(channel, class::BASIC, &properties, b"", 0, &mut header).unwrap();
        let frame_max = u32::try_from(header.len()).unwrap() + extra;
        let mut out = BytesMut::new();
        encode_content(channel, class::BASIC, &properties, &body, frame_max, &mut out).unwrap();
        let first = decode_frame(&mut out, frame_max).unwrap().unwrap();
        let header = Frame {
            channel,
            payload: FramePayload::Header(ContentHeader {
                class_id: class::BASIC,
                body_size: u64::try_from(body.len()).unwrap(),
                properties,
            }),
        };
        prop_assert_eq!(first, header);
        let mut reassembled = Vec::new();
        while let Some(frame) = decode_frame(&mut out, frame_max).unwrap() {
            prop_assert_eq!(frame.channel, channel);
            let FramePayload::Body(slice) = frame.payload else {
                return Err(TestCaseError::fail("not a body frame"));
            };
            prop_assert!(!slice.is_empty());
            reassembled.extend_from_slice(&slice);
        }
        prop_assert!(out.is_empty());
        prop_assert_eq!(reassembled, body);
    }

    #[test]
    fn byte_by_byte_is_incomplete_until_the_last(frame in any_frame()) {
        let bytes = encoded(&frame);
        for end in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..end]);
            prop_assert!(matches!(
                check_frame(&buf, MAX),
                Err(DecodeError::Incomplete(n)) if n >= 1 && end + n <= bytes.len()
            ));
            prop_assert_eq!(decode_frame(&mut buf, MAX), Ok(None));
            prop_assert_eq!(buf.len(), end);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..96)) {
        for frame_max in [0, 16, MAX] {
            decode_any(&bytes, frame_max);
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        frame in any_frame(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encoded(&frame).to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        for end in [bytes.len(), cut.index(bytes.len() + 1)] {
            for frame_max in [0, 64, MAX] {
                decode_any(&bytes[..end], frame_max);
            }
        }
    }
}
