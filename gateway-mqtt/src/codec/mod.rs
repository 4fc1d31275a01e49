//! The MQTT packet codec: MQTT 3.1.1 and 5.0 packets from bytes and back.
//!
//! Pure: bytes in, packets out, no I/O. A connection calls [`check`] (is one
//! whole packet at the front of the buffer? how long is it?) and then
//! [`decode`] (parse it and advance the buffer), so a half-received packet
//! never allocates. Sizes are bounded both ways: [`check`] refuses a packet
//! larger than the allowed maximum as soon as its remaining length is known,
//! and [`encode`] refuses to produce one.
//!
//! # Format
//!
//! Every packet starts with a fixed header (3.1.1 §2.2, 5.0 §2.1):
//!
//! ```text
//!  bit      7   6   5   4   3   2   1   0
//!  byte 1  [ packet type  ][    flags     ]   flags: PUBLISH DUP|QoS|QoS|RETAIN,
//!                                               PUBREL/SUBSCRIBE/UNSUBSCRIBE 0010,
//!                                               every other type 0000
//!  byte 2.. remaining length, 1 to 4 bytes (variable byte integer)
//!          then `remaining length` bytes: variable header and payload
//! ```
//!
//! A variable byte integer (3.1.1 §2.2.3, 5.0 §1.5.5) carries 7 bits per byte,
//! least significant group first; bit 7 says another byte follows. Four bytes
//! at most, so 268,435,455 is the largest value.
//!
//! ```text
//!  [1ccccccc] [1ccccccc] [1ccccccc] [0ccccccc]
//! ```
//!
//! The other field types (integers, strings, binary data) are drawn in
//! `data_types.rs`, the MQTT 5 properties in `properties.rs`.
//!
//! Packet type numbers: 1 CONNECT, 2 CONNACK, 3 PUBLISH, 4 PUBACK, 5 PUBREC,
//! 6 PUBREL, 7 PUBCOMP, 8 SUBSCRIBE, 9 SUBACK, 10 UNSUBSCRIBE, 11 UNSUBACK,
//! 12 PINGREQ, 13 PINGRESP, 14 DISCONNECT, 15 AUTH (5.0 only); 0 is reserved.
//! Each packet's own layout is drawn in its file.
//!
//! # Invariants
//!
//! - [`decode`] never panics and never consumes more bytes than it was given;
//!   what it accepts, [`encode`] writes back and [`decode`] reads again equal.
//! - Direction is not checked here (a server may decode a CONNACK): the
//!   caller refuses packets that may not travel its way.
//! - 3.1.1 packets always carry empty [`Properties`].
//!
//! # Concurrency
//!
//! Plain functions over caller-owned buffers; call from anywhere.

mod ack;
mod auth;
mod connack;
mod connect;
mod data_types;
mod disconnect;
mod properties;
mod publish;
pub mod reason;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

use bytes::{BufMut, Bytes, BytesMut};

pub use ack::Ack;
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, LastWill};
pub use disconnect::Disconnect;
pub use properties::Properties;
pub use publish::Publish;
pub use suback::SubAck;
pub use subscribe::{Subscribe, SubscribeFilter};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

use ack::AckKind;
use data_types::{Reader, put_binary, put_packet_id, put_string, put_vbi, vbi_len};

/// The largest value a variable byte integer can carry (and so the largest
/// remaining length).
pub const MAX_VARIABLE_BYTE_INTEGER: u32 = 268_435_455;

/// The MQTT protocol version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

/// One MQTT control packet.
// CONNECT (two property sets) is the largest; boxing it would change the API
// the server is written against for a packet seen once per connection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

/// Why bytes could not be decoded into a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a whole packet yet: at least this many more bytes are needed (a
    /// variant, not a failure).
    #[error("incomplete packet: at least {0} more bytes needed")]
    Incomplete(usize),
    /// Remaining length longer than 4 bytes or otherwise malformed.
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    /// The packet is larger than the allowed maximum (whole packet size incl.
    /// fixed header).
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: usize },
    /// Malformed packet: bad flags, truncated fields, invalid UTF-8, NUL in a
    /// string, bad property, QoS 3, trailing bytes, ...
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// Well-formed but against the protocol: packet id 0, a property twice,
    /// SUBSCRIBE without filters, a reserved packet type, ...
    #[error("protocol error: {0}")]
    Protocol(String),
    /// CONNECT with a protocol name or level we do not speak.
    #[error("unsupported protocol (level {level})")]
    UnsupportedProtocol { level: u8 },
    /// A topic name with `+`/`#` wildcards, or an empty one where not allowed.
    #[error("invalid topic name: {0}")]
    InvalidTopicName(String),
}

impl DecodeError {
    /// The MQTT 5 reason code that answers this error (in a CONNACK before the
    /// connection is accepted, in a DISCONNECT after).
    pub fn reason_code(&self) -> u8 {
        match self {
            Self::Incomplete(_) | Self::MalformedRemainingLength | Self::Malformed(_) => {
                reason::MALFORMED_PACKET
            }
            Self::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            Self::Protocol(_) => reason::PROTOCOL_ERROR,
            Self::UnsupportedProtocol { .. } => reason::UNSUPPORTED_PROTOCOL_VERSION,
            Self::InvalidTopicName(_) => reason::TOPIC_NAME_INVALID,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded packet would exceed the allowed maximum size.
    #[error("encoded packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: usize },
    /// The packet cannot be expressed on the wire (a field out of range, a
    /// string too long, a property not allowed in this packet, ...).
    #[error("invalid packet: {0}")]
    Invalid(String),
}

/// Phase 1: is there one whole packet at the start of `buf`? Returns its
/// total length (fixed header + remaining length) without allocating.
///
/// # Errors
///
/// [`DecodeError::Incomplete`] with the least number of bytes still missing;
/// [`DecodeError::MalformedRemainingLength`]; [`DecodeError::PacketTooLarge`]
/// as soon as the remaining length is known, before the bytes arrive.
pub fn check(buf: &[u8], max_packet_size: usize) -> Result<usize, DecodeError> {
    fixed_header(buf, max_packet_size).map(|(_, header_len, remaining)| header_len + remaining)
}

/// Reads the fixed header: (first byte, header length, remaining length).
fn fixed_header(buf: &[u8], max: usize) -> Result<(u8, usize, usize), DecodeError> {
    let Some(&first) = buf.first() else {
        return Err(DecodeError::Incomplete(2));
    };
    let mut remaining = 0usize;
    for (i, shift) in [0u32, 7, 14, 21].into_iter().enumerate() {
        let Some(&byte) = buf.get(1 + i) else {
            return Err(DecodeError::Incomplete(1));
        };
        remaining |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let header_len = 2 + i;
            let size = header_len + remaining;
            if size > max {
                return Err(DecodeError::PacketTooLarge { size, max });
            }
            if buf.len() < size {
                return Err(DecodeError::Incomplete(size - buf.len()));
            }
            return Ok((first, header_len, remaining));
        }
    }
    Err(DecodeError::MalformedRemainingLength)
}

/// Phase 2: decodes one packet from the front of `buf` and advances past it;
/// `Ok(None)` when more bytes are needed (nothing is consumed then).
///
/// `protocol` is the connection's negotiated protocol, `None` before CONNECT:
/// a CONNECT always decodes with its own protocol level, any other packet with
/// `protocol`, or as 3.1.1 when it is `None`. Never panics on any input.
///
/// # Errors
///
/// Any [`DecodeError`] but `Incomplete`. After an error from the framing
/// phase ([`check`]) nothing is consumed; after an error in the packet body the
/// offending packet has been consumed. Either way the connection is done.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let (first, header_len, remaining) = match fixed_header(buf, max_packet_size) {
        Ok(header) => header,
        Err(DecodeError::Incomplete(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut frame = buf.split_to(header_len + remaining).freeze();
    let body = frame.split_off(header_len);
    parse(first, body, protocol).map(Some)
}

/// Parses the body of one packet whose fixed header's first byte is `first`.
fn parse(first: u8, body: Bytes, protocol: Option<Protocol>) -> Result<Packet, DecodeError> {
    let (kind, flags) = (first >> 4, first & 0x0f);
    let protocol = protocol.unwrap_or(Protocol::V311);
    if kind == 0 || (kind == 15 && protocol == Protocol::V311) {
        return Err(DecodeError::Protocol(format!(
            "reserved packet type {kind} in {protocol:?}"
        )));
    }
    let expected_flags = match kind {
        3 => flags,
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if flags != expected_flags {
        return Err(DecodeError::Malformed(format!(
            "fixed header flags {flags:#06b} for packet type {kind}"
        )));
    }
    let r = Reader::new(body);
    Ok(match kind {
        1 => Packet::Connect(Connect::read(r)?),
        2 => Packet::ConnAck(ConnAck::read(r, protocol)?),
        3 => Packet::Publish(Publish::read(flags, r, protocol)?),
        4 => Packet::PubAck(Ack::read(AckKind::PubAck, r, protocol)?),
        5 => Packet::PubRec(Ack::read(AckKind::PubRec, r, protocol)?),
        6 => Packet::PubRel(Ack::read(AckKind::PubRel, r, protocol)?),
        7 => Packet::PubComp(Ack::read(AckKind::PubComp, r, protocol)?),
        8 => Packet::Subscribe(Subscribe::read(r, protocol)?),
        9 => Packet::SubAck(SubAck::read(r, protocol)?),
        10 => Packet::Unsubscribe(Unsubscribe::read(r, protocol)?),
        11 => Packet::UnsubAck(UnsubAck::read(r, protocol)?),
        12 => r.finish("PINGREQ").map(|()| Packet::PingReq)?,
        13 => r.finish("PINGRESP").map(|()| Packet::PingResp)?,
        14 => Packet::Disconnect(Disconnect::read(r, protocol)?),
        _ => Packet::Auth(Auth::read(r)?), // 15 in 5.0; 0 and 3.1.1 15 refused above
    })
}

/// Encodes one packet onto the end of `out`.
///
/// A CONNECT is written in its own [`Connect::protocol`]; every other packet
/// in `protocol`. For 3.1.1, properties and 5.0-only fields are dropped (see
/// each packet type for what that means).
///
/// # Errors
///
/// [`EncodeError::PacketTooLarge`] when the whole packet would exceed
/// `max_packet_size` (or the protocol's 268,435,455-byte remaining length);
/// [`EncodeError::Invalid`] when a field cannot be expressed. On error `out`
/// is left as it was.
pub fn encode(
    packet: &Packet,
    protocol: Protocol,
    out: &mut BytesMut,
    max_packet_size: usize,
) -> Result<(), EncodeError> {
    let remaining = body_len(packet, protocol);
    let size = 1 + vbi_len(remaining) + remaining;
    let Ok(remaining_u32) = u32::try_from(remaining) else {
        return Err(EncodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    };
    if remaining_u32 > MAX_VARIABLE_BYTE_INTEGER || size > max_packet_size {
        let max = max_packet_size.min(MAX_VARIABLE_BYTE_INTEGER as usize + 5);
        return Err(EncodeError::PacketTooLarge { size, max });
    }
    let start = out.len();
    out.reserve(size);
    out.put_u8(first_byte(packet));
    put_vbi(out, remaining_u32);
    let written = write_body(packet, protocol, out);
    if written.is_err() {
        out.truncate(start);
    }
    debug_assert!(written.is_err() || out.len() - start == size);
    written
}

/// The size `packet` would have once encoded in `protocol`: fixed header
/// included (so the server can drop messages larger than a client's Maximum
/// Packet Size). Meaningful only for packets that [`encode`] accepts.
pub fn encoded_size(packet: &Packet, protocol: Protocol) -> usize {
    let remaining = body_len(packet, protocol);
    1 + vbi_len(remaining) + remaining
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => 0x30 | p.flags(),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xa2,
        Packet::UnsubAck(_) => 0xb0,
        Packet::PingReq => 0xc0,
        Packet::PingResp => 0xd0,
        Packet::Disconnect(_) => 0xe0,
        Packet::Auth(_) => 0xf0,
    }
}

fn body_len(packet: &Packet, protocol: Protocol) -> usize {
    match packet {
        Packet::Connect(p) => p.body_len(),
        Packet::ConnAck(p) => p.body_len(protocol),
        Packet::Publish(p) => p.body_len(protocol),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            p.body_len(protocol)
        }
        Packet::Subscribe(p) => p.body_len(protocol),
        Packet::SubAck(p) => p.body_len(protocol),
        Packet::Unsubscribe(p) => p.body_len(protocol),
        Packet::UnsubAck(p) => p.body_len(protocol),
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(p) => p.body_len(protocol),
        Packet::Auth(p) => p.body_len(),
    }
}

fn write_body(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(p) => p.write_body(out),
        Packet::ConnAck(p) => p.write_body(protocol, out),
        Packet::Publish(p) => p.write_body(protocol, out),
        Packet::PubAck(p) => p.write_body(AckKind::PubAck, protocol, out),
        Packet::PubRec(p) => p.write_body(AckKind::PubRec, protocol, out),
        Packet::PubRel(p) => p.write_body(AckKind::PubRel, protocol, out),
        Packet::PubComp(p) => p.write_body(AckKind::PubComp, protocol, out),
        Packet::Subscribe(p) => p.write_body(protocol, out),
        Packet::SubAck(p) => p.write_body(protocol, out),
        Packet::Unsubscribe(p) => p.write_body(protocol, out),
        Packet::UnsubAck(p) => p.write_body(protocol, out),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(p) => p.write_body(protocol, out),
        Packet::Auth(p) => match protocol {
            Protocol::V5 => p.write_body(out),
            Protocol::V311 => Err(EncodeError::Invalid(
                "AUTH does not exist in MQTT 3.1.1".into(),
            )),
        },
    }
}

/// A topic name's own rules (3.1.1 §4.7, 5.0 §4.7): no wildcards, not empty
/// unless `may_be_empty` (a 5.0 PUBLISH that carries a topic alias).
pub(crate) fn topic_name_error(topic: &str, may_be_empty: bool) -> Option<String> {
    if topic.contains(['+', '#']) {
        Some(format!("{topic:?} contains a wildcard"))
    } else if topic.is_empty() && !may_be_empty {
        Some("empty topic name".into())
    } else {
        None
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
