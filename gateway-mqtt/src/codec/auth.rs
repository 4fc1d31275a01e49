//! AUTH: extended authentication exchanges, 5.0 only (5.0 §3.15).
//!
//! # Format
//!
//! ```text
//!  fixed header   0xf0, remaining length
//!  reason code    0x00 success | 0x18 continue | 0x19 re-authenticate;
//!                 absent (remaining length 0) means 0x00
//!  properties     Authentication Method, Authentication Data, Reason String,
//!                 User Property; absent (remaining length < 2) means none
//! ```
//!
//! # Invariants
//!
//! - Packet type 15 is reserved in 3.1.1: decoding it there is a protocol
//!   error, encoding it for 3.1.1 is refused.
//! - The encoder writes remaining length 0 for success without properties,
//!   otherwise the reason code and a property list (possibly empty).

use bytes::{BufMut, BytesMut};

use super::properties::Context;
use super::reason::{ReasonPacket, valid_for};
use super::{DecodeError, EncodeError, Properties, Reader};

/// One step of an extended authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason_code: u8,
    /// The method and its data, among others (5.0 §3.15.2.2).
    pub properties: Properties,
}

impl Auth {
    pub(crate) fn read(mut r: Reader) -> Result<Self, DecodeError> {
        let mut packet = Self {
            reason_code: 0,
            properties: Properties::default(),
        };
        if !r.is_empty() {
            packet.reason_code = r.u8("AUTH reason code")?;
            if !valid_for(ReasonPacket::Auth, packet.reason_code) {
                let code = packet.reason_code;
                return Err(DecodeError::Malformed(format!(
                    "AUTH reason code {code:#04x}"
                )));
            }
            if !r.is_empty() {
                packet.properties = Properties::read(&mut r, Context::Auth)?;
            }
        }
        r.finish("AUTH")?;
        Ok(packet)
    }

    pub(crate) fn body_len(&self) -> usize {
        if self.reason_code == 0 && self.properties == Properties::default() {
            0
        } else {
            1 + self.properties.encoded_len()
        }
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        if !valid_for(ReasonPacket::Auth, self.reason_code) {
            let code = self.reason_code;
            return Err(EncodeError::Invalid(format!(
                "AUTH reason code {code:#04x}"
            )));
        }
        if self.body_len() > 0 {
            out.put_u8(self.reason_code);
            self.properties.write(Context::Auth, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Refused::{Malformed, ProtocolError};
    use super::super::tests::{V5, decode_all, encode_all, encode_err, refused, round_trips};
    use super::super::{Packet, Protocol, reason};
    use super::*;
    use bytes::Bytes;

    #[test]
    fn v5_auth_round_trips() {
        let success = Packet::Auth(Auth {
            reason_code: 0,
            properties: Properties::default(),
        });
        assert_eq!(decode_all(&[0xf0, 0x00], V5), success);
        assert_eq!(encode_all(&success, Protocol::V5), [0xf0, 0x00]);
        let bytes = [
            0xf0, 0x0c, 0x18, // continue authentication
            0x0a, 0x15, 0x00, 0x03, b'S', b'C', b'R', // method "SCR"
            0x16, 0x00, 0x01, 0x2a, // data 0x2a
        ];
        let packet = Packet::Auth(Auth {
            reason_code: reason::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some("SCR".into()),
                authentication_data: Some(Bytes::from_static(&[0x2a])),
                ..Properties::default()
            },
        });
        round_trips(&packet, &bytes, Protocol::V5);
        let reauth = Packet::Auth(Auth {
            reason_code: reason::REAUTHENTICATE,
            properties: Properties::default(),
        });
        assert_eq!(encode_all(&reauth, Protocol::V5), [0xf0, 0x02, 0x19, 0x00]);
        assert_eq!(decode_all(&[0xf0, 0x01, 0x19], V5), reauth);
    }

    #[test]
    fn auth_is_not_3_1_1() {
        for protocol in [None, Some(Protocol::V311)] {
            assert_eq!(refused(&[0xf0, 0x00], protocol), ProtocolError);
        }
        let success = Packet::Auth(Auth {
            reason_code: 0,
            properties: Properties::default(),
        });
        assert!(matches!(
            encode_err(&success, Protocol::V311),
            EncodeError::Invalid(_)
        ));
    }

    #[test]
    fn bad_auths() {
        assert_eq!(refused(&[0xf0, 0x01, 0x87], V5), Malformed);
        assert_eq!(refused(&[0xf1, 0x00], V5), Malformed);
        let data_without_method = [0xf0, 0x06, 0x18, 0x04, 0x16, 0x00, 0x01, 0x2a];
        assert_eq!(refused(&data_without_method, V5), ProtocolError);
        let session_expiry = [0xf0, 0x07, 0x18, 0x05, 0x11, 0, 0, 0, 1];
        assert_eq!(refused(&session_expiry, V5), Malformed);
    }
}
