//! Vhosts, exchanges, queues and bindings, and where the durable ones are
//! kept: the compacted internal topic `__amqp_meta`.
//!
//! # Format
//! One record per durable thing, key = kind and names joined by U+0001
//! (`v␁vhost`, `e␁vhost␁exchange`, `q␁vhost␁queue`,
//! `b␁vhost␁source␁q|e␁destination␁routing key␁arguments`), value = JSON;
//! a tombstone deletes it. Field tables are JSON objects of
//! `{"t": type, "v": value}`.
//!
//! # Invariants
//! A change is written (committed) before the method's `-ok` is sent, and
//! applied in memory after the write: what a client was told exists
//! survives a restart. Transient things live in memory only. The default
//! vhost "/" exists after every load, even when it was deleted (then empty).

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use fjord_broker::{Broker, Leader, NewRecord, ProduceRequest};
use serde_json::{Value, json};

use crate::codec::{FieldTable, FieldValue};
use crate::routing::{Destination, ExchangeDecl, ExchangeKind, Exchanges, HeaderValue};

/// The compacted topic of durable topology.
pub(crate) const META_TOPIC: &str = "__amqp_meta";

/// The vhost every node has.
pub(crate) const DEFAULT_VHOST: &str = "/";

const SEP: char = '\u{1}';

impl HeaderValue for FieldValue {
    fn is_void(&self) -> bool {
        matches!(self, FieldValue::Void)
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongString(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Integers of different widths compare by value (RabbitMQ clients
    /// pick widths freely).
    fn matches_header(&self, header: &Self) -> bool {
        match (as_int(self), as_int(header)) {
            (Some(a), Some(b)) => a == b,
            _ => self == header,
        }
    }
}

/// An integer field value's value.
pub(crate) fn as_int(v: &FieldValue) -> Option<i64> {
    Some(match v {
        FieldValue::I8(n) => i64::from(*n),
        FieldValue::U8(n) => i64::from(*n),
        FieldValue::I16(n) => i64::from(*n),
        FieldValue::U16(n) => i64::from(*n),
        FieldValue::I32(n) => i64::from(*n),
        FieldValue::U32(n) => i64::from(*n),
        FieldValue::I64(n) => *n,
        _ => return None,
    })
}

/// A queue's definition.
#[derive(Debug, Clone)]
pub(crate) struct QueueDef {
    pub(crate) durable: bool,
    /// The connection that owns an exclusive queue.
    pub(crate) exclusive: Option<u64>,
    pub(crate) auto_delete: bool,
    pub(crate) arguments: FieldTable,
    /// The log topic holding its messages.
    pub(crate) topic: String,
}

/// Every vhost's exchanges, queues and bindings.
#[derive(Debug, Default)]
pub(crate) struct Topology {
    /// The vhosts' names, for listing them (`exchanges` knows them too but
    /// does not list them).
    pub(crate) vhosts: BTreeSet<String>,
    pub(crate) exchanges: Exchanges<FieldValue>,
    /// (vhost, queue) → definition.
    pub(crate) queues: HashMap<(String, String), QueueDef>,
}

/// A change to write.
pub(crate) enum Change<'a> {
    /// A vhost declared (`present`) or deleted.
    Vhost { name: &'a str, present: bool },
    Exchange {
        vhost: &'a str,
        name: &'a str,
        decl: Option<&'a ExchangeDecl<FieldValue>>,
    },
    Queue {
        vhost: &'a str,
        name: &'a str,
        def: Option<&'a QueueDef>,
    },
    Binding {
        vhost: &'a str,
        source: &'a str,
        destination: &'a Destination,
        routing_key: &'a str,
        arguments: &'a [(String, FieldValue)],
        present: bool,
    },
}

/// Writes one change (committed on return).
pub(crate) async fn write(broker: &Broker, change: Change<'_>) -> crate::Result<()> {
    let (key, value) = match change {
        Change::Vhost { name, present } => (format!("v{SEP}{name}"), present.then(|| json!({}))),
        Change::Exchange { vhost, name, decl } => (
            format!("e{SEP}{vhost}{SEP}{name}"),
            decl.map(|d| {
                json!({
                    "kind": d.kind.as_str(),
                    "durable": d.durable,
                    "auto_delete": d.auto_delete,
                    "internal": d.internal,
                    "arguments": table_json(&d.arguments),
                })
            }),
        ),
        Change::Queue { vhost, name, def } => (
            format!("q{SEP}{vhost}{SEP}{name}"),
            def.map(|d| {
                json!({
                    "auto_delete": d.auto_delete,
                    "arguments": table_json(d.arguments.entries()),
                    "topic": d.topic,
                })
            }),
        ),
        Change::Binding {
            vhost,
            source,
            destination,
            routing_key,
            arguments,
            present,
        } => {
            let (kind, dest) = match destination {
                Destination::Queue(q) => ("q", q.as_str()),
                Destination::Exchange(e) => ("e", e.as_str()),
            };
            let args = table_json(arguments);
            (
                format!(
                    "b{SEP}{vhost}{SEP}{source}{SEP}{kind}{SEP}{dest}{SEP}{routing_key}{SEP}{args}"
                ),
                present.then(|| json!({ "arguments": args })),
            )
        }
    };
    let record = NewRecord {
        key: Some(Bytes::from(key.into_bytes())),
        value: value.map(|v| Bytes::from(v.to_string().into_bytes())),
        headers: Vec::new(),
        timestamp_ms: 0,
    };
    // Only the node that runs the gateway changes the topology (one that
    // just lost it must not write behind its successor's back).
    let leader = broker.leader_of(crate::queue::ACKS_TOPIC, 0);
    if leader != Leader::Here {
        return Err(crate::Error::Broker(fjord_broker::Error::NotLeader {
            topic: crate::queue::ACKS_TOPIC.to_string(),
            partition: 0,
            leader: match leader {
                Leader::Node(id, addr) => Some((id, addr)),
                Leader::Here | Leader::Unknown => None,
            },
        }));
    }
    broker
        .produce(ProduceRequest::records(META_TOPIC, Some(0), vec![record]))
        .await
        .map(|_| ())
        .map_err(crate::Error::Broker)
}

/// Rebuilds the durable topology from the latest record of every key.
pub(crate) fn load(records: Vec<(String, Value)>) -> Topology {
    let mut t = Topology::default();
    t.exchanges.add_vhost(DEFAULT_VHOST);
    t.vhosts.insert(DEFAULT_VHOST.to_string());
    let mut sorted = records;
    // Vhosts, then exchanges and queues, then bindings.
    sorted.sort_by_key(|(k, _)| match k.chars().next() {
        Some('v') => 0,
        Some('e' | 'q') => 1,
        _ => 2,
    });
    for (key, value) in sorted {
        let parts: Vec<&str> = key.split(SEP).collect();
        match parts.as_slice() {
            ["v", vhost] => {
                t.exchanges.add_vhost(vhost);
                t.vhosts.insert((*vhost).to_string());
            }
            ["e", vhost, name] => {
                let Some(kind) = value["kind"]
                    .as_str()
                    .and_then(|k| ExchangeKind::parse(k).ok())
                else {
                    continue;
                };
                let decl = ExchangeDecl {
                    kind,
                    durable: true,
                    auto_delete: value["auto_delete"].as_bool().unwrap_or(false),
                    internal: value["internal"].as_bool().unwrap_or(false),
                    arguments: table_from_json(&value["arguments"]),
                };
                let _ = t.exchanges.declare_exchange(vhost, name, decl);
            }
            ["q", vhost, name] => {
                let Some(topic) = value["topic"].as_str() else {
                    continue;
                };
                let def = QueueDef {
                    durable: true,
                    exclusive: None,
                    auto_delete: value["auto_delete"].as_bool().unwrap_or(false),
                    arguments: FieldTable::from(table_from_json(&value["arguments"])),
                    topic: topic.to_string(),
                };
                let _ = t.exchanges.add_queue(vhost, name);
                t.queues.insert((vhost.to_string(), name.to_string()), def);
            }
            ["b", vhost, source, kind, dest, routing_key, _] => {
                let destination = if *kind == "q" {
                    Destination::queue(dest)
                } else {
                    Destination::exchange(dest)
                };
                let args = table_from_json(&value["arguments"]);
                let _ = t
                    .exchanges
                    .bind(vhost, source, destination, routing_key, args);
            }
            _ => {}
        }
    }
    t
}

/// The log topic for a queue: readable, unique (a hash of vhost and name),
/// within the topic name rules.
pub(crate) fn queue_topic(vhost: &str, name: &str) -> String {
    let readable: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(150)
        .collect();
    let mut hashed = Vec::with_capacity(vhost.len() + name.len() + 1);
    hashed.extend_from_slice(vhost.as_bytes());
    hashed.push(0);
    hashed.extend_from_slice(name.as_bytes());
    let a = fjord_broker::murmur2(&hashed);
    hashed.push(1);
    let b = fjord_broker::murmur2(&hashed);
    format!("{QUEUE_TOPIC_PREFIX}{readable}.{a:08x}{b:08x}")
}

/// What every queue's topic name starts with.
pub(crate) const QUEUE_TOPIC_PREFIX: &str = "__amqp_q.";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Bytes> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

fn table_json(entries: &[(String, FieldValue)]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|(k, v)| json!([k, value_json(v)]))
            .collect(),
    )
}

fn value_json(v: &FieldValue) -> Value {
    let (t, v) = match v {
        FieldValue::Bool(b) => ("t", json!(b)),
        FieldValue::I8(n) => ("b", json!(n)),
        FieldValue::U8(n) => ("B", json!(n)),
        FieldValue::I16(n) => ("s", json!(n)),
        FieldValue::U16(n) => ("u", json!(n)),
        FieldValue::I32(n) => ("I", json!(n)),
        FieldValue::U32(n) => ("i", json!(n)),
        FieldValue::I64(n) => ("l", json!(n)),
        FieldValue::F32(f) => ("f", json!(f.to_bits())),
        FieldValue::F64(f) => ("d", json!(f.to_bits())),
        FieldValue::Decimal { scale, value } => ("D", json!([scale, value])),
        FieldValue::LongString(b) => ("S", json!(hex(b))),
        FieldValue::ByteArray(b) => ("x", json!(hex(b))),
        FieldValue::Timestamp(t) => ("T", json!(t)),
        FieldValue::Array(a) => ("A", Value::Array(a.iter().map(value_json).collect())),
        FieldValue::Table(t) => ("F", table_json(t.entries())),
        FieldValue::Void => ("V", Value::Null),
    };
    json!({ "t": t, "v": v })
}

fn table_from_json(v: &Value) -> Vec<(String, FieldValue)> {
    v.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    let k = e.get(0)?.as_str()?;
                    Some((k.to_string(), value_from_json(e.get(1)?)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn value_from_json(v: &Value) -> Option<FieldValue> {
    let x = &v["v"];
    Some(match v["t"].as_str()? {
        "t" => FieldValue::Bool(x.as_bool()?),
        "b" => FieldValue::I8(i8::try_from(x.as_i64()?).ok()?),
        "B" => FieldValue::U8(u8::try_from(x.as_u64()?).ok()?),
        "s" => FieldValue::I16(i16::try_from(x.as_i64()?).ok()?),
        "u" => FieldValue::U16(u16::try_from(x.as_u64()?).ok()?),
        "I" => FieldValue::I32(i32::try_from(x.as_i64()?).ok()?),
        "i" => FieldValue::U32(u32::try_from(x.as_u64()?).ok()?),
        "l" => FieldValue::I64(x.as_i64()?),
        "f" => FieldValue::F32(f32::from_bits(u32::try_from(x.as_u64()?).ok()?)),
        "d" => FieldValue::F64(f64::from_bits(x.as_u64()?)),
        "D" => FieldValue::Decimal {
            scale: u8::try_from(x.get(0)?.as_u64()?).ok()?,
            value: u32::try_from(x.get(1)?.as_u64()?).ok()?,
        },
        "S" => FieldValue::LongString(unhex(x.as_str()?)?),
        "x" => FieldValue::ByteArray(unhex(x.as_str()?)?),
        "T" => FieldValue::Timestamp(x.as_u64()?),
        "A" => FieldValue::Array(
            x.as_array()?
                .iter()
                .map(value_from_json)
                .collect::<Option<Vec<_>>>()?,
        ),
        "F" => FieldValue::Table(FieldTable::from(table_from_json(x))),
        "V" => FieldValue::Void,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn field_values_round_trip_through_json() {
        let mut inner = FieldTable::new();
        inner.insert("n", FieldValue::U16(9));
        let entries = vec![
            ("a".to_string(), FieldValue::Bool(true)),
            ("b".to_string(), FieldValue::I64(-5)),
            ("c".to_string(), FieldValue::F64(1.5)),
            (
                "d".to_string(),
                FieldValue::LongString(Bytes::from_static(b"dlx")),
            ),
            (
                "e".to_string(),
                FieldValue::Array(vec![FieldValue::Void, FieldValue::Table(inner)]),
            ),
            (
                "f".to_string(),
                FieldValue::Decimal {
                    scale: 2,
                    value: 314,
                },
            ),
        ];
        assert_eq!(table_from_json(&table_json(&entries)), entries);
    }

    #[test]
    fn vhost_records_load_and_the_default_vhost_is_always_there() {
        let t = load(vec![
            (format!("v{SEP}orders"), json!({})),
            (format!("e{SEP}orders{SEP}ev"), json!({"kind": "topic"})),
        ]);
        let names: Vec<&str> = t.vhosts.iter().map(String::as_str).collect();
        assert_eq!(names, ["/", "orders"]);
        assert!(t.exchanges.has_vhost("orders"));
        assert!(t.exchanges.exchange("orders", "ev").is_some());
        assert!(t.exchanges.exchange("orders", "amq.topic").is_some());
    }

    #[test]
    fn queue_topics_are_valid_and_distinct() {
        let a = queue_topic("/", "orders.eu");
        let b = queue_topic("/", "orders_eu");
        let c = queue_topic("other", "orders.eu");
        assert_ne!(a, b);
        assert_ne!(a, c);
        let long = queue_topic("/", &"ü".repeat(120));
        assert!(long.len() <= 249, "{}", long.len());
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
    }
}
