//! CONNECT: the first packet a client sends (3.1.1 §3.1, 5.0 §3.1).
//!
//! # Format
//!
//! ```text
//!  fixed header      0x10, remaining length
//!  protocol name     00 04 'M' 'Q' 'T' 'T'
//!  protocol level    04 (3.1.1) | 05 (5.0)
//!  connect flags     bit 7 user name | 6 password | 5 will retain
//!                    | 4-3 will QoS | 2 will | 1 clean start | 0 reserved (0)
//!  keep alive        two-byte integer, seconds
//!  properties        5.0 only
//!  client id         string (may be empty)
//!  will properties   5.0 only  \
//!  will topic        string     } when the will flag is set
//!  will payload      binary    /
//!  user name         string    when its flag is set
//!  password          binary    when its flag is set
//! ```
//!
//! # Invariants
//!
//! - Protocol name other than "MQTT", or level other than 4 or 5:
//!   [`DecodeError::UnsupportedProtocol`] carrying the level (e.g. "MQIsdp" 3).
//! - Reserved flag set, will QoS 3, will QoS or retain without the will flag,
//!   password without user name in 3.1.1 (allowed in 5.0 §3.1.2.9): malformed.
//! - The will topic follows topic name rules ([`DecodeError::InvalidTopicName`]).

use bytes::{BufMut, Bytes, BytesMut};

use super::properties::Context;
use super::{
    DecodeError, EncodeError, Properties, Protocol, Reader, put_binary, put_string,
    topic_name_error,
};

/// The message the server publishes for a client that goes away without a
/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Where the will is published (a topic name: no wildcards).
    pub topic: String,
    /// The message itself.
    pub payload: Bytes,
    /// QoS it is published with, 0..=2.
    pub qos: u8,
    /// Whether it is published retained.
    pub retain: bool,
    /// Will properties (5.0 §3.1.3.2); empty for 3.1.1.
    pub properties: Properties,
}

/// A client's request to open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol level the client speaks; the whole connection uses it.
    pub protocol: Protocol,
    /// Start a new session (3.1.1 "clean session").
    pub clean_start: bool,
    /// Seconds between control packets before the server gives up; 0 = off.
    pub keep_alive: u16,
    /// The session's key; empty asks the server to assign one.
    pub client_id: String,
    /// Published if the client disappears.
    pub will: Option<LastWill>,
    /// For authentication.
    pub username: Option<String>,
    /// For authentication; binary in both protocols.
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0 §3.1.2.11); empty for 3.1.1.
    pub properties: Properties,
}

const RESERVED: u8 = 0x01;
const CLEAN_START: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

fn malformed(what: &str) -> DecodeError {
    DecodeError::Malformed(format!("CONNECT: {what}"))
}

impl Connect {
    pub(crate) fn read(mut r: Reader) -> Result<Self, DecodeError> {
        let name = r.binary("CONNECT protocol name")?;
        let level = r.u8("CONNECT protocol level")?;
        let protocol = match (name.as_ref(), level) {
            (b"MQTT", 4) => Protocol::V311,
            (b"MQTT", 5) => Protocol::V5,
            _ => return Err(DecodeError::UnsupportedProtocol { level }),
        };
        let flags = r.u8("CONNECT flags")?;
        let will_qos = (flags >> 3) & 0x03;
        if flags & RESERVED != 0 {
            return Err(malformed("reserved flag set"));
        }
        if will_qos == 3 {
            return Err(malformed("will QoS 3"));
        }
        if flags & WILL == 0 && (will_qos != 0 || flags & WILL_RETAIN != 0) {
            return Err(malformed("will QoS or retain without a will"));
        }
        if protocol == Protocol::V311 && flags & PASSWORD != 0 && flags & USERNAME == 0 {
            return Err(malformed("password without user name"));
        }
        let keep_alive = r.u16("CONNECT keep alive")?;
        let properties = Properties::read_in(&mut r, protocol, Context::Connect)?;
        let client_id = r.string("CONNECT client identifier")?;
        let will = if flags & WILL != 0 {
            let properties = Properties::read_in(&mut r, protocol, Context::Will)?;
            let topic = r.string("CONNECT will topic")?;
            if let Some(e) = topic_name_error(&topic, false) {
                return Err(DecodeError::InvalidTopicName(format!("will topic: {e}")));
            }
            let payload = r.binary("CONNECT will payload")?;
            let retain = flags & WILL_RETAIN != 0;
            Some(LastWill {
                topic,
                payload,
                qos: will_qos,
                retain,
                properties,
            })
        } else {
            None
        };
        let username = if flags & USERNAME != 0 {
            Some(r.string("CONNECT user name")?)
        } else {
            None
        };
        let password = if flags & PASSWORD != 0 {
            Some(r.binary("CONNECT password")?)
        } else {
            None
        };
        r.finish("CONNECT")?;
        Ok(Self {
            protocol,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn body_len(&self) -> usize {
        let v5 = self.protocol == Protocol::V5;
        let properties = if v5 { self.properties.encoded_len() } else { 0 };
        let will = self.will.as_ref().map_or(0, |w| {
            let properties = if v5 { w.properties.encoded_len() } else { 0 };
            properties + 2 + w.topic.len() + 2 + w.payload.len()
        });
        10 + properties
            + 2
            + self.client_id.len()
            + will
            + self.username.as_ref().map_or(0, |u| 2 + u.len())
            + self.password.as_ref().map_or(0, |p| 2 + p.len())
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let invalid = |what: &str| Err(EncodeError::Invalid(format!("CONNECT: {what}")));
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            if will.qos > 2 {
                return invalid("will QoS above 2");
            }
            if let Some(e) = topic_name_error(&will.topic, false) {
                return invalid(&format!("will topic: {e}"));
            }
            flags |= WILL | (will.qos << 3);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            if self.protocol == Protocol::V311 && self.username.is_none() {
                return invalid("password without user name in 3.1.1");
            }
            flags |= PASSWORD;
        }
        put_binary(out, b"MQTT", "protocol name")?;
        out.put_u8(match self.protocol {
            Protocol::V311 => 4,
            Protocol::V5 => 5,
        });
        out.put_u8(flags);
        out.put_u16(self.keep_alive);
        let v5 = self.protocol == Protocol::V5;
        if v5 {
            self.properties.write(Context::Connect, out)?;
        }
        put_string(out, &self.client_id, "CONNECT client identifier")?;
        if let Some(will) = &self.will {
            if v5 {
                will.properties.write(Context::Will, out)?;
            }
            put_string(out, &will.topic, "CONNECT will topic")?;
            put_binary(out, &will.payload, "CONNECT will payload")?;
        }
        if let Some(username) = &self.username {
            put_string(out, username, "CONNECT user name")?;
        }
        if let Some(password) = &self.password {
            put_binary(out, password, "CONNECT password")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Packet;
    use super::super::tests::{Refused::Malformed, decode_all, decode_err, encode_all, refused};
    use super::*;

    /// A 3.1.1 CONNECT from the spec's own example: client id, will, user
    /// name and password.
    const V3_FULL: &[u8] = &[
        0x10, 0x25, // fixed header, remaining length 37
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, // protocol name, level 4
        0xee, // user, password, will retain, will QoS 1, will, clean
        0x00, 0x3c, // keep alive 60
        0x00, 0x03, b'c', b'i', b'd', // client id
        0x00, 0x03, b'a', b'/', b'b', // will topic
        0x00, 0x03, b'b', b'y', b'e', // will payload
        0x00, 0x04, b'u', b's', b'e', b'r', // user name
        0x00, 0x04, b'p', b'a', b's', b's', // password
    ];

    fn v3_full() -> Connect {
        Connect {
            protocol: Protocol::V311,
            clean_start: true,
            keep_alive: 60,
            client_id: "cid".into(),
            will: Some(LastWill {
                topic: "a/b".into(),
                payload: Bytes::from_static(b"bye"),
                qos: 1,
                retain: true,
                properties: Properties::default(),
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"pass")),
            properties: Properties::default(),
        }
    }

    #[test]
    fn v3_connect_round_trips() {
        let packet = Packet::Connect(v3_full());
        assert_eq!(decode_all(V3_FULL, None), packet);
        assert_eq!(encode_all(&packet, Protocol::V5), V3_FULL); // own level wins
    }

    #[test]
    fn v5_connect_with_properties_round_trips() {
        let good: &[u8] = &[
            0x10, 0x20, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x46, 0x00, 0x0a, //
            0x05, 0x11, 0x00, 0x00, 0x00, 0x78, // session expiry 120
            0x00, 0x00, // empty client id
            0x05, 0x18, 0x00, 0x00, 0x00, 0x05, // will delay 5
            0x00, 0x01, b't', 0x00, 0x00, // will topic "t", empty payload
            0x00, 0x01, b'p', // password without user name: fine in 5.0
        ];
        let packet = Packet::Connect(Connect {
            protocol: Protocol::V5,
            clean_start: true,
            keep_alive: 10,
            client_id: String::new(),
            will: Some(LastWill {
                topic: "t".into(),
                payload: Bytes::new(),
                qos: 0,
                retain: false,
                properties: Properties {
                    will_delay_interval: Some(5),
                    ..Properties::default()
                },
            }),
            username: None,
            password: Some(Bytes::from_static(b"p")),
            properties: Properties {
                session_expiry_interval: Some(120),
                ..Properties::default()
            },
        });
        assert_eq!(decode_all(good, Some(Protocol::V311)), packet);
        assert_eq!(encode_all(&packet, Protocol::V311), good);
    }

    /// CONNECT with protocol name "MQTT", level 4, the given flags, keep alive
    /// 0, client id "c" and `tail` after it.
    fn v3_with_flags(flags: u8, tail: &[u8]) -> Vec<u8> {
        let mut v = vec![
            0x10, 0, 0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 0, 0, 1, b'c',
        ];
        v.extend_from_slice(tail);
        v[1] = u8::try_from(v.len() - 2).unwrap();
        v
    }

    #[test]
    fn unsupported_protocols() {
        let mqisdp = [
            0x10, 0x0f, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 0, 0, 1, b'c',
        ];
        assert_eq!(
            decode_err(&mqisdp, None),
            DecodeError::UnsupportedProtocol { level: 3 }
        );
        let mut level6 = v3_with_flags(0x02, &[]);
        level6[8] = 6;
        assert_eq!(
            decode_err(&level6, None),
            DecodeError::UnsupportedProtocol { level: 6 }
        );
        assert_eq!(decode_err(&level6, None).reason_code(), 0x84);
        let mut name = v3_with_flags(0x02, &[]);
        name[7] = b'X';
        assert_eq!(
            decode_err(&name, None),
            DecodeError::UnsupportedProtocol { level: 4 }
        );
    }

    #[test]
    fn bad_flags_are_malformed() {
        for flags in [
            0x03, // reserved bit
            0x08, // will QoS 1 without will
            0x20, // will retain without will
            0x1c, // will QoS 3
            0x40, // password without user name (3.1.1)
        ] {
            let err = decode_err(&v3_with_flags(flags, &[0, 1, b't', 0, 0, 0, 0]), None);
            assert!(
                matches!(err, DecodeError::Malformed(_)),
                "{flags:#x}: {err:?}"
            );
        }
    }

    #[test]
    fn will_topic_and_trailing_bytes() {
        let wildcard = v3_with_flags(0x04, &[0, 1, b'#', 0, 0]);
        assert!(matches!(
            decode_err(&wildcard, None),
            DecodeError::InvalidTopicName(_)
        ));
        let trailing = v3_with_flags(0x00, &[0]);
        assert_eq!(refused(&trailing, None), Malformed);
        let truncated = v3_with_flags(0x80, &[0, 5, b'u']);
        assert_eq!(refused(&truncated, None), Malformed);
        let nul_client = [
            0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 4, 0, 0, 0, 0, 1, 0,
        ];
        assert_eq!(refused(&nul_client, None), Malformed);
        let bad_utf8 = [
            0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 4, 0, 0, 0, 0, 1, 0xff,
        ];
        assert_eq!(refused(&bad_utf8, None), Malformed);
    }

    #[test]
    fn encoder_refuses_what_decoder_refuses() {
        let mut c = v3_full();
        c.username = None;
        let err = crate::codec::encode(
            &Packet::Connect(c),
            Protocol::V311,
            &mut BytesMut::new(),
            1 << 20,
        );
        assert!(matches!(err, Err(EncodeError::Invalid(_))));
        let mut c = v3_full();
        c.will.as_mut().unwrap().qos = 3;
        let mut out = BytesMut::from(&b"keep"[..]);
        let err = crate::codec::encode(&Packet::Connect(c), Protocol::V311, &mut out, 1 << 20);
        assert!(matches!(err, Err(EncodeError::Invalid(_))));
        assert_eq!(&out[..], b"keep");
    }
}
