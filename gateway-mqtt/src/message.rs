//! An MQTT application message as a log record.
//!
//! # Format
//! - key: the MQTT topic name (UTF-8);
//! - value: the payload (an empty payload is an empty value, not null);
//! - timestamp: when the server received it (message expiry counts from it);
//! - headers, each optional:
//!   - `mqtt.qos` (1 byte), `mqtt.retain` (1 byte, 0/1): as published;
//!   - `mqtt.from`: the publishing client id (for No Local);
//!   - `mqtt.qos2` (18 bytes: claim epoch i64, sequence u64, packet id u16,
//!     big-endian): on a QoS 2 message, which connection of `mqtt.from`
//!     stored it and in what order (see [`Receipt`]);
//!   - `mqtt.pfi` (1 byte), `mqtt.expiry` (u32 big-endian seconds),
//!     `mqtt.content-type`, `mqtt.response-topic`, `mqtt.correlation-data`:
//!     the MQTT 5 properties of the same names;
//!   - every other header is an MQTT 5 user property, in order (a user
//!     property whose name starts with `mqtt.` is stored as `mqtt.u.<name>`).
//!
//! Records that do not decode as messages (a key that is not UTF-8, say,
//! written by a Kafka-style producer) are delivered with QoS 0 and no
//! properties when their key is a valid topic name, and skipped otherwise.

use bytes::Bytes;
use fjord_broker::{NewRecord, Record, RecordHeader};

use crate::codec::Properties;

/// The properties a message carries from publisher to subscribers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MessageProps {
    pub(crate) payload_format_indicator: Option<u8>,
    pub(crate) message_expiry_interval: Option<u32>,
    pub(crate) content_type: Option<String>,
    pub(crate) response_topic: Option<String>,
    pub(crate) correlation_data: Option<Bytes>,
    pub(crate) user_properties: Vec<(String, String)>,
}

impl MessageProps {
    pub(crate) fn from_publish(p: &Properties) -> MessageProps {
        MessageProps {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
        }
    }

    /// The PUBLISH properties for a delivery, with the remaining expiry.
    pub(crate) fn to_publish(&self, remaining_expiry: Option<u32>) -> Properties {
        Properties {
            payload_format_indicator: self.payload_format_indicator,
            message_expiry_interval: remaining_expiry,
            content_type: self.content_type.clone(),
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            ..Properties::default()
        }
    }
}

/// Which connection stored a QoS 2 message: the claim offset of the
/// connection (its epoch), its count of QoS 2 messages stored before this
/// one, and the client's packet id. A session resumed after its node died
/// finds the messages its last connection stored after its last save (a
/// sequence at or past the saved one) and takes their packet ids as
/// received, so the client's retransmission is not stored twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receipt {
    pub(crate) epoch: i64,
    pub(crate) seq: u64,
    pub(crate) packet_id: u16,
}

impl Receipt {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(18);
        b.extend_from_slice(&self.epoch.to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.packet_id.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Receipt> {
        Some(Receipt {
            epoch: i64::from_be_bytes(b.get(0..8)?.try_into().ok()?),
            seq: u64::from_be_bytes(b.get(8..16)?.try_into().ok()?),
            packet_id: u16::from_be_bytes(b.get(16..18)?.try_into().ok()?),
        })
    }
}

/// One application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) from: String,
    pub(crate) timestamp_ms: i64,
    pub(crate) props: MessageProps,
    /// On a QoS 2 message from a client: the connection that stored it.
    pub(crate) receipt: Option<Receipt>,
}

fn header(key: &str, value: impl Into<Bytes>) -> RecordHeader {
    RecordHeader {
        key: key.to_string(),
        value: Some(value.into()),
    }
}

impl Message {
    pub(crate) fn to_record(&self) -> NewRecord {
        let mut headers = vec![
            header("mqtt.qos", vec![self.qos]),
            header("mqtt.retain", vec![u8::from(self.retain)]),
            header("mqtt.from", self.from.clone()),
        ];
        if let Some(r) = &self.receipt {
            headers.push(header("mqtt.qos2", r.encode()));
        }
        let p = &self.props;
        if let Some(v) = p.payload_format_indicator {
            headers.push(header("mqtt.pfi", vec![v]));
        }
        if let Some(v) = p.message_expiry_interval {
            headers.push(header("mqtt.expiry", v.to_be_bytes().to_vec()));
        }
        if let Some(v) = &p.content_type {
            headers.push(header("mqtt.content-type", v.clone()));
        }
        if let Some(v) = &p.response_topic {
            headers.push(header("mqtt.response-topic", v.clone()));
        }
        if let Some(v) = &p.correlation_data {
            headers.push(header("mqtt.correlation-data", v.clone()));
        }
        for (k, v) in &p.user_properties {
            let key = if k.starts_with("mqtt.") {
                format!("mqtt.u.{k}")
            } else {
                k.clone()
            };
            headers.push(header(&key, v.clone()));
        }
        NewRecord {
            key: Some(Bytes::from(self.topic.clone())),
            value: Some(self.payload.clone()),
            headers,
            timestamp_ms: self.timestamp_ms,
        }
    }

    /// The message a record holds; `None` when its key is not a topic.
    pub(crate) fn from_record(r: &Record) -> Option<Message> {
        let topic = std::str::from_utf8(r.key.as_deref()?).ok()?.to_string();
        if crate::topic::validate_name(&topic).is_err() {
            return None;
        }
        let mut m = Message {
            topic,
            payload: r.value.clone().unwrap_or_default(),
            qos: 0,
            retain: false,
            from: String::new(),
            timestamp_ms: r.timestamp_ms,
            props: MessageProps::default(),
            receipt: None,
        };
        let text = |v: &Option<Bytes>| {
            v.as_deref()
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(str::to_string)
        };
        let byte = |v: &Option<Bytes>| v.as_deref().and_then(|b| b.first().copied());
        for h in &r.headers {
            match h.key.as_str() {
                "mqtt.qos" => m.qos = byte(&h.value).unwrap_or(0).min(2),
                "mqtt.retain" => m.retain = byte(&h.value) == Some(1),
                "mqtt.from" => m.from = text(&h.value).unwrap_or_default(),
                "mqtt.qos2" => m.receipt = h.value.as_deref().and_then(Receipt::decode),
                "mqtt.pfi" => m.props.payload_format_indicator = byte(&h.value),
                "mqtt.expiry" => {
                    m.props.message_expiry_interval = h
                        .value
                        .as_deref()
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(u32::from_be_bytes);
                }
                "mqtt.content-type" => m.props.content_type = text(&h.value),
                "mqtt.response-topic" => m.props.response_topic = text(&h.value),
                "mqtt.correlation-data" => m.props.correlation_data = h.value.clone(),
                key => {
                    let name = key.strip_prefix("mqtt.u.").unwrap_or(key);
                    if key.starts_with("mqtt.") && !key.starts_with("mqtt.u.") {
                        continue;
                    }
                    m.props
                        .user_properties
                        .push((name.to_string(), text(&h.value).unwrap_or_default()));
                }
            }
        }
        Some(m)
    }

    /// Seconds of expiry left at `now_ms`: `Err(())` once expired.
    pub(crate) fn remaining_expiry(&self, now_ms: i64) -> Result<Option<u32>, ()> {
        let Some(expiry) = self.props.message_expiry_interval else {
            return Ok(None);
        };
        let elapsed = u32::try_from((now_ms - self.timestamp_ms).max(0) / 1000).unwrap_or(u32::MAX);
        if elapsed >= expiry {
            Err(())
        } else {
            Ok(Some(expiry - elapsed))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_message_survives_the_record_round_trip() {
        let m = Message {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"hi"),
            qos: 2,
            retain: true,
            from: "dev-1".into(),
            timestamp_ms: 1_000,
            props: MessageProps {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(30),
                content_type: Some("text/plain".into()),
                response_topic: Some("r/1".into()),
                correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                user_properties: vec![("k".into(), "v".into()), ("mqtt.x".into(), "y".into())],
            },
            receipt: Some(Receipt {
                epoch: 41,
                seq: u64::MAX - 1,
                packet_id: 65535,
            }),
        };
        let n = m.to_record();
        let r = Record {
            offset: 7,
            timestamp_ms: n.timestamp_ms,
            key: n.key,
            value: n.value,
            headers: n.headers,
        };
        assert_eq!(Message::from_record(&r).unwrap(), m);
        assert_eq!(m.remaining_expiry(1_000 + 10_500), Ok(Some(20)));
        assert_eq!(m.remaining_expiry(1_000 + 30_000), Err(()));
    }

    #[test]
    fn foreign_records_become_plain_messages_or_are_skipped() {
        let r = Record::new(Some(Bytes::from_static(b"x/y")), None, 5);
        let m = Message::from_record(&r).unwrap();
        assert_eq!((m.qos, m.retain, m.payload.len()), (0, false, 0));
        let bad = Record::new(Some(Bytes::from_static(b"x/#")), None, 5);
        assert!(Message::from_record(&bad).is_none());
        let none = Record::new(None, None, 5);
        assert!(Message::from_record(&none).is_none());
    }
}
