//! UNSUBSCRIBE: a client drops topic filters (3.1.1 §3.10, 5.0 §3.10).
//!
//! # Format
//!
//! ```text
//!  fixed header   0xa2, remaining length
//!  packet id      two-byte integer, never 0
//!  properties     5.0 only: User Property
//!  payload        one or more topic filters (strings, not empty)
//! ```
//!
//! # Invariants
//!
//! - No filter at all: protocol error (3.1.1 §3.10.3, 5.0 §3.10.3). An empty
//!   filter is malformed, as in SUBSCRIBE.

use bytes::BytesMut;

use super::properties::Context;
use super::{DecodeError, EncodeError, Properties, Protocol, Reader, put_packet_id, put_string};

/// A request to drop subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Echoed in the UNSUBACK.
    pub packet_id: u16,
    /// The filters, exactly as subscribed; at least one.
    pub filters: Vec<String>,
    /// UNSUBSCRIBE properties (5.0 §3.10.2.1); empty for 3.1.1.
    pub properties: Properties,
}

impl Unsubscribe {
    pub(crate) fn read(mut r: Reader, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id("UNSUBSCRIBE")?;
        let properties = match protocol {
            Protocol::V5 => Properties::read(&mut r, Context::Unsubscribe)?,
            Protocol::V311 => Properties::default(),
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string("UNSUBSCRIBE topic filter")?;
            if filter.is_empty() {
                return Err(DecodeError::Malformed(
                    "UNSUBSCRIBE: empty topic filter".into(),
                ));
            }
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol(
                "UNSUBSCRIBE without topic filters".into(),
            ));
        }
        Ok(Self {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> usize {
        let properties = match protocol {
            Protocol::V5 => self.properties.encoded_len(),
            Protocol::V311 => 0,
        };
        2 + properties + self.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
    }

    pub(crate) fn write_body(
        &self,
        protocol: Protocol,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if self.filters.is_empty() || self.filters.iter().any(String::is_empty) {
            return Err(EncodeError::Invalid(
                "UNSUBSCRIBE needs non-empty filters".into(),
            ));
        }
        put_packet_id(out, self.packet_id, "UNSUBSCRIBE")?;
        if protocol == Protocol::V5 {
            self.properties.write(Context::Unsubscribe, out)?;
        }
        for filter in &self.filters {
            put_string(out, filter, "UNSUBSCRIBE topic filter")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Packet;
    use super::super::tests::{decode_all, decode_err, encode_all};
    use super::*;

    #[test]
    fn v3_unsubscribe_round_trips() {
        let bytes = [
            0xa2, 0x09, 0x00, 0x05, 0x00, 0x01, b'a', 0x00, 0x02, b'b', b'/',
        ];
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id: 5,
            filters: vec!["a".into(), "b/".into()],
            properties: Properties::default(),
        });
        assert_eq!(decode_all(&bytes, Some(Protocol::V311)), packet);
        assert_eq!(encode_all(&packet, Protocol::V311), bytes);
    }

    #[test]
    fn v5_unsubscribe_round_trips() {
        let bytes = [
            0xa2, 0x0d, 0x00, 0x05, // packet id 5
            0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
            0x00, 0x01, b'#',
        ];
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id: 5,
            filters: vec!["#".into()],
            properties: Properties {
                user_properties: vec![("k".into(), "v".into())],
                ..Properties::default()
            },
        });
        assert_eq!(decode_all(&bytes, Some(Protocol::V5)), packet);
        assert_eq!(encode_all(&packet, Protocol::V5), bytes);
    }

    #[test]
    fn bad_unsubscribes() {
        let v3 = Some(Protocol::V311);
        let v5 = Some(Protocol::V5);
        assert!(matches!(
            decode_err(&[0xa2, 0x02, 0x00, 0x05], v3),
            DecodeError::Protocol(_)
        ));
        assert!(matches!(
            decode_err(&[0xa2, 0x03, 0x00, 0x05, 0x00], v5),
            DecodeError::Protocol(_)
        ));
        let empty = [0xa2, 0x04, 0x00, 0x05, 0x00, 0x00];
        assert!(matches!(decode_err(&empty, v3), DecodeError::Malformed(_)));
        let flags = [0xa0, 0x05, 0x00, 0x05, 0x00, 0x01, b'a'];
        assert!(matches!(decode_err(&flags, v3), DecodeError::Malformed(_)));
        let truncated = [0xa2, 0x05, 0x00, 0x05, 0x00, 0x02, b'a'];
        assert!(matches!(
            decode_err(&truncated, v3),
            DecodeError::Malformed(_)
        ));
        let sub_id = [0xa2, 0x08, 0x00, 0x05, 0x02, 0x0b, 0x01, 0x00, 0x01, b'a'];
        assert!(matches!(decode_err(&sub_id, v5), DecodeError::Malformed(_)));
    }
}
