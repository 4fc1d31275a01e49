//! CONNACK: the server's answer to CONNECT (3.1.1 §3.2, 5.0 §3.2).
//!
//! # Format
//!
//! ```text
//!  fixed header      0x20, remaining length (2 in 3.1.1)
//!  acknowledge flags bit 0 session present, bits 7-1 reserved (0)
//!  reason code       3.1.1: return code 0..=5; 5.0: a CONNACK reason code
//!  properties        5.0 only
//! ```
//!
//! # Invariants
//!
//! - Session present is 0 whenever the code is not success (3.1.1 §3.2.2.2,
//!   5.0 §3.2.2.1.1): a protocol error otherwise.
//! - A code outside the version's list (3.1.1: 0..=5; 5.0: Table 2-6) is
//!   malformed; the encoder refuses it too (the caller passes 3.1.1 codes
//!   from [`super::reason`]'s `V3_*` for a 3.1.1 client).

use bytes::{BufMut, BytesMut};

use super::properties::Context;
use super::reason::{ReasonPacket, valid_for};
use super::{DecodeError, EncodeError, Properties, Protocol, Reader};

/// The server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// The server resumed a stored session.
    pub session_present: bool,
    /// 5.0 reason code, or for 3.1.1 the return code (0..=5).
    pub reason_code: u8,
    /// CONNACK properties (5.0 §3.2.2.3); empty for 3.1.1.
    pub properties: Properties,
}

fn code_valid(protocol: Protocol, code: u8) -> bool {
    match protocol {
        Protocol::V311 => code <= 5,
        Protocol::V5 => valid_for(ReasonPacket::ConnAck, code),
    }
}

impl ConnAck {
    pub(crate) fn read(mut r: Reader, protocol: Protocol) -> Result<Self, DecodeError> {
        let flags = r.u8("CONNACK flags")?;
        let reason_code = r.u8("CONNACK reason code")?;
        if flags & 0xfe != 0 {
            return Err(DecodeError::Malformed(format!(
                "CONNACK reserved flags {flags:#04x}"
            )));
        }
        if !code_valid(protocol, reason_code) {
            return Err(DecodeError::Malformed(format!(
                "CONNACK code {reason_code:#04x}"
            )));
        }
        let session_present = flags & 0x01 != 0;
        if session_present && reason_code != 0 {
            return Err(DecodeError::Protocol(
                "CONNACK session present with an error".into(),
            ));
        }
        let properties = Properties::read_in(&mut r, protocol, Context::ConnAck)?;
        r.finish("CONNACK")?;
        Ok(Self {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V311 => 2,
            Protocol::V5 => 2 + self.properties.encoded_len(),
        }
    }

    pub(crate) fn write_body(
        &self,
        protocol: Protocol,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if !code_valid(protocol, self.reason_code) {
            let code = self.reason_code;
            return Err(EncodeError::Invalid(format!(
                "CONNACK code {code:#04x} in {protocol:?}"
            )));
        }
        if self.session_present && self.reason_code != 0 {
            return Err(EncodeError::Invalid(
                "CONNACK session present with an error".into(),
            ));
        }
        out.put_u8(u8::from(self.session_present));
        out.put_u8(self.reason_code);
        self.properties.write_in(protocol, Context::ConnAck, out)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Refused::{Malformed, ProtocolError};
    use super::super::tests::{V3, V5, decode_all, encode_all, encode_err, refused, round_trips};
    use super::super::{Packet, reason};
    use super::*;

    #[test]
    fn v3_connack_round_trips() {
        let bytes = [0x20, 0x02, 0x01, 0x00];
        let packet = Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: reason::V3_ACCEPTED,
            properties: Properties::default(),
        });
        round_trips(&packet, &bytes, Protocol::V311);
        let refused = [0x20, 0x02, 0x00, 0x05];
        let packet = decode_all(&refused, Some(Protocol::V311));
        assert_eq!(encode_all(&packet, Protocol::V311), refused);
    }

    #[test]
    fn v5_connack_round_trips() {
        let bytes = [
            0x20, 0x0d, 0x00, 0x00, // no session, success
            0x0a, // properties
            0x21, 0x00, 0x0a, // receive maximum 10
            0x24, 0x01, // maximum QoS 1
            0x13, 0x00, 0x1e, // server keep alive 30
            0x2a, 0x00, // shared subscriptions unavailable
        ];
        let packet = Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: reason::SUCCESS,
            properties: Properties {
                receive_maximum: Some(10),
                maximum_qos: Some(1),
                server_keep_alive: Some(30),
                shared_subscription_available: Some(0),
                ..Properties::default()
            },
        });
        assert_eq!(decode_all(&bytes, Some(Protocol::V5)), packet);
        // The encoder writes properties in identifier order.
        let encoded = [
            0x20, 0x0d, 0x00, 0x00, 0x0a, 0x13, 0x00, 0x1e, 0x21, 0x00, 0x0a, 0x24, 0x01, 0x2a,
            0x00,
        ];
        assert_eq!(encode_all(&packet, Protocol::V5), encoded);
    }

    #[test]
    fn bad_connacks() {
        assert_eq!(refused(&[0x20, 0x02, 0x02, 0x00], V3), Malformed); // reserved flag
        assert_eq!(refused(&[0x20, 0x02, 0x00, 0x06], V3), Malformed); // return code 6
        assert_eq!(refused(&[0x20, 0x03, 0x00, 0x00, 0x00], V3), Malformed); // trailing
        assert_eq!(refused(&[0x20, 0x03, 0x00, 0x8b, 0x00], V5), Malformed); // not a CONNACK code
        assert_eq!(refused(&[0x20, 0x02, 0x00, 0x00], V5), Malformed); // no property length
        assert_eq!(
            refused(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x23, 0x01], V5),
            Malformed
        ); // topic alias
        assert_eq!(refused(&[0x20, 0x02, 0x01, 0x04], V3), ProtocolError);
        let max_qos_2 = [0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02];
        assert_eq!(refused(&max_qos_2, V5), ProtocolError);
        let v5_code = ConnAck {
            session_present: false,
            reason_code: 0x87,
            properties: Properties::default(),
        };
        assert!(matches!(
            encode_err(&Packet::ConnAck(v5_code), Protocol::V311),
            EncodeError::Invalid(_)
        ));
    }
}
