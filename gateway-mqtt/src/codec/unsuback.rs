//! UNSUBACK: the server's answer to UNSUBSCRIBE (3.1.1 §3.11, 5.0 §3.11).
//!
//! # Format
//!
//! ```text
//!  fixed header   0xb0, remaining length (2 in 3.1.1)
//!  packet id      two-byte integer, the UNSUBSCRIBE's, never 0
//!  properties     5.0 only: Reason String, User Property
//!  payload        5.0 only: one reason code per filter
//! ```
//!
//! # Invariants
//!
//! - 3.1.1 has no reason codes: decoded empty, dropped on encoding.
//! - 5.0 needs at least one code (protocol error otherwise), each one an
//!   UNSUBACK code (malformed otherwise).

use bytes::{BufMut, BytesMut};

use super::properties::Context;
use super::reason::{ReasonPacket, valid_for};
use super::{DecodeError, EncodeError, Properties, Protocol, Reader, put_packet_id};

/// The outcome of an UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The UNSUBSCRIBE's packet id.
    pub packet_id: u16,
    /// 5.0: one per filter; empty for 3.1.1.
    pub reason_codes: Vec<u8>,
    /// UNSUBACK properties (5.0 §3.11.2.1); empty for 3.1.1.
    pub properties: Properties,
}

impl UnsubAck {
    pub(crate) fn read(mut r: Reader, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id("UNSUBACK")?;
        let mut ack = Self {
            packet_id,
            reason_codes: Vec::new(),
            properties: Properties::default(),
        };
        if protocol == Protocol::V5 {
            ack.properties = Properties::read(&mut r, Context::UnsubAck)?;
            ack.reason_codes = r.rest().to_vec();
            if ack.reason_codes.is_empty() {
                return Err(DecodeError::Protocol(
                    "UNSUBACK without reason codes".into(),
                ));
            }
            let invalid = ack
                .reason_codes
                .iter()
                .find(|&&c| !valid_for(ReasonPacket::UnsubAck, c));
            if let Some(code) = invalid {
                return Err(DecodeError::Malformed(format!(
                    "UNSUBACK reason code {code:#04x}"
                )));
            }
        }
        r.finish("UNSUBACK")?;
        Ok(ack)
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V311 => 2,
            Protocol::V5 => 2 + self.properties.encoded_len() + self.reason_codes.len(),
        }
    }

    pub(crate) fn write_body(
        &self,
        protocol: Protocol,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        put_packet_id(out, self.packet_id, "UNSUBACK")?;
        if protocol == Protocol::V311 {
            return Ok(());
        }
        if self.reason_codes.is_empty() {
            return Err(EncodeError::Invalid("UNSUBACK without reason codes".into()));
        }
        let invalid = self
            .reason_codes
            .iter()
            .find(|&&c| !valid_for(ReasonPacket::UnsubAck, c));
        if let Some(code) = invalid {
            return Err(EncodeError::Invalid(format!(
                "UNSUBACK reason code {code:#04x}"
            )));
        }
        self.properties.write(Context::UnsubAck, out)?;
        out.put_slice(&self.reason_codes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Refused::{Malformed, ProtocolError};
    use super::super::tests::{V3, V5, encode_all, encode_err, refused, round_trips};
    use super::super::{Packet, reason};
    use super::*;

    #[test]
    fn v3_unsuback_round_trips() {
        let bytes = [0xb0, 0x02, 0x00, 0x05];
        let packet = Packet::UnsubAck(UnsubAck {
            packet_id: 5,
            reason_codes: vec![],
            properties: Properties::default(),
        });
        round_trips(&packet, &bytes, Protocol::V311);
    }

    #[test]
    fn v5_unsuback_round_trips() {
        let bytes = [0xb0, 0x05, 0x00, 0x05, 0x00, 0x00, 0x11];
        let packet = Packet::UnsubAck(UnsubAck {
            packet_id: 5,
            reason_codes: vec![reason::SUCCESS, reason::NO_SUBSCRIPTION_EXISTED],
            properties: Properties::default(),
        });
        round_trips(&packet, &bytes, Protocol::V5);
        // 3.1.1 drops the codes.
        assert_eq!(
            encode_all(&packet, Protocol::V311),
            [0xb0, 0x02, 0x00, 0x05]
        );
    }

    #[test]
    fn bad_unsubacks() {
        assert_eq!(refused(&[0xb0, 0x03, 0x00, 0x05, 0x00], V3), Malformed);
        assert_eq!(refused(&[0xb0, 0x03, 0x00, 0x05, 0x00], V5), ProtocolError);
        assert_eq!(
            refused(&[0xb0, 0x04, 0x00, 0x05, 0x00, 0x01], V5),
            Malformed
        );
        assert_eq!(refused(&[0xb0, 0x02, 0x00, 0x00], V3), ProtocolError);
        let empty = UnsubAck {
            packet_id: 5,
            reason_codes: vec![],
            properties: Properties::default(),
        };
        assert!(matches!(
            encode_err(&Packet::UnsubAck(empty), Protocol::V5),
            EncodeError::Invalid(_)
        ));
    }
}
