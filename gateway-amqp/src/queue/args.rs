//! The queue arguments the gateway acts on, and dead-lettering's `x-death`
//! header.

use bytes::Bytes;

use crate::codec::{FieldTable, FieldValue};
use crate::message::Message;
use crate::topology::as_int;

/// What happens to a publish that finds the queue full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Overflow {
    /// The oldest messages go (dead-lettered with reason `maxlen`).
    #[default]
    DropHead,
    /// The publish is refused (a nack in confirm mode).
    RejectPublish,
}

/// `x-*` arguments of a queue.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueArgs {
    /// `x-message-ttl` (ms).
    pub(crate) message_ttl: Option<i64>,
    /// `x-expires` (ms): the queue goes when unused this long.
    pub(crate) expires: Option<i64>,
    /// `x-max-length`.
    pub(crate) max_length: Option<usize>,
    /// `x-max-length-bytes` (bodies).
    pub(crate) max_length_bytes: Option<u64>,
    pub(crate) overflow: Overflow,
    /// `x-dead-letter-exchange`, `x-dead-letter-routing-key`.
    pub(crate) dead_letter_exchange: Option<String>,
    pub(crate) dead_letter_routing_key: Option<String>,
    /// `x-single-active-consumer`.
    pub(crate) single_active_consumer: bool,
    /// `x-max-priority` (at most 255).
    pub(crate) max_priority: Option<u8>,
}

fn text(v: &FieldValue) -> Option<String> {
    match v {
        FieldValue::LongString(b) => String::from_utf8(b.to_vec()).ok(),
        _ => None,
    }
}

impl QueueArgs {
    /// Reads the arguments (already checked for type at declare).
    pub(crate) fn parse(t: &FieldTable) -> QueueArgs {
        let int = |k: &str| t.get(k).and_then(as_int).filter(|n| *n >= 0);
        QueueArgs {
            message_ttl: int("x-message-ttl"),
            expires: int("x-expires").filter(|n| *n > 0),
            max_length: int("x-max-length").and_then(|n| usize::try_from(n).ok()),
            max_length_bytes: int("x-max-length-bytes").and_then(|n| u64::try_from(n).ok()),
            overflow: match t.get("x-overflow").and_then(text).as_deref() {
                Some("reject-publish" | "reject-publish-dlx") => Overflow::RejectPublish,
                _ => Overflow::DropHead,
            },
            dead_letter_exchange: t.get("x-dead-letter-exchange").and_then(text),
            dead_letter_routing_key: t.get("x-dead-letter-routing-key").and_then(text),
            single_active_consumer: matches!(
                t.get("x-single-active-consumer"),
                Some(FieldValue::Bool(true))
            ),
            max_priority: int("x-max-priority").map(|n| u8::try_from(n.min(255)).unwrap_or(255)),
        }
    }
}

/// A message's own TTL: the `expiration` property (milliseconds as text).
pub(crate) fn message_ttl(m: &Message) -> Option<i64> {
    m.properties
        .expiration
        .as_deref()
        .and_then(|e| e.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
}

/// Why a message is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeathReason {
    Rejected,
    Expired,
    MaxLen,
}

impl DeathReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
        }
    }
}

fn long_string(s: &str) -> FieldValue {
    FieldValue::LongString(Bytes::from(s.to_string().into_bytes()))
}

/// The message as dead-lettered from `queue`: its `x-death` entry for
/// (queue, reason) counted up and moved first (RabbitMQ's format), the
/// `x-first-death-*` headers set once, and a per-message TTL dropped so it
/// does not expire again at once.
pub(crate) fn dead_letter(m: &Message, queue: &str, reason: DeathReason, now_s: u64) -> Message {
    let mut out = m.clone();
    let mut headers = out.properties.headers.take().unwrap_or_default();
    let mut deaths: Vec<FieldValue> = match headers.get("x-death") {
        Some(FieldValue::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let same = |d: &FieldValue| match d {
        FieldValue::Table(t) => {
            t.get("queue") == Some(&long_string(queue))
                && t.get("reason") == Some(&long_string(reason.as_str()))
        }
        _ => false,
    };
    let count = match deaths.iter().position(same) {
        Some(i) => {
            let old = deaths.remove(i);
            match old {
                FieldValue::Table(t) => t.get("count").and_then(as_int).unwrap_or(0) + 1,
                _ => 1,
            }
        }
        None => 1,
    };
    let mut death = FieldTable::new();
    death.insert("count", FieldValue::I64(count));
    death.insert("reason", long_string(reason.as_str()));
    death.insert("queue", long_string(queue));
    death.insert("time", FieldValue::Timestamp(now_s));
    death.insert("exchange", long_string(&m.exchange));
    death.insert(
        "routing-keys",
        FieldValue::Array(vec![long_string(&m.routing_key)]),
    );
    if let Some(e) = &m.properties.expiration {
        death.insert("original-expiration", long_string(e));
    }
    deaths.insert(0, FieldValue::Table(death));
    let mut rebuilt = FieldTable::new();
    for (k, v) in headers.iter() {
        if k != "x-death" {
            rebuilt.insert(k, v.clone());
        }
    }
    if rebuilt.get("x-first-death-reason").is_none() {
        rebuilt.insert("x-first-death-reason", long_string(reason.as_str()));
        rebuilt.insert("x-first-death-queue", long_string(queue));
        rebuilt.insert("x-first-death-exchange", long_string(&m.exchange));
    }
    rebuilt.insert("x-death", FieldValue::Array(deaths));
    headers = rebuilt;
    out.properties.headers = Some(headers);
    out.properties.expiration = None;
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec::BasicProperties;

    fn msg() -> Message {
        Message {
            exchange: "in".into(),
            routing_key: "k".into(),
            properties: BasicProperties {
                expiration: Some("100".into()),
                ..BasicProperties::default()
            },
            body: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn x_death_counts_per_queue_and_reason() {
        let once = dead_letter(&msg(), "q", DeathReason::Expired, 7);
        let twice = dead_letter(&once, "q", DeathReason::Expired, 8);
        let other = dead_letter(&twice, "r", DeathReason::Rejected, 9);
        let h = other.properties.headers.as_ref().unwrap();
        let Some(FieldValue::Array(deaths)) = h.get("x-death") else {
            panic!("x-death: {h:?}");
        };
        assert_eq!(deaths.len(), 2);
        let FieldValue::Table(first) = &deaths[0] else {
            panic!()
        };
        assert_eq!(first.get("queue"), Some(&long_string("r")));
        let FieldValue::Table(second) = &deaths[1] else {
            panic!()
        };
        assert_eq!(second.get("count"), Some(&FieldValue::I64(2)));
        assert_eq!(h.get("x-first-death-reason"), Some(&long_string("expired")));
        assert_eq!(other.properties.expiration, None);
    }

    #[test]
    fn arguments_parse() {
        let mut t = FieldTable::new();
        t.insert("x-message-ttl", FieldValue::I32(50));
        t.insert("x-max-length", FieldValue::I64(3));
        t.insert("x-overflow", long_string("reject-publish"));
        t.insert("x-dead-letter-exchange", long_string("dlx"));
        t.insert("x-single-active-consumer", FieldValue::Bool(true));
        t.insert("x-max-priority", FieldValue::U8(10));
        let a = QueueArgs::parse(&t);
        assert_eq!(a.message_ttl, Some(50));
        assert_eq!(a.max_length, Some(3));
        assert_eq!(a.overflow, Overflow::RejectPublish);
        assert_eq!(a.dead_letter_exchange.as_deref(), Some("dlx"));
        assert!(a.single_active_consumer);
        assert_eq!(a.max_priority, Some(10));
    }
}
