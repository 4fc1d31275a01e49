//! The gateway's compacted internal topics: `__mqtt_sessions` (durable
//! session state, key = client id) and `__mqtt_retained` (retained
//! messages, key = MQTT topic). Both are read whole at start and written
//! with `acks=all`; a tombstone (null value) deletes a key.

use bytes::Bytes;
use fjord_broker::{Acks, Broker, FetchRequest, NewRecord, Record, TopicSpec};

use crate::{Error, Result};

pub(crate) const SESSIONS_TOPIC: &str = "__mqtt_sessions";
pub(crate) const RETAINED_TOPIC: &str = "__mqtt_retained";

/// Creates `name` (compacted, one partition) unless it exists.
pub(crate) async fn ensure_compacted(broker: &Broker, name: &str) -> Result<()> {
    if broker.describe_topic(name).is_ok() {
        return Ok(());
    }
    let mut spec = TopicSpec::new(name, 1);
    // The cluster's default (every node's copy counts on one node).
    spec.replication_factor = 0;
    spec.configs
        .insert("cleanup.policy".into(), "compact".into());
    spec.configs
        .insert("segment.bytes".into(), (64u64 << 20).to_string());
    match broker.create_internal_topic(spec).await {
        Ok(_) | Err(fjord_broker::Error::TopicExists(_)) => Ok(()),
        Err(e) => Err(Error::Broker(e)),
    }
}

/// Every record of `topic`-`partition` from `from` up to its current end.
pub(crate) async fn read_range(
    broker: &Broker,
    topic: &str,
    partition: u32,
    from: i64,
    to: Option<i64>,
) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        if to.is_some_and(|to| offset >= to) {
            break;
        }
        let r = broker
            .fetch_anywhere(FetchRequest {
                topic: topic.to_string(),
                partition,
                offset,
                max_bytes: 1 << 20,
                min_bytes: 0,
                max_wait: std::time::Duration::ZERO,
            })
            .await;
        let r = match r {
            Ok(r) => r,
            // Retention or compaction moved the start: go on from there.
            Err(fjord_broker::Error::OffsetOutOfRange { earliest, .. }) if earliest > offset => {
                offset = earliest;
                continue;
            }
            Err(e) => return Err(Error::Broker(e)),
        };
        if r.records.is_empty() {
            break;
        }
        let records = fjord_broker::decode_records(r.records, offset)?;
        out.extend(
            records
                .into_iter()
                .filter(|rec| to.is_none_or(|to| rec.offset < to)),
        );
        if r.next_offset <= offset {
            break;
        }
        offset = r.next_offset;
    }
    Ok(out)
}

/// The latest record of every key of a compacted one-partition topic
/// below `to` (a tombstone's value is `None`).
pub(crate) async fn load_latest(broker: &Broker, topic: &str, to: i64) -> Result<Vec<Record>> {
    let mut latest: std::collections::BTreeMap<String, Record> = Default::default();
    for r in read_range(broker, topic, 0, 0, Some(to)).await? {
        let Some(key) = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        latest.insert(key.to_string(), r);
    }
    Ok(latest.into_values().collect())
}

/// The end of a one-partition internal topic (wherever its leader is).
pub(crate) async fn end(broker: &Broker, topic: &str) -> Result<i64> {
    Ok(broker
        .list_offset_anywhere(topic, 0, fjord_broker::OffsetSpec::Latest)
        .await?
        .map_or(0, |(o, _)| o))
}

/// The key of a record of an internal topic.
pub(crate) fn key_of(r: &Record) -> Option<&str> {
    r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
}

/// Writes `key` = `value` (`None`: a tombstone); returns its offset.
pub(crate) async fn put(
    broker: &Broker,
    topic: &str,
    key: &str,
    value: Option<Bytes>,
    headers: Vec<fjord_broker::RecordHeader>,
) -> Result<i64> {
    let record = NewRecord {
        key: Some(Bytes::from(key.to_string())),
        value,
        headers,
        timestamp_ms: 0,
    };
    let r = broker
        .append_anywhere(topic, 0, vec![record], Acks::All)
        .await?;
    Ok(r.base_offset)
}
