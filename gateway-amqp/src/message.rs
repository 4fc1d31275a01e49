//! A message as a queue's log keeps it: one record per message and queue.
//!
//! # Format
//! - key: the routing key it was published with;
//! - value: the body;
//! - headers: `amqp.exchange` (the exchange it was published to) and
//!   `amqp.properties` (its content header frame, as on the wire, so every
//!   basic property and header table survives byte for byte).

use bytes::{Bytes, BytesMut};
use fjord_broker::{NewRecord, Record, RecordHeader};

use crate::codec::{BasicProperties, ContentHeader, Frame, FramePayload, class};

const EXCHANGE: &str = "amqp.exchange";
const PROPERTIES: &str = "amqp.properties";

/// A published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) properties: BasicProperties,
    pub(crate) body: Bytes,
}

impl Message {
    /// The record that stores it.
    pub(crate) fn to_record(&self) -> NewRecord {
        let header = Frame {
            channel: 0,
            payload: FramePayload::Header(ContentHeader {
                class_id: class::BASIC,
                body_size: self.body.len() as u64,
                properties: self.properties.clone(),
            }),
        };
        let mut props = BytesMut::new();
        // Properties that decoded from the wire encode again.
        let _ = crate::codec::encode_frame(&header, &mut props);
        NewRecord {
            key: Some(Bytes::from(self.routing_key.clone().into_bytes())),
            value: Some(self.body.clone()),
            headers: vec![
                RecordHeader {
                    key: EXCHANGE.into(),
                    value: Some(Bytes::from(self.exchange.clone().into_bytes())),
                },
                RecordHeader {
                    key: PROPERTIES.into(),
                    value: Some(props.freeze()),
                },
            ],
            timestamp_ms: 0,
        }
    }

    /// The message a record stores; `None` for a record that is not one.
    pub(crate) fn from_record(r: &Record) -> Option<Message> {
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value.clone())
        };
        let mut props = BytesMut::from(&header(PROPERTIES)?[..]);
        let properties = match crate::codec::decode_frame(&mut props, 0) {
            Ok(Some(Frame {
                payload: FramePayload::Header(h),
                ..
            })) => h.properties,
            _ => return None,
        };
        Some(Message {
            exchange: String::from_utf8(header(EXCHANGE)?.to_vec()).ok()?,
            routing_key: r
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            properties,
            body: r.value.clone().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec::{FieldTable, FieldValue};

    #[test]
    fn a_message_round_trips_through_its_record() {
        let mut headers = FieldTable::new();
        headers.insert("x-n", FieldValue::I32(7));
        let m = Message {
            exchange: "orders".into(),
            routing_key: "eu.new".into(),
            properties: BasicProperties {
                content_type: Some("application/json".into()),
                delivery_mode: Some(2),
                headers: Some(headers),
                ..BasicProperties::default()
            },
            body: Bytes::from_static(b"{}"),
        };
        let r = m.to_record();
        let stored = Record {
            offset: 3,
            timestamp_ms: 1,
            key: r.key,
            value: r.value,
            headers: r.headers,
        };
        assert_eq!(Message::from_record(&stored), Some(m));
    }
}
