//! Property tests: arbitrary valid packets round-trip in both protocols;
//! arbitrary and mutated bytes never make `decode` panic or over-consume; a
//! valid encoding fed byte by byte is incomplete until its last byte.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option::of as opt;
use proptest::prelude::*;
use proptest::sample::select;

use super::properties::{Context, allowed_in};
use super::reason::{ReasonPacket, valid_for};
use super::*;

const MAX: usize = 1 << 20;

fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,8}"
}

fn topic() -> impl Strategy<Value = String> {
    "[a-zé$/ ]{1,10}"
}

fn filter() -> impl Strategy<Value = String> {
    "[a-z/+#$]{1,10}"
}

fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    opt(0u8..=1)
}

fn codes(packet: ReasonPacket) -> impl Strategy<Value = u8> {
    select(
        (0..=255)
            .filter(|&c| valid_for(packet, c))
            .collect::<Vec<u8>>(),
    )
}

/// Clears what `ctx` does not allow, so the result is valid there.
fn restrict(mut p: Properties, ctx: Context) -> Properties {
    let allowed = |id: u32| allowed_in(id) & (1 << (ctx as u16)) != 0;
    macro_rules! keep {
        ($($id:literal => $field:ident),* $(,)?) => {
            $(if !allowed($id) { p.$field = Default::default(); })*
        };
    }
    keep!(
        0x01 => payload_format_indicator, 0x02 => message_expiry_interval, 0x03 => content_type,
        0x08 => response_topic, 0x09 => correlation_data, 0x0b => subscription_identifiers,
        0x11 => session_expiry_interval, 0x12 => assigned_client_identifier,
        0x13 => server_keep_alive, 0x15 => authentication_method, 0x16 => authentication_data,
        0x17 => request_problem_information, 0x18 => will_delay_interval,
        0x19 => request_response_information, 0x1a => response_information,
        0x1c => server_reference, 0x1f => reason_string, 0x21 => receive_maximum,
        0x22 => topic_alias_maximum, 0x23 => topic_alias, 0x24 => maximum_qos,
        0x25 => retain_available, 0x26 => user_properties, 0x27 => maximum_packet_size,
        0x28 => wildcard_subscription_available, 0x29 => subscription_identifier_available,
        0x2a => shared_subscription_available,
    );
    if ctx == Context::Subscribe {
        p.subscription_identifiers.truncate(1);
    }
    if p.authentication_method.is_none() {
        p.authentication_data = None;
    }
    p
}

/// Properties valid in `ctx`; always empty for 3.1.1.
fn properties(ctx: Context, protocol: Protocol) -> BoxedStrategy<Properties> {
    if protocol == Protocol::V311 {
        return Just(Properties::default()).boxed();
    }
    let a = (
        flag(),
        opt(any::<u32>()),
        opt(text()),
        opt(text()),
        opt(bin()),
    );
    let b = (
        vec(1..=MAX_VARIABLE_BYTE_INTEGER, 0..3),
        opt(any::<u32>()),
        opt(text()),
    );
    let c = (
        opt(any::<u16>()),
        opt(text()),
        opt(bin()),
        flag(),
        opt(any::<u32>()),
        flag(),
    );
    let d = (
        opt(text()),
        opt(text()),
        opt(text()),
        opt(1..=u16::MAX),
        opt(any::<u16>()),
    );
    let e = (
        opt(any::<u16>()),
        flag(),
        flag(),
        vec((text(), text()), 0..3),
    );
    let f = (opt(1..=u32::MAX), flag(), flag(), flag());
    (a, b, c, d, e, f)
        .prop_map(move |(a, b, c, d, e, f)| {
            let p = Properties {
                payload_format_indicator: a.0,
                message_expiry_interval: a.1,
                content_type: a.2,
                response_topic: a.3,
                correlation_data: a.4,
                subscription_identifiers: b.0,
                session_expiry_interval: b.1,
                assigned_client_identifier: b.2,
                server_keep_alive: c.0,
                authentication_method: c.1,
                authentication_data: c.2,
                request_problem_information: c.3,
                will_delay_interval: c.4,
                request_response_information: c.5,
                response_information: d.0,
                server_reference: d.1,
                reason_string: d.2,
                receive_maximum: d.3,
                topic_alias_maximum: d.4,
                topic_alias: e.0,
                maximum_qos: e.1,
                retain_available: e.2,
                user_properties: e.3,
                maximum_packet_size: f.0,
                wildcard_subscription_available: f.1,
                subscription_identifier_available: f.2,
                shared_subscription_available: f.3,
            };
            restrict(p, ctx)
        })
        .boxed()
}

fn connect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let will = (
        topic(),
        bin(),
        0u8..=2,
        any::<bool>(),
        properties(Context::Will, protocol),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    let fields = (
        any::<bool>(),
        any::<u16>(),
        text(),
        opt(will),
        opt(text()),
        opt(bin()),
    );
    (fields, properties(Context::Connect, protocol)).prop_map(move |(f, properties)| {
        let (clean_start, keep_alive, client_id, will, username, mut password) = f;
        if protocol == Protocol::V311 && username.is_none() {
            password = None;
        }
        let c = Connect {
            protocol,
            clean_start,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        };
        Packet::Connect(c)
    })
}

fn publish(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let topic = prop_oneof![topic(), Just(String::new())];
    let fields = (
        any::<bool>(),
        0u8..=2,
        any::<bool>(),
        topic,
        1..=u16::MAX,
        bin(),
    );
    (fields, properties(Context::Publish, protocol)).prop_map(move |(f, mut properties)| {
        let (dup, qos, retain, mut topic, packet_id, payload) = f;
        if topic.is_empty() && properties.topic_alias.is_none() {
            match protocol {
                Protocol::V5 => properties.topic_alias = Some(1),
                Protocol::V311 => topic = "t".into(),
            }
        }
        let (dup, packet_id) = if qos == 0 {
            (false, 0)
        } else {
            (dup, packet_id)
        };
        Packet::Publish(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            payload,
            properties,
        })
    })
}

fn ack(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let kinds = [
        (ReasonPacket::PubAck, Packet::PubAck as fn(Ack) -> Packet),
        (ReasonPacket::PubRec, Packet::PubRec),
        (ReasonPacket::PubRel, Packet::PubRel),
        (ReasonPacket::PubComp, Packet::PubComp),
    ];
    (
        select(kinds.to_vec()),
        1..=u16::MAX,
        any::<u8>(),
        properties(Context::Ack, protocol),
    )
        .prop_map(move |((kind, variant), packet_id, pick, properties)| {
            let valid: Vec<u8> = (0..=255).filter(|&c| valid_for(kind, c)).collect();
            let reason_code = match protocol {
                Protocol::V5 => valid[usize::from(pick) % valid.len()],
                Protocol::V311 => 0,
            };
            variant(Ack {
                packet_id,
                reason_code,
                properties,
            })
        })
}

fn subscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let one = (filter(), 0u8..=2, any::<bool>(), any::<bool>(), 0u8..=2).prop_map(move |f| {
        let v5 = protocol == Protocol::V5;
        SubscribeFilter {
            filter: f.0,
            qos: f.1,
            no_local: v5 && f.2,
            retain_as_published: v5 && f.3,
            retain_handling: if v5 { f.4 } else { 0 },
        }
    });
    (
        1..=u16::MAX,
        vec(one, 1..4),
        properties(Context::Subscribe, protocol),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn acks_with_codes(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = protocol == Protocol::V5;
    let connack_code = if v5 {
        codes(ReasonPacket::ConnAck).boxed()
    } else {
        (0u8..=5).boxed()
    };
    let connack = (
        any::<bool>(),
        connack_code,
        properties(Context::ConnAck, protocol),
    )
        .prop_map(|(session, reason_code, properties)| {
            let session_present = session && reason_code == 0;
            Packet::ConnAck(ConnAck {
                session_present,
                reason_code,
                properties,
            })
        });
    let suback_code = if v5 {
        codes(ReasonPacket::SubAck).boxed()
    } else {
        select(vec![0, 1, 2, 0x80]).boxed()
    };
    let suback = (
        1..=u16::MAX,
        vec(suback_code, 1..4),
        properties(Context::SubAck, protocol),
    )
        .prop_map(|(packet_id, reason_codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                properties,
            })
        });
    let unsuback_codes = if v5 {
        vec(codes(ReasonPacket::UnsubAck), 1..4).boxed()
    } else {
        Just(vec![]).boxed()
    };
    let unsuback = (
        1..=u16::MAX,
        unsuback_codes,
        properties(Context::UnsubAck, protocol),
    )
        .prop_map(|(packet_id, reason_codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reason_codes,
                properties,
            })
        });
    let unsubscribe = (
        1..=u16::MAX,
        vec(filter(), 1..4),
        properties(Context::Unsubscribe, protocol),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        });
    let disconnect_code = if v5 {
        codes(ReasonPacket::Disconnect).boxed()
    } else {
        Just(0).boxed()
    };
    let disconnect = (disconnect_code, properties(Context::Disconnect, protocol)).prop_map(
        |(reason_code, properties)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        },
    );
    prop_oneof![connack, suback, unsuback, unsubscribe, disconnect]
}

fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(protocol),
        publish(protocol),
        ack(protocol),
        subscribe(protocol),
        acks_with_codes(protocol),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
    ];
    match protocol {
        Protocol::V311 => common.boxed(),
        Protocol::V5 => {
            let auth = (
                codes(ReasonPacket::Auth),
                properties(Context::Auth, protocol),
            )
                .prop_map(|(reason_code, properties)| {
                    Packet::Auth(Auth {
                        reason_code,
                        properties,
                    })
                });
            prop_oneof![4 => common, 1 => auth].boxed()
        }
    }
}

fn any_protocol_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    prop_oneof![
        packet(Protocol::V311).prop_map(|p| (Protocol::V311, p)),
        packet(Protocol::V5).prop_map(|p| (Protocol::V5, p)),
    ]
}

fn encoded(packet: &Packet, protocol: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out, MAX).unwrap();
    assert_eq!(out.len(), encoded_size(packet, protocol));
    out
}

/// Decodes arbitrary input: no panic, never more consumed than given, and a
/// decoded packet consumed exactly what `check` measured.
fn decode_any(bytes: &[u8], protocol: Option<Protocol>, max: usize) {
    let mut buf = BytesMut::from(bytes);
    let checked = check(bytes, max);
    match decode(&mut buf, protocol, max) {
        Ok(Some(_)) => assert_eq!(Ok(bytes.len() - buf.len()), checked),
        Ok(None) => {
            assert_eq!(buf.len(), bytes.len());
            assert!(matches!(checked, Err(DecodeError::Incomplete(_))));
        }
        Err(_) => assert!(buf.len() <= bytes.len()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_packets_round_trip((protocol, packet) in any_protocol_packet()) {
        let mut buf = encoded(&packet, protocol);
        let decoded = decode(&mut buf, Some(protocol), MAX).unwrap().expect("a whole packet");
        prop_assert_eq!(decoded, packet.clone());
        prop_assert!(buf.is_empty());
        if let Packet::Connect(_) = packet {
            let mut buf = encoded(&packet, protocol);
            prop_assert_eq!(decode(&mut buf, None, MAX), Ok(Some(packet)));
        }
    }

    #[test]
    fn byte_by_byte_is_incomplete_until_the_last((protocol, packet) in any_protocol_packet()) {
        let bytes = encoded(&packet, protocol);
        for end in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..end]);
            prop_assert!(matches!(check(&buf, MAX), Err(DecodeError::Incomplete(n)) if n >= 1 && end + n <= bytes.len()));
            prop_assert_eq!(decode(&mut buf, Some(protocol), MAX), Ok(None));
            prop_assert_eq!(buf.len(), end);
        }
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode(&mut buf, Some(protocol), MAX), Ok(Some(packet)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..96)) {
        for protocol in [None, Some(Protocol::V311), Some(Protocol::V5)] {
            for max in [16, MAX] {
                decode_any(&bytes, protocol, max);
            }
        }
    }

    #[test]
    fn mutated_packets_never_panic(
        (protocol, packet) in any_protocol_packet(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encoded(&packet, protocol).to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        for end in [bytes.len(), cut.index(bytes.len() + 1)] {
            for p in [None, Some(Protocol::V311), Some(Protocol::V5)] {
                decode_any(&bytes[..end], p, MAX);
            }
        }
    }
}
