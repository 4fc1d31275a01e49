//! SUBSCRIBE: a client asks for messages on topic filters (3.1.1 §3.8,
//! 5.0 §3.8).
//!
//! # Format
//!
//! ```text
//!  fixed header   0x82, remaining length
//!  packet id      two-byte integer, never 0
//!  properties     5.0 only: Subscription Identifier (once), User Property
//!  payload        one or more of:
//!    topic filter   string, not empty
//!    options        3.1.1: bits 7-2 reserved (0) | 1-0 QoS
//!                   5.0:   bits 7-6 reserved (0) | 5-4 retain handling
//!                          | 3 retain as published | 2 no local | 1-0 QoS
//! ```
//!
//! # Invariants
//!
//! - No filter at all: protocol error (3.1.1 §3.8.3, 5.0 §3.8.3).
//! - Reserved option bits, QoS 3, retain handling 3, an empty filter:
//!   malformed.
//! - Wildcard placement in a filter is not checked here: the server answers
//!   a bad filter with its own reason code in the SUBACK.

use bytes::{BufMut, BytesMut};

use super::properties::Context;
use super::{DecodeError, EncodeError, Properties, Protocol, Reader, put_packet_id, put_string};

/// One topic filter with its subscription options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    /// The topic filter, wildcards allowed (checked by the server).
    pub filter: String,
    /// Maximum QoS the client wants, 0..=2.
    pub qos: u8,
    /// 5.0: do not send the client its own messages; false for 3.1.1.
    pub no_local: bool,
    /// 5.0: keep the RETAIN flag as published; false for 3.1.1.
    pub retain_as_published: bool,
    /// 5.0: 0 send retained on subscribe, 1 only if new, 2 never; 0 for 3.1.1.
    pub retain_handling: u8,
}

/// A request for subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Echoed in the SUBACK.
    pub packet_id: u16,
    /// At least one.
    pub filters: Vec<SubscribeFilter>,
    /// SUBSCRIBE properties (5.0 §3.8.2.1); empty for 3.1.1.
    pub properties: Properties,
}

fn malformed(what: String) -> DecodeError {
    DecodeError::Malformed(format!("SUBSCRIBE: {what}"))
}

/// A topic filter of `packet` (SUBSCRIBE or UNSUBSCRIBE): a string, not
/// empty.
pub(super) fn read_filter(r: &mut Reader, packet: &str) -> Result<String, DecodeError> {
    let filter = r.string(&format!("{packet} topic filter"))?;
    if filter.is_empty() {
        return Err(DecodeError::Malformed(format!(
            "{packet}: empty topic filter"
        )));
    }
    Ok(filter)
}

/// The payload of `packet` (SUBSCRIBE or UNSUBSCRIBE): `item`s to its end,
/// at least one (none is a protocol error).
pub(super) fn read_filters<T>(
    r: &mut Reader,
    packet: &str,
    mut item: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(item(r)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol(format!(
            "{packet} without topic filters"
        )));
    }
    Ok(filters)
}

impl SubscribeFilter {
    fn read(r: &mut Reader, protocol: Protocol) -> Result<Self, DecodeError> {
        let filter = read_filter(r, "SUBSCRIBE")?;
        let options = r.u8("SUBSCRIBE options")?;
        let reserved = match protocol {
            Protocol::V311 => 0xfc,
            Protocol::V5 => 0xc0,
        };
        if options & reserved != 0 {
            return Err(malformed(format!("reserved option bits in {options:#04x}")));
        }
        let qos = options & 0x03;
        let retain_handling = (options >> 4) & 0x03;
        if qos == 3 {
            return Err(malformed("QoS 3".into()));
        }
        if retain_handling == 3 {
            return Err(malformed("retain handling 3".into()));
        }
        Ok(Self {
            filter,
            qos,
            no_local: options & 0x04 != 0,
            retain_as_published: options & 0x08 != 0,
            retain_handling,
        })
    }

    fn options(&self, protocol: Protocol) -> Result<u8, EncodeError> {
        if self.filter.is_empty() || self.qos > 2 || self.retain_handling > 2 {
            let what = format!("SUBSCRIBE filter {self:?}");
            return Err(EncodeError::Invalid(what));
        }
        Ok(match protocol {
            Protocol::V311 => self.qos,
            Protocol::V5 => {
                self.qos
                    | (u8::from(self.no_local) << 2)
                    | (u8::from(self.retain_as_published) << 3)
                    | (self.retain_handling << 4)
            }
        })
    }
}

impl Subscribe {
    pub(crate) fn read(mut r: Reader, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id("SUBSCRIBE")?;
        let properties = Properties::read_in(&mut r, protocol, Context::Subscribe)?;
        let filters = read_filters(&mut r, "SUBSCRIBE", |r| SubscribeFilter::read(r, protocol))?;
        Ok(Self {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> usize {
        let properties = self.properties.len_in(protocol);
        let filters: usize = self.filters.iter().map(|f| 3 + f.filter.len()).sum();
        2 + properties + filters
    }

    pub(crate) fn write_body(
        &self,
        protocol: Protocol,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::Invalid(
                "SUBSCRIBE without topic filters".into(),
            ));
        }
        put_packet_id(out, self.packet_id, "SUBSCRIBE")?;
        self.properties
            .write_in(protocol, Context::Subscribe, out)?;
        for f in &self.filters {
            let options = f.options(protocol)?;
            put_string(out, &f.filter, "SUBSCRIBE topic filter")?;
            out.put_u8(options);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Packet;
    use super::super::tests::Refused::{Malformed, ProtocolError};
    use super::super::tests::{V3, V5, encode_all, encode_err, refused, round_trips};
    use super::*;

    fn filter(filter: &str, qos: u8) -> SubscribeFilter {
        let filter = filter.into();
        SubscribeFilter {
            filter,
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }
    }

    #[test]
    fn v3_subscribe_round_trips() {
        let bytes = [
            0x82, 0x0c, 0x00, 0x0a, // packet id 10
            0x00, 0x03, b'a', b'/', b'+', 0x01, // "a/+" QoS 1
            0x00, 0x01, b'#', 0x02, // "#" QoS 2
        ];
        let packet = Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![filter("a/+", 1), filter("#", 2)],
            properties: Properties::default(),
        });
        round_trips(&packet, &bytes, Protocol::V311);
    }

    #[test]
    fn v5_subscribe_round_trips() {
        let bytes = [
            0x82, 0x09, 0x00, 0x0a, // packet id 10
            0x02, 0x0b, 0x07, // subscription identifier 7
            0x00, 0x01, b'a', 0x2d, // "a": retain handling 2, RAP, no local, QoS 1
        ];
        let packet = Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![SubscribeFilter {
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
                ..filter("a", 1)
            }],
            properties: Properties {
                subscription_identifiers: vec![7],
                ..Properties::default()
            },
        });
        round_trips(&packet, &bytes, Protocol::V5);
        // 3.1.1 keeps only the QoS.
        let v3 = [0x82, 0x06, 0x00, 0x0a, 0x00, 0x01, b'a', 0x01];
        assert_eq!(encode_all(&packet, Protocol::V311), v3);
    }

    #[test]
    fn bad_subscribes() {
        assert_eq!(refused(&[0x82, 0x02, 0x00, 0x01], V3), ProtocolError);
        assert_eq!(refused(&[0x82, 0x03, 0x00, 0x01, 0x00], V5), ProtocolError);
        assert_eq!(
            refused(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], V3),
            Malformed
        ); // flags 0000
        assert_eq!(
            refused(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04], V3),
            Malformed
        ); // upper bits
        assert_eq!(
            refused(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03], V3),
            Malformed
        ); // QoS 3
        assert_eq!(
            refused(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], V3),
            Malformed
        ); // empty filter
        assert_eq!(
            refused(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], V3),
            Malformed
        ); // no options
        assert_eq!(
            refused(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40], V5),
            Malformed
        ); // bit 6
        assert_eq!(
            refused(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30], V5),
            Malformed
        ); // RH 3
        let id0 = [0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00];
        assert_eq!(refused(&id0, V3), ProtocolError);
        let two_ids = [
            0x82, 0x0b, 0x00, 0x01, 0x04, 0x0b, 0x01, 0x0b, 0x02, 0x00, 0x01, b'a', 0x00,
        ];
        assert_eq!(refused(&two_ids, V5), ProtocolError);
        let sub_id_0 = [
            0x82, 0x09, 0x00, 0x01, 0x02, 0x0b, 0x00, 0x00, 0x01, b'a', 0x00,
        ];
        assert_eq!(refused(&sub_id_0, V5), ProtocolError);
        let none = Subscribe {
            packet_id: 1,
            filters: vec![],
            properties: Properties::default(),
        };
        assert!(matches!(
            encode_err(&Packet::Subscribe(none), Protocol::V5),
            EncodeError::Invalid(_)
        ));
    }
}
