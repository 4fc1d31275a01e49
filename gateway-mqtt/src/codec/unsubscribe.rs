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
use super::subscribe::{read_filter, read_filters};
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
        let properties = Properties::read_in(&mut r, protocol, Context::Unsubscribe)?;
        let filters = read_filters(&mut r, "UNSUBSCRIBE", |r| read_filter(r, "UNSUBSCRIBE"))?;
        Ok(Self {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> usize {
        let properties = self.properties.len_in(protocol);
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
        self.properties
            .write_in(protocol, Context::Unsubscribe, out)?;
        for filter in &self.filters {
            put_string(out, filter, "UNSUBSCRIBE topic filter")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Packet;
    use super::super::tests::Refused::{Malformed, ProtocolError};
    use super::super::tests::{V3, V5, refused, round_trips};
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
        round_trips(&packet, &bytes, Protocol::V311);
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
        round_trips(&packet, &bytes, Protocol::V5);
    }

    #[test]
    fn bad_unsubscribes() {
        assert_eq!(refused(&[0xa2, 0x02, 0x00, 0x05], V3), ProtocolError);
        assert_eq!(refused(&[0xa2, 0x03, 0x00, 0x05, 0x00], V5), ProtocolError);
        let empty = [0xa2, 0x04, 0x00, 0x05, 0x00, 0x00];
        assert_eq!(refused(&empty, V3), Malformed);
        let flags = [0xa0, 0x05, 0x00, 0x05, 0x00, 0x01, b'a'];
        assert_eq!(refused(&flags, V3), Malformed);
        let truncated = [0xa2, 0x05, 0x00, 0x05, 0x00, 0x02, b'a'];
        assert_eq!(refused(&truncated, V3), Malformed);
        let sub_id = [0xa2, 0x08, 0x00, 0x05, 0x02, 0x0b, 0x01, 0x00, 0x01, b'a'];
        assert_eq!(refused(&sub_id, V5), Malformed);
    }
}
