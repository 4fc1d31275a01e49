//! SUBACK: the server's answer to SUBSCRIBE, one code per filter
//! (3.1.1 §3.9, 5.0 §3.9).
//!
//! # Format
//!
//! ```text
//!  fixed header   0x90, remaining length
//!  packet id      two-byte integer, the SUBSCRIBE's, never 0
//!  properties     5.0 only: Reason String, User Property
//!  payload        one reason code per filter, in the SUBSCRIBE's order
//!                 3.1.1: 0x00 | 0x01 | 0x02 granted QoS, 0x80 failure
//! ```
//!
//! # Invariants
//!
//! - At least one code (a SUBSCRIBE has at least one filter): protocol error
//!   otherwise. A code outside the version's list: malformed.
//! - Encoding for 3.1.1 turns every 5.0 failure code (0x80 and above) into
//!   0x80, so the server can work in 5.0 codes throughout.

use bytes::{BufMut, BytesMut};

use super::properties::Context;
use super::reason::{ReasonPacket, valid_for};
use super::{DecodeError, EncodeError, Properties, Protocol, Reader, put_packet_id};

/// The outcome of each filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE's packet id.
    pub packet_id: u16,
    /// Granted QoS (0..=2) or a failure, one per filter.
    pub reason_codes: Vec<u8>,
    /// SUBACK properties (5.0 §3.9.2.1); empty for 3.1.1.
    pub properties: Properties,
}

fn code_valid(protocol: Protocol, code: u8) -> bool {
    match protocol {
        Protocol::V311 => matches!(code, 0x00..=0x02 | 0x80),
        Protocol::V5 => valid_for(ReasonPacket::SubAck, code),
    }
}

impl SubAck {
    pub(crate) fn read(mut r: Reader, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id("SUBACK")?;
        let properties = Properties::read_in(&mut r, protocol, Context::SubAck)?;
        let reason_codes = r.rest().to_vec();
        if reason_codes.is_empty() {
            return Err(DecodeError::Protocol("SUBACK without reason codes".into()));
        }
        if let Some(code) = reason_codes.iter().find(|&&c| !code_valid(protocol, c)) {
            return Err(DecodeError::Malformed(format!(
                "SUBACK reason code {code:#04x}"
            )));
        }
        Ok(Self {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> usize {
        let properties = self.properties.len_in(protocol);
        2 + properties + self.reason_codes.len()
    }

    pub(crate) fn write_body(
        &self,
        protocol: Protocol,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if self.reason_codes.is_empty() {
            return Err(EncodeError::Invalid("SUBACK without reason codes".into()));
        }
        let wire = |code: u8| match protocol {
            Protocol::V311 if code >= 0x80 => 0x80,
            _ => code,
        };
        if let Some(code) = self
            .reason_codes
            .iter()
            .find(|&&c| !code_valid(protocol, wire(c)))
        {
            return Err(EncodeError::Invalid(format!(
                "SUBACK reason code {code:#04x}"
            )));
        }
        put_packet_id(out, self.packet_id, "SUBACK")?;
        self.properties.write_in(protocol, Context::SubAck, out)?;
        for &code in &self.reason_codes {
            out.put_u8(wire(code));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Refused::{Malformed, ProtocolError};
    use super::super::tests::{V3, V5, encode_all, encode_err, refused, round_trips};
    use super::super::{Packet, reason};
    use super::*;

    fn suback(reason_codes: Vec<u8>) -> SubAck {
        SubAck {
            packet_id: 10,
            reason_codes,
            properties: Properties::default(),
        }
    }

    #[test]
    fn v3_suback_round_trips() {
        let bytes = [0x90, 0x06, 0x00, 0x0a, 0x00, 0x01, 0x02, 0x80];
        let packet = Packet::SubAck(suback(vec![0, 1, 2, 0x80]));
        round_trips(&packet, &bytes, Protocol::V311);
        let v5_codes = Packet::SubAck(suback(vec![reason::NOT_AUTHORIZED, 1]));
        assert_eq!(
            encode_all(&v5_codes, Protocol::V311),
            [0x90, 0x04, 0x00, 0x0a, 0x80, 0x01]
        );
    }

    #[test]
    fn v5_suback_round_trips() {
        let bytes = [
            0x90, 0x09, 0x00, 0x0a, 0x04, 0x1f, 0x00, 0x01, b'!', 0x01, 0xa2,
        ];
        let packet = Packet::SubAck(SubAck {
            properties: Properties {
                reason_string: Some("!".into()),
                ..Properties::default()
            },
            ..suback(vec![
                reason::GRANTED_QOS_1,
                reason::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            ])
        });
        round_trips(&packet, &bytes, Protocol::V5);
    }

    #[test]
    fn bad_subacks() {
        assert_eq!(refused(&[0x90, 0x02, 0x00, 0x0a], V3), ProtocolError);
        assert_eq!(refused(&[0x90, 0x03, 0x00, 0x0a, 0x87], V3), Malformed);
        assert_eq!(
            refused(&[0x90, 0x04, 0x00, 0x0a, 0x00, 0x03], V5),
            Malformed
        );
        assert_eq!(refused(&[0x90, 0x03, 0x00, 0x00, 0x00], V3), ProtocolError);
        assert!(matches!(
            encode_err(&Packet::SubAck(suback(vec![])), Protocol::V5),
            EncodeError::Invalid(_)
        ));
        assert!(matches!(
            encode_err(&Packet::SubAck(suback(vec![3])), Protocol::V311),
            EncodeError::Invalid(_)
        ));
    }
}
