//! Fixed header, framing and property tests, and the helpers every packet
//! file's byte-literal tests use.

use bytes::BytesMut;

use super::*;
use Refused::{Malformed, ProtocolError};

const MAX: usize = 1 << 20;

/// The protocol levels the packet files' tests decode under.
pub(crate) const V3: Option<Protocol> = Some(Protocol::V311);
pub(crate) const V5: Option<Protocol> = Some(Protocol::V5);

/// Decodes `bytes` as exactly one packet.
pub(crate) fn decode_all(bytes: &[u8], protocol: Option<Protocol>) -> Packet {
    assert_eq!(check(bytes, MAX), Ok(bytes.len()));
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, protocol, MAX)
        .unwrap()
        .expect("a whole packet");
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    packet
}

/// Decodes `bytes`, expecting an error.
pub(crate) fn decode_err(bytes: &[u8], protocol: Option<Protocol>) -> DecodeError {
    decode(&mut BytesMut::from(bytes), protocol, MAX).expect_err("an error")
}

/// Decodes `bytes` as `packet` and encodes `packet` as `bytes` under
/// `protocol`.
#[track_caller]
pub(crate) fn round_trips(packet: &Packet, bytes: &[u8], protocol: Protocol) {
    assert_eq!(&decode_all(bytes, Some(protocol)), packet);
    assert_eq!(encode_all(packet, protocol), bytes);
}

/// How a decode refused bytes: malformed or a protocol error, the two
/// refusals the packet files' bad-input tables expect.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Malformed,
    ProtocolError,
}

/// Decodes `bytes`, which must be refused as malformed or as a protocol
/// error; says which.
#[track_caller]
pub(crate) fn refused(bytes: &[u8], protocol: Option<Protocol>) -> Refused {
    match decode_err(bytes, protocol) {
        DecodeError::Malformed(_) => Refused::Malformed,
        DecodeError::Protocol(_) => Refused::ProtocolError,
        other => panic!("neither malformed nor a protocol error: {other:?}"),
    }
}

/// Encodes `packet`, checking [`encoded_size`] against the result.
pub(crate) fn encode_all(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out, MAX).unwrap();
    assert_eq!(encoded_size(packet, protocol), out.len());
    out.to_vec()
}

/// Encodes `packet`, expecting an error and an untouched buffer.
pub(crate) fn encode_err(packet: &Packet, protocol: Protocol) -> EncodeError {
    let mut out = BytesMut::from(&b"before"[..]);
    let err = encode(packet, protocol, &mut out, MAX).expect_err("an error");
    assert_eq!(&out[..], b"before");
    err
}

#[test]
fn check_asks_for_more_bytes() {
    assert_eq!(check(&[], MAX), Err(DecodeError::Incomplete(2)));
    assert_eq!(check(&[0x30], MAX), Err(DecodeError::Incomplete(1)));
    assert_eq!(check(&[0x30, 0x80], MAX), Err(DecodeError::Incomplete(1)));
    assert_eq!(
        check(&[0x30, 0x05, 0x00], MAX),
        Err(DecodeError::Incomplete(4))
    );
    assert_eq!(check(&[0xc0, 0x00, 0xff], MAX), Ok(2));
}

#[test]
fn remaining_length_encodings() {
    // 1 to 4 bytes: 127, 128, 16384, 2097152.
    assert_eq!(check(&[0x30, 0x7f], MAX), Err(DecodeError::Incomplete(127)));
    assert_eq!(
        check(&[0x30, 0x80, 0x01], MAX),
        Err(DecodeError::Incomplete(128))
    );
    assert_eq!(
        check(&[0x30, 0x80, 0x80, 0x01], MAX),
        Err(DecodeError::Incomplete(16_384))
    );
    let four = [0x30, 0x80, 0x80, 0x80, 0x01];
    assert_eq!(
        check(&four, usize::MAX),
        Err(DecodeError::Incomplete(2_097_152))
    );
    // The largest value.
    let max = [0x30, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(
        check(&max, usize::MAX),
        Err(DecodeError::Incomplete(268_435_455))
    );
    // A fourth byte with its continuation bit set means a fifth: malformed.
    let five = [0x30, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(
        check(&five, usize::MAX),
        Err(DecodeError::MalformedRemainingLength)
    );
    assert_eq!(
        check(&five[..5], usize::MAX),
        Err(DecodeError::MalformedRemainingLength)
    );
    let mut buf = BytesMut::from(&five[..]);
    assert_eq!(
        decode(&mut buf, None, usize::MAX),
        Err(DecodeError::MalformedRemainingLength)
    );
    assert_eq!(
        DecodeError::MalformedRemainingLength.reason_code(),
        reason::MALFORMED_PACKET
    );
}

#[test]
fn non_minimal_remaining_length_decodes() {
    // PINGREQ with remaining length 0 written in two bytes.
    assert_eq!(decode_all(&[0xc0, 0x80, 0x00], None), Packet::PingReq);
    // PUBACK with remaining length 2 written in three bytes.
    let puback = decode_all(&[0x40, 0x82, 0x80, 0x00, 0x00, 0x07], None);
    assert_eq!(
        encode_all(&puback, Protocol::V311),
        [0x40, 0x02, 0x00, 0x07]
    );
}

#[test]
fn too_large_is_refused_before_the_bytes_arrive() {
    let header = [0x30, 0xff, 0x7f]; // remaining length 16383
    let err = DecodeError::PacketTooLarge {
        size: 16_386,
        max: 1024,
    };
    assert_eq!(check(&header, 1024), Err(err.clone()));
    let mut buf = BytesMut::from(&header[..]);
    assert_eq!(decode(&mut buf, None, 1024), Err(err.clone()));
    assert_eq!(buf.len(), 3, "nothing consumed");
    assert_eq!(err.reason_code(), reason::PACKET_TOO_LARGE);
    // Exactly the maximum is fine.
    assert_eq!(check(&[0xc0, 0x00], 2), Ok(2));
    assert!(matches!(
        check(&[0xc0, 0x00], 1),
        Err(DecodeError::PacketTooLarge { size: 2, max: 1 })
    ));
}

#[test]
fn decode_waits_and_takes_one_packet_at_a_time() {
    let mut buf = BytesMut::from(&[0xc0, 0x00, 0xd0][..]);
    assert_eq!(decode(&mut buf, None, MAX), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, None, MAX), Ok(None));
    assert_eq!(&buf[..], [0xd0]);
    buf.extend_from_slice(&[0x00]);
    assert_eq!(
        decode(&mut buf, Some(Protocol::V5), MAX),
        Ok(Some(Packet::PingResp))
    );
    assert!(buf.is_empty());
}

#[test]
fn pings_round_trip_in_both_protocols() {
    for protocol in [Protocol::V311, Protocol::V5] {
        assert_eq!(decode_all(&[0xc0, 0x00], Some(protocol)), Packet::PingReq);
        assert_eq!(decode_all(&[0xd0, 0x00], Some(protocol)), Packet::PingResp);
        assert_eq!(encode_all(&Packet::PingReq, protocol), [0xc0, 0x00]);
        assert_eq!(encode_all(&Packet::PingResp, protocol), [0xd0, 0x00]);
    }
    assert_eq!(refused(&[0xc0, 0x01, 0x00], None), Malformed);
    assert_eq!(refused(&[0xd0, 0x01, 0x00], None), Malformed);
}

#[test]
fn fixed_header_flags() {
    // Types that need 0000.
    for first in [0x11, 0x28, 0x41, 0x54, 0x78, 0x98, 0xb1, 0xc2, 0xd4, 0xe8] {
        let err = decode_err(&[first, 0x00], Some(Protocol::V5));
        assert!(
            matches!(err, DecodeError::Malformed(_)),
            "{first:#04x}: {err:?}"
        );
        assert_eq!(err.reason_code(), reason::MALFORMED_PACKET);
    }
    // Types that need 0010.
    for first in [0x60, 0x63, 0x80, 0x8a, 0xa0, 0xa6] {
        let err = decode_err(&[first, 0x00], Some(Protocol::V311));
        assert!(
            matches!(err, DecodeError::Malformed(_)),
            "{first:#04x}: {err:?}"
        );
    }
}

#[test]
fn reserved_packet_types() {
    for protocol in [None, Some(Protocol::V311), Some(Protocol::V5)] {
        let err = decode_err(&[0x00, 0x00], protocol);
        assert!(matches!(err, DecodeError::Protocol(_)));
        assert_eq!(refused(&[0x0f, 0x00], protocol), ProtocolError);
        assert_eq!(err.reason_code(), reason::PROTOCOL_ERROR);
    }
    assert_eq!(refused(&[0xf0, 0x00], Some(Protocol::V311)), ProtocolError);
    assert_eq!(refused(&[0xf3, 0x00], None), ProtocolError);
}

#[test]
fn before_connect_packets_are_3_1_1() {
    // A v5-style PUBACK with a reason code is malformed as 3.1.1.
    let puback = [0x40, 0x03, 0x00, 0x01, 0x10];
    assert_eq!(refused(&puback, None), Malformed);
    assert!(matches!(
        decode_all(&puback, Some(Protocol::V5)),
        Packet::PubAck(_)
    ));
}

#[test]
fn encoder_enforces_the_maximum() {
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: 0,
        retain: false,
        topic: "t".into(),
        packet_id: 0,
        payload: Bytes::from(vec![0u8; 200]),
        properties: Properties::default(),
    });
    // 1 + 2 (remaining length 203) + 3 (topic) + 200.
    assert_eq!(encoded_size(&publish, Protocol::V311), 206);
    let mut out = BytesMut::new();
    let err = encode(&publish, Protocol::V311, &mut out, 205);
    assert_eq!(
        err,
        Err(EncodeError::PacketTooLarge {
            size: 206,
            max: 205
        })
    );
    assert!(out.is_empty());
    assert_eq!(encode(&publish, Protocol::V311, &mut out, 206), Ok(()));
    assert_eq!(out.len(), 206);
    assert_eq!(check(&out, 206), Ok(206));
}

#[test]
fn encoder_refuses_long_strings() {
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: 0,
        retain: false,
        topic: "t".repeat(65_536),
        packet_id: 0,
        payload: Bytes::new(),
        properties: Properties::default(),
    });
    assert!(matches!(
        encode_err(&publish, Protocol::V5),
        EncodeError::Invalid(_)
    ));
}

/// A v5 CONNECT (client id "c") with `properties` as its property bytes.
fn v5_connect_with(properties: &[u8]) -> Vec<u8> {
    let mut v = vec![0x10, 0, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 0];
    v.push(u8::try_from(properties.len()).unwrap());
    v.extend_from_slice(properties);
    v.extend_from_slice(&[0, 1, b'c']);
    v[1] = u8::try_from(v.len() - 2).unwrap();
    v
}

#[test]
fn property_rules() {
    let ok = decode_all(
        &v5_connect_with(&[0x21, 0x00, 0x01, 0x27, 0, 0, 1, 0]),
        None,
    );
    let Packet::Connect(connect) = &ok else {
        panic!("{ok:?}")
    };
    assert_eq!(connect.properties.receive_maximum, Some(1));
    assert_eq!(connect.properties.maximum_packet_size, Some(256));
    assert_eq!(
        encode_all(&ok, Protocol::V311),
        v5_connect_with(&[0x21, 0x00, 0x01, 0x27, 0, 0, 1, 0])
    );

    let protocol_error = |props: &[u8]| {
        let err = decode_err(&v5_connect_with(props), None);
        assert!(
            matches!(err, DecodeError::Protocol(_)),
            "{props:x?}: {err:?}"
        );
    };
    protocol_error(&[0x21, 0x00, 0x00]); // receive maximum 0
    protocol_error(&[0x27, 0, 0, 0, 0]); // maximum packet size 0
    protocol_error(&[0x17, 0x02]); // request problem information 2
    protocol_error(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1]); // session expiry twice
    protocol_error(&[0x16, 0x00, 0x00]); // authentication data without method

    let malformed = |props: &[u8]| {
        let err = decode_err(&v5_connect_with(props), None);
        assert!(
            matches!(err, DecodeError::Malformed(_)),
            "{props:x?}: {err:?}"
        );
    };
    malformed(&[0x23, 0x00, 0x01]); // topic alias: not a CONNECT property
    malformed(&[0x12, 0x00, 0x00]); // assigned client id: CONNACK only
    malformed(&[0x7f, 0x00]); // unknown identifier
    malformed(&[0x21, 0x00]); // value cut short by the property length
    malformed(&[0x26, 0x00, 0x01, b'k']); // user property without its value

    // Property length longer than the packet.
    let mut long = v5_connect_with(&[]);
    long[12] = 0x40;
    assert_eq!(refused(&long, None), Malformed);

    // User properties repeat and keep their order.
    let users = [0x26, 0, 1, b'a', 0, 1, b'1', 0x26, 0, 1, b'a', 0, 1, b'2'];
    let Packet::Connect(connect) = decode_all(&v5_connect_with(&users), None) else {
        panic!()
    };
    let pairs = [("a".into(), "1".into()), ("a".into(), "2".into())];
    assert_eq!(connect.properties.user_properties, pairs);
}

#[test]
fn encoder_checks_properties() {
    let ack = |properties| {
        Packet::PubAck(Ack {
            packet_id: 1,
            reason_code: 0,
            properties,
        })
    };
    let alias = Properties {
        topic_alias: Some(1),
        ..Properties::default()
    };
    assert!(matches!(
        encode_err(&ack(alias.clone()), Protocol::V5),
        EncodeError::Invalid(_)
    ));
    // Dropped, not checked, for 3.1.1.
    assert_eq!(
        encode_all(&ack(alias), Protocol::V311),
        [0x40, 0x02, 0x00, 0x01]
    );
    let nul = Properties {
        reason_string: Some("a\0".into()),
        ..Properties::default()
    };
    assert!(matches!(
        encode_err(&ack(nul), Protocol::V5),
        EncodeError::Invalid(_)
    ));
}

#[test]
fn error_reason_codes() {
    assert_eq!(DecodeError::Incomplete(1).reason_code(), 0x81);
    assert_eq!(DecodeError::Malformed(String::new()).reason_code(), 0x81);
    assert_eq!(DecodeError::Protocol(String::new()).reason_code(), 0x82);
    assert_eq!(
        DecodeError::UnsupportedProtocol { level: 3 }.reason_code(),
        0x84
    );
    assert_eq!(
        DecodeError::InvalidTopicName(String::new()).reason_code(),
        0x90
    );
    assert_eq!(
        DecodeError::PacketTooLarge { size: 2, max: 1 }.reason_code(),
        0x95
    );
}
