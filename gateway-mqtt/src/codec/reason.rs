//! Reason codes: MQTT 5.0 §2.4 (Table 2-6) and the MQTT 3.1.1 CONNACK return
//! codes (3.1.1 §3.2.2.3).
//!
//! # Format
//!
//! One byte. In 5.0, below 0x80 is success, 0x80 and above is failure; the
//! same value may mean different things in different packets (0x00 is
//! Success, Normal disconnection and Granted QoS 0). Which codes each packet
//! may carry is checked by the codec in both directions.

/// Success (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH).
pub const SUCCESS: u8 = 0x00;
/// Normal disconnection (DISCONNECT).
pub const NORMAL_DISCONNECTION: u8 = 0x00;
/// Granted QoS 0 (SUBACK).
pub const GRANTED_QOS_0: u8 = 0x00;
/// Granted QoS 1 (SUBACK).
pub const GRANTED_QOS_1: u8 = 0x01;
/// Granted QoS 2 (SUBACK).
pub const GRANTED_QOS_2: u8 = 0x02;
/// Disconnect with Will Message (DISCONNECT, client to server).
pub const DISCONNECT_WITH_WILL: u8 = 0x04;
/// No matching subscribers (PUBACK, PUBREC).
pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
/// No subscription existed (UNSUBACK).
pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
/// Continue authentication (AUTH).
pub const CONTINUE_AUTHENTICATION: u8 = 0x18;
/// Re-authenticate (AUTH).
pub const REAUTHENTICATE: u8 = 0x19;
pub const UNSPECIFIED_ERROR: u8 = 0x80;
pub const MALFORMED_PACKET: u8 = 0x81;
pub const PROTOCOL_ERROR: u8 = 0x82;
pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
pub const NOT_AUTHORIZED: u8 = 0x87;
pub const SERVER_UNAVAILABLE: u8 = 0x88;
pub const SERVER_BUSY: u8 = 0x89;
pub const BANNED: u8 = 0x8a;
pub const SERVER_SHUTTING_DOWN: u8 = 0x8b;
pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8c;
pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8d;
pub const SESSION_TAKEN_OVER: u8 = 0x8e;
pub const TOPIC_FILTER_INVALID: u8 = 0x8f;
pub const TOPIC_NAME_INVALID: u8 = 0x90;
pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
pub const PACKET_TOO_LARGE: u8 = 0x95;
pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
pub const QUOTA_EXCEEDED: u8 = 0x97;
pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
pub const RETAIN_NOT_SUPPORTED: u8 = 0x9a;
pub const QOS_NOT_SUPPORTED: u8 = 0x9b;
pub const USE_ANOTHER_SERVER: u8 = 0x9c;
pub const SERVER_MOVED: u8 = 0x9d;
pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9e;
pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9f;
pub const MAXIMUM_CONNECT_TIME: u8 = 0xa0;
pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xa1;
pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xa2;

/// 3.1.1 CONNACK: connection accepted.
pub const V3_ACCEPTED: u8 = 0;
/// 3.1.1 CONNACK: the server does not support the requested protocol level.
pub const V3_UNACCEPTABLE_PROTOCOL: u8 = 1;
/// 3.1.1 CONNACK: the client identifier is not allowed.
pub const V3_IDENTIFIER_REJECTED: u8 = 2;
/// 3.1.1 CONNACK: the MQTT service is unavailable.
pub const V3_SERVER_UNAVAILABLE: u8 = 3;
/// 3.1.1 CONNACK: the user name or password is malformed.
pub const V3_BAD_USERNAME_PASSWORD: u8 = 4;
/// 3.1.1 CONNACK: the client is not authorized to connect.
pub const V3_NOT_AUTHORIZED: u8 = 5;

/// The packets that carry a reason code, for [`valid_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReasonPacket {
    ConnAck,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    SubAck,
    UnsubAck,
    Disconnect,
    Auth,
}

/// Whether `code` is one MQTT 5.0 allows in `packet` (the "MQTT Control
/// Packets" column of Table 2-6, and each packet's own list).
pub(crate) fn valid_for(packet: ReasonPacket, code: u8) -> bool {
    match packet {
        ReasonPacket::ConnAck => matches!(
            code,
            0x00 | 0x80..=0x8a | 0x8c | 0x90 | 0x95 | 0x97 | 0x99..=0x9d | 0x9f
        ),
        ReasonPacket::PubAck | ReasonPacket::PubRec => {
            matches!(
                code,
                0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
            )
        }
        ReasonPacket::PubRel | ReasonPacket::PubComp => matches!(code, 0x00 | 0x92),
        ReasonPacket::SubAck => matches!(
            code,
            0x00..=0x02 | 0x80 | 0x83 | 0x87 | 0x8f | 0x91 | 0x97 | 0x9e | 0xa1 | 0xa2
        ),
        ReasonPacket::UnsubAck => matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8f | 0x91),
        ReasonPacket::Disconnect => matches!(
            code,
            0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8b | 0x8d..=0x90 | 0x93..=0xa2
        ),
        ReasonPacket::Auth => matches!(code, 0x00 | 0x18 | 0x19),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_valid_per_packet() {
        assert!(valid_for(ReasonPacket::ConnAck, BAD_AUTHENTICATION_METHOD));
        assert!(!valid_for(ReasonPacket::ConnAck, SERVER_SHUTTING_DOWN));
        assert!(valid_for(ReasonPacket::Disconnect, SERVER_SHUTTING_DOWN));
        assert!(!valid_for(
            ReasonPacket::Disconnect,
            BAD_USER_NAME_OR_PASSWORD
        ));
        assert!(valid_for(ReasonPacket::PubRel, PACKET_IDENTIFIER_NOT_FOUND));
        assert!(!valid_for(
            ReasonPacket::PubAck,
            PACKET_IDENTIFIER_NOT_FOUND
        ));
        assert!(valid_for(ReasonPacket::SubAck, GRANTED_QOS_2));
        assert!(!valid_for(ReasonPacket::UnsubAck, GRANTED_QOS_1));
        assert!(valid_for(ReasonPacket::Auth, REAUTHENTICATE));
        assert!(!valid_for(ReasonPacket::Auth, UNSPECIFIED_ERROR));
    }
}
