//! DISCONNECT: the end of a connection, either way in 5.0, client to server
//! in 3.1.1 (3.1.1 §3.14, 5.0 §3.14).
//!
//! # Format
//!
//! ```text
//!  fixed header   0xe0, remaining length (0 in 3.1.1)
//!  reason code    5.0 only; absent (remaining length 0) means 0x00
//!  properties     5.0 only; absent (remaining length < 2) means none
//! ```
//!
//! # Invariants
//!
//! - The reason code is a DISCONNECT code (Table 2-6), else malformed.
//! - The encoder writes the shortest form; 3.1.1 drops reason and properties.

use bytes::{BufMut, BytesMut};

use super::properties::Context;
use super::reason::{ReasonPacket, valid_for};
use super::{DecodeError, EncodeError, Properties, Protocol, Reader};

/// The end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// 5.0: why (0x00 normal, 0x04 publish the will, errors); ignored in 3.1.1.
    pub reason_code: u8,
    /// DISCONNECT properties (5.0 §3.14.2.2); empty for 3.1.1.
    pub properties: Properties,
}

impl Disconnect {
    pub(crate) fn read(mut r: Reader, protocol: Protocol) -> Result<Self, DecodeError> {
        let mut packet = Self {
            reason_code: 0,
            properties: Properties::default(),
        };
        if protocol == Protocol::V5 && !r.is_empty() {
            packet.reason_code = r.u8("DISCONNECT reason code")?;
            if !valid_for(ReasonPacket::Disconnect, packet.reason_code) {
                let code = packet.reason_code;
                return Err(DecodeError::Malformed(format!(
                    "DISCONNECT reason code {code:#04x}"
                )));
            }
            if !r.is_empty() {
                packet.properties = Properties::read(&mut r, Context::Disconnect)?;
            }
        }
        r.finish("DISCONNECT")?;
        Ok(packet)
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V311 => 0,
            Protocol::V5 if self.properties != Properties::default() => {
                1 + self.properties.encoded_len()
            }
            Protocol::V5 if self.reason_code != 0 => 1,
            Protocol::V5 => 0,
        }
    }

    pub(crate) fn write_body(
        &self,
        protocol: Protocol,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if protocol == Protocol::V5 && !valid_for(ReasonPacket::Disconnect, self.reason_code) {
            let code = self.reason_code;
            return Err(EncodeError::Invalid(format!(
                "DISCONNECT reason code {code:#04x}"
            )));
        }
        match self.body_len(protocol) {
            0 => {}
            1 => out.put_u8(self.reason_code),
            _ => {
                out.put_u8(self.reason_code);
                self.properties.write(Context::Disconnect, out)?;
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

    fn disconnect(reason_code: u8) -> Disconnect {
        Disconnect {
            reason_code,
            properties: Properties::default(),
        }
    }

    #[test]
    fn v3_disconnect_round_trips() {
        let packet = Packet::Disconnect(disconnect(0));
        assert_eq!(decode_all(&[0xe0, 0x00], None), packet);
        assert_eq!(encode_all(&packet, Protocol::V311), [0xe0, 0x00]);
        let with_will = Packet::Disconnect(disconnect(reason::DISCONNECT_WITH_WILL));
        assert_eq!(encode_all(&with_will, Protocol::V311), [0xe0, 0x00]);
    }

    #[test]
    fn v5_disconnect_forms() {
        assert_eq!(
            decode_all(&[0xe0, 0x00], V5),
            Packet::Disconnect(disconnect(0))
        );
        assert_eq!(
            encode_all(&Packet::Disconnect(disconnect(0)), Protocol::V5),
            [0xe0, 0x00]
        );
        let shutting_down = Packet::Disconnect(disconnect(reason::SERVER_SHUTTING_DOWN));
        assert_eq!(decode_all(&[0xe0, 0x01, 0x8b], V5), shutting_down);
        assert_eq!(encode_all(&shutting_down, Protocol::V5), [0xe0, 0x01, 0x8b]);
        assert_eq!(decode_all(&[0xe0, 0x02, 0x8b, 0x00], V5), shutting_down);
        let moved = [0xe0, 0x07, 0x9d, 0x05, 0x1c, 0x00, 0x02, b'h', b'2'];
        let packet = Packet::Disconnect(Disconnect {
            reason_code: reason::SERVER_MOVED,
            properties: Properties {
                server_reference: Some("h2".into()),
                ..Properties::default()
            },
        });
        round_trips(&packet, &moved, Protocol::V5);
    }

    #[test]
    fn bad_disconnects() {
        assert_eq!(refused(&[0xe0, 0x01, 0x00], V3), Malformed);
        assert_eq!(refused(&[0xe1, 0x00], V3), Malformed);
        assert_eq!(refused(&[0xe0, 0x01, 0x01], V5), Malformed);
        assert_eq!(refused(&[0xe0, 0x03, 0x00, 0x00, 0x00], V5), Malformed);
        // Session expiry twice.
        let twice = [0xe0, 0x0c, 0x00, 0x0a, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2];
        assert_eq!(refused(&twice, V5), ProtocolError);
        let bad = Packet::Disconnect(disconnect(reason::GRANTED_QOS_1));
        assert!(matches!(
            encode_err(&bad, Protocol::V5),
            EncodeError::Invalid(_)
        ));
    }
}
