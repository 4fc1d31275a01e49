//! The gateway's compacted internal topics: `__mqtt_sessions` (durable
//! session state, key = client id) and `__mqtt_retained` (retained
//! messages, key = MQTT topic). Both are read whole at start and written
//! with `acks=all`; a tombstone (null value) deletes a key.

use bytes::Bytes;
use fjord_broker::{Broker, NewRecord, OffsetSpec, ProduceRequest, Record, Route, TopicSpec};

use crate::{Error, Result};

pub(crate) const SESSIONS_TOPIC: &str = "__mqtt_sessions";
pub(crate) const RETAINED_TOPIC: &str = "__mqtt_retained";

/// Creates `name` (compacted, one partition) unless it exists.
pub(crate) async fn ensure_compacted(broker: &Broker, name: &str) -> Result<()> {
    if broker.admin().partition_count(name).is_ok() {
        return Ok(());
    }
    let mut spec = TopicSpec::new(name, 1);
    // The cluster's default (every node's copy counts on one node).
    spec.replication_factor = 0;
    spec.configs
        .insert("cleanup.policy".into(), "compact".into());
    spec.configs
        .insert("segment.bytes".into(), (64u64 << 20).to_string());
    match broker.admin().create_internal_topic(spec).await {
        Ok(_) | Err(fjord_broker::Error::TopicExists(_)) => Ok(()),
        Err(e) => Err(Error::Broker(e)),
    }
}

/// Every record of `topic`-`partition` from `from` up to `to` (or its
/// current end).
pub(crate) async fn read_range(
    broker: &Broker,
    topic: &str,
    partition: u32,
    from: i64,
    to: Option<i64>,
) -> Result<Vec<Record>> {
    Ok(broker.tail(topic, partition, from).read_to(to).await?)
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
        .list_offset(topic, 0, OffsetSpec::Latest, Route::Leader)
        .await?
        .map_or(0, |(o, _)| o))
}

/// The log end of a one-partition internal topic on its leader: past its
/// end, the records the leader holds and has not committed yet (a
/// failover's last writes, which commit once the new leader's followers
/// catch up).
pub(crate) async fn log_end(broker: &Broker, topic: &str) -> Result<i64> {
    Ok(broker
        .list_offset(topic, 0, OffsetSpec::LogEnd, Route::Leader)
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
        .produce(ProduceRequest::records(topic, Some(0), vec![record]))
        .await?;
    Ok(r.base_offset)
}
