//! PUBACK, PUBREC, PUBREL and PUBCOMP: the QoS 1 and QoS 2 handshakes
//! (3.1.1 §3.4-3.7, 5.0 §3.4-3.7). One layout, four packet types.
//!
//! # Format
//!
//! ```text
//!  fixed header   0x40 PUBACK | 0x50 PUBREC | 0x62 PUBREL | 0x70 PUBCOMP
//!                 remaining length: 2 in 3.1.1; 2, 3 or more in 5.0
//!  packet id      two-byte integer, never 0
//!  reason code    5.0 only; absent (remaining length 2) means 0x00 Success
//!  properties     5.0 only; absent (remaining length < 4) means none
//! ```
//!
//! # Invariants
//!
//! - The reason code is one 5.0 allows for that packet type (Table 2-6),
//!   else malformed.
//! - The encoder writes the shortest form: 2 bytes for success without
//!   properties, 3 for another code without properties. 3.1.1 drops both.

use bytes::{BufMut, BytesMut};

use super::properties::Context;
use super::reason::{ReasonPacket, valid_for};
use super::{DecodeError, EncodeError, Properties, Protocol, Reader, put_packet_id};

/// A PUBACK, PUBREC, PUBREL or PUBCOMP (the [`super::Packet`] variant says
/// which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The exchange this acknowledges.
    pub packet_id: u16,
    /// 5.0 outcome (0x00 success); ignored for 3.1.1.
    pub reason_code: u8,
    /// Reason String and User Properties (5.0 §3.4.2.2); empty for 3.1.1.
    pub properties: Properties,
}

/// Which of the four acknowledgements.
#[allow(clippy::enum_variant_names)] // named after the packets
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

impl AckKind {
    fn name(self) -> &'static str {
        match self {
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
        }
    }

    fn reason_packet(self) -> ReasonPacket {
        match self {
            Self::PubAck => ReasonPacket::PubAck,
            Self::PubRec => ReasonPacket::PubRec,
            Self::PubRel => ReasonPacket::PubRel,
            Self::PubComp => ReasonPacket::PubComp,
        }
    }
}

impl Ack {
    pub(crate) fn read(
        kind: AckKind,
        mut r: Reader,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id(kind.name())?;
        let mut ack = Self {
            packet_id,
            reason_code: 0,
            properties: Properties::default(),
        };
        if protocol == Protocol::V5 && !r.is_empty() {
            ack.reason_code = r.u8("reason code")?;
            if !valid_for(kind.reason_packet(), ack.reason_code) {
                let code = ack.reason_code;
                return Err(DecodeError::Malformed(format!(
                    "{} reason code {code:#04x}",
                    kind.name()
                )));
            }
            if !r.is_empty() {
                ack.properties = Properties::read(&mut r, Context::Ack)?;
            }
        }
        r.finish(kind.name())?;
        Ok(ack)
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V311 => 2,
            Protocol::V5 if self.properties != Properties::default() => {
                3 + self.properties.encoded_len()
            }
            Protocol::V5 if self.reason_code != 0 => 3,
            Protocol::V5 => 2,
        }
    }

    pub(crate) fn write_body(
        &self,
        kind: AckKind,
        protocol: Protocol,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if protocol == Protocol::V5 && !valid_for(kind.reason_packet(), self.reason_code) {
            let code = self.reason_code;
            return Err(EncodeError::Invalid(format!(
                "{} reason code {code:#04x}",
                kind.name()
            )));
        }
        put_packet_id(out, self.packet_id, kind.name())?;
        match self.body_len(protocol) {
            2 => {}
            3 => out.put_u8(self.reason_code),
            _ => {
                out.put_u8(self.reason_code);
                self.properties.write(Context::Ack, out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Refused::{Malformed, ProtocolError};
    use super::super::tests::{V3, V5, decode_all, encode_all, encode_err, refused, round_trips};
    use super::super::{Packet, reason};
    use super::*;

    fn ack(packet_id: u16, reason_code: u8) -> Ack {
        Ack {
            packet_id,
            reason_code,
            properties: Properties::default(),
        }
    }

    #[test]
    fn v3_acks_round_trip() {
        let cases = [
            ([0x40, 0x02, 0x00, 0x01], Packet::PubAck(ack(1, 0))),
            ([0x50, 0x02, 0x00, 0x02], Packet::PubRec(ack(2, 0))),
            ([0x62, 0x02, 0x00, 0x03], Packet::PubRel(ack(3, 0))),
            ([0x70, 0x02, 0x01, 0x00], Packet::PubComp(ack(256, 0))),
        ];
        for (bytes, packet) in cases {
            round_trips(&packet, &bytes, Protocol::V311);
        }
        // 3.1.1 has no reason code: dropped.
        let failed = Packet::PubAck(ack(1, reason::NOT_AUTHORIZED));
        assert_eq!(
            encode_all(&failed, Protocol::V311),
            [0x40, 0x02, 0x00, 0x01]
        );
    }

    #[test]
    fn v5_short_and_long_forms() {
        let short = [0x40, 0x02, 0x00, 0x01];
        assert_eq!(decode_all(&short, V5), Packet::PubAck(ack(1, 0)));
        assert_eq!(encode_all(&Packet::PubAck(ack(1, 0)), Protocol::V5), short);
        let code_only = [0x50, 0x03, 0x00, 0x01, 0x10];
        let packet = Packet::PubRec(ack(1, reason::NO_MATCHING_SUBSCRIBERS));
        round_trips(&packet, &code_only, Protocol::V5);
        let empty_properties = [0x62, 0x04, 0x00, 0x01, 0x92, 0x00];
        let packet = Packet::PubRel(ack(1, reason::PACKET_IDENTIFIER_NOT_FOUND));
        assert_eq!(decode_all(&empty_properties, V5), packet);
        let with_reason = [0x70, 0x08, 0x00, 0x01, 0x00, 0x04, 0x1f, 0x00, 0x01, b'x'];
        let packet = Packet::PubComp(Ack {
            properties: Properties {
                reason_string: Some("x".into()),
                ..Properties::default()
            },
            ..ack(1, 0)
        });
        round_trips(&packet, &with_reason, Protocol::V5);
    }

    #[test]
    fn bad_acks() {
        assert_eq!(refused(&[0x40, 0x02, 0x00, 0x00], V3), ProtocolError);
        assert_eq!(refused(&[0x40, 0x01, 0x00], V3), Malformed);
        assert_eq!(refused(&[0x40, 0x03, 0x00, 0x01, 0x00], V3), Malformed);
        assert_eq!(refused(&[0x60, 0x02, 0x00, 0x01], V3), Malformed);
        assert_eq!(refused(&[0x42, 0x02, 0x00, 0x01], V3), Malformed);
        assert_eq!(refused(&[0x62, 0x03, 0x00, 0x01, 0x10], V5), Malformed);
        let user_in_ack = [0x40, 0x05, 0x00, 0x01, 0x00, 0x01, 0x11];
        assert_eq!(refused(&user_in_ack, V5), Malformed);
        let trailing = [0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00];
        assert_eq!(refused(&trailing, V5), Malformed);
        let bad_code = Packet::PubComp(ack(1, reason::NOT_AUTHORIZED));
        assert!(matches!(
            encode_err(&bad_code, Protocol::V5),
            EncodeError::Invalid(_)
        ));
        assert!(matches!(
            encode_err(&Packet::PubAck(ack(0, 0)), Protocol::V5),
            EncodeError::Invalid(_)
        ));
    }
}
