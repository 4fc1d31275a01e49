//! PUBLISH: an application message, either way (3.1.1 §3.3, 5.0 §3.3).
//!
//! # Format
//!
//! ```text
//!  fixed header   0x3_: flags bit 3 DUP | bits 2-1 QoS | bit 0 RETAIN
//!                 remaining length
//!  topic name     string
//!  packet id      two-byte integer, only when QoS > 0, never 0
//!  properties     5.0 only
//!  payload        every byte left, possibly none
//! ```
//!
//! # Invariants
//!
//! - QoS 3, or DUP with QoS 0 (3.1.1 §3.3.1.2, 5.0 §3.3.1.1): malformed.
//! - Packet id 0 with QoS > 0: protocol error.
//! - Topic name without `+`/`#`; empty only in 5.0 with a Topic Alias
//!   property: [`DecodeError::InvalidTopicName`] otherwise. Whether the alias
//!   is known (or 0) is the session's business.
//! - `packet_id` is 0 for QoS 0 after decoding; the encoder ignores it then.

use bytes::{BufMut, Bytes, BytesMut};

use super::properties::Context;
use super::{
    DecodeError, EncodeError, Properties, Protocol, Reader, put_packet_id, put_string,
    topic_name_error,
};

/// An application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// A re-delivery of a QoS 1/2 message the receiver may have seen.
    pub dup: bool,
    /// Delivery guarantee, 0..=2.
    pub qos: u8,
    /// Keep as the topic's retained message (or, server to client, it was).
    pub retain: bool,
    /// Where the message goes; empty in 5.0 when a topic alias stands for it.
    pub topic: String,
    /// Identifies the QoS 1/2 exchange; 0 for QoS 0.
    pub packet_id: u16,
    /// The message body.
    pub payload: Bytes,
    /// PUBLISH properties (5.0 §3.3.2.3); empty for 3.1.1.
    pub properties: Properties,
}

impl Publish {
    /// The fixed header flags.
    pub(crate) fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos & 0x03) << 1) | u8::from(self.retain)
    }

    pub(crate) fn read(flags: u8, mut r: Reader, protocol: Protocol) -> Result<Self, DecodeError> {
        let dup = flags & 0x08 != 0;
        let qos = (flags >> 1) & 0x03;
        let retain = flags & 0x01 != 0;
        if qos == 3 {
            return Err(DecodeError::Malformed("PUBLISH with QoS 3".into()));
        }
        if dup && qos == 0 {
            return Err(DecodeError::Malformed("PUBLISH with DUP and QoS 0".into()));
        }
        let topic = r.string("PUBLISH topic name")?;
        let packet_id = if qos > 0 { r.packet_id("PUBLISH")? } else { 0 };
        let properties = Properties::read_in(&mut r, protocol, Context::Publish)?;
        if let Some(e) = topic_name_error(&topic, properties.topic_alias.is_some()) {
            return Err(DecodeError::InvalidTopicName(e));
        }
        let payload = r.rest();
        Ok(Self {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            payload,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> usize {
        let packet_id = if self.qos > 0 { 2 } else { 0 };
        let properties = self.properties.len_in(protocol);
        2 + self.topic.len() + packet_id + properties + self.payload.len()
    }

    pub(crate) fn write_body(
        &self,
        protocol: Protocol,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if self.qos > 2 {
            return Err(EncodeError::Invalid(format!(
                "PUBLISH with QoS {}",
                self.qos
            )));
        }
        if self.dup && self.qos == 0 {
            return Err(EncodeError::Invalid("PUBLISH with DUP and QoS 0".into()));
        }
        let alias = protocol == Protocol::V5 && self.properties.topic_alias.is_some();
        if let Some(e) = topic_name_error(&self.topic, alias) {
            return Err(EncodeError::Invalid(format!("PUBLISH topic: {e}")));
        }
        put_string(out, &self.topic, "PUBLISH topic name")?;
        if self.qos > 0 {
            put_packet_id(out, self.packet_id, "PUBLISH")?;
        }
        self.properties.write_in(protocol, Context::Publish, out)?;
        out.put_slice(&self.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Packet;
    use super::super::tests::Refused::{Malformed, ProtocolError};
    use super::super::tests::{
        V3, V5, decode_all, decode_err, encode_all, encode_err, refused, round_trips,
    };
    use super::*;

    fn publish(qos: u8, packet_id: u16) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: "a/b".into(),
            packet_id,
            payload: Bytes::from_static(b"hi"),
            properties: Properties::default(),
        }
    }

    #[test]
    fn v3_publish_round_trips() {
        let qos0 = [0x31, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
        let packet = Packet::Publish(Publish {
            retain: true,
            ..publish(0, 0)
        });
        round_trips(&packet, &qos0, Protocol::V311);
        let qos2_dup = [
            0x3c, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x12, 0x34, b'h', b'i',
        ];
        let packet = Packet::Publish(Publish {
            dup: true,
            ..publish(2, 0x1234)
        });
        assert_eq!(decode_all(&qos2_dup, None), packet);
        assert_eq!(encode_all(&packet, Protocol::V311), qos2_dup);
    }

    #[test]
    fn v5_publish_round_trips() {
        let bytes = [
            0x32, 0x11, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x07, // topic, packet id 7
            0x07, // properties
            0x01, 0x01, // payload format: UTF-8
            0x0b, 0x81, 0x01, // subscription identifier 129
            0x0b, 0x02, // subscription identifier 2
            b'h', b'i',
        ];
        let properties = Properties {
            payload_format_indicator: Some(1),
            subscription_identifiers: vec![129, 2],
            ..Properties::default()
        };
        let packet = Packet::Publish(Publish {
            properties,
            ..publish(1, 7)
        });
        round_trips(&packet, &bytes, Protocol::V5);
        // 3.1.1 drops the properties.
        let v3 = [
            0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x07, b'h', b'i',
        ];
        assert_eq!(encode_all(&packet, Protocol::V311), v3);
    }

    #[test]
    fn empty_topic_needs_an_alias() {
        let aliased = [0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05];
        let packet = Packet::Publish(Publish {
            topic: String::new(),
            payload: Bytes::new(),
            properties: Properties {
                topic_alias: Some(5),
                ..Properties::default()
            },
            ..publish(0, 0)
        });
        round_trips(&packet, &aliased, Protocol::V5);
        assert!(matches!(
            encode_err(&packet, Protocol::V311),
            EncodeError::Invalid(_)
        ));
        let bare = [0x30, 0x03, 0x00, 0x00, 0x00];
        assert!(matches!(
            decode_err(&bare, Some(Protocol::V5)),
            DecodeError::InvalidTopicName(_)
        ));
        let v3 = [0x30, 0x02, 0x00, 0x00];
        let err = decode_err(&v3, Some(Protocol::V311));
        assert!(matches!(err, DecodeError::InvalidTopicName(_)));
        assert_eq!(err.reason_code(), 0x90);
    }

    #[test]
    fn bad_publishes() {
        let wildcards = [
            [0x30, 0x03, 0x00, 0x01, b'+'],
            [0x30, 0x03, 0x00, 0x01, b'#'],
        ];
        for bytes in wildcards {
            assert!(matches!(
                decode_err(&bytes, V3),
                DecodeError::InvalidTopicName(_)
            ));
        }
        let qos3 = [0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01];
        assert_eq!(refused(&qos3, V3), Malformed);
        let dup_qos0 = [0x38, 0x03, 0x00, 0x01, b't'];
        assert_eq!(refused(&dup_qos0, V3), Malformed);
        let id0 = [0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00];
        assert_eq!(refused(&id0, V3), ProtocolError);
        let no_id = [0x32, 0x03, 0x00, 0x01, b't'];
        assert_eq!(refused(&no_id, V3), Malformed);
        let topic_past_end = [0x30, 0x03, 0x00, 0x05, b't'];
        assert_eq!(refused(&topic_past_end, V3), Malformed);
        let sub_id_0 = [0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x0b, 0x00];
        assert_eq!(refused(&sub_id_0, V5), ProtocolError);
        let twice = [0x30, 0x08, 0x00, 0x01, b't', 0x04, 0x01, 0x00, 0x01, 0x00];
        assert_eq!(refused(&twice, V5), ProtocolError);
        let props_past_end = [0x30, 0x06, 0x00, 0x01, b't', 0x05, 0x01, 0x00];
        assert_eq!(refused(&props_past_end, V5), Malformed);
        let not_allowed = [0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x24, 0x00]; // maximum QoS
        assert_eq!(refused(&not_allowed, V5), Malformed);
        assert!(matches!(
            encode_err(&Packet::Publish(publish(1, 0)), Protocol::V5),
            EncodeError::Invalid(_)
        ));
    }
}
