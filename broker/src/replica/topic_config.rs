//! Topic names and topic configs (Kafka's names) mapped onto `LogConfig`.
//!
//! | config | meaning | default |
//! |---|---|---|
//! | `cleanup.policy` | `delete` or `compact` | `delete` |
//! | `retention.ms` | delete segments older than this; -1 keeps forever | 604800000 (7 days) |
//! | `retention.bytes` | delete oldest segments past this size; -1 = no limit | -1 |
//! | `segment.bytes` | roll the active segment at this size | 1073741824 |
//! | `segment.ms` | roll the active segment at this age | 604800000 |
//! | `flush.messages` | `1` flushes every batch before acknowledging | node default |
//! | `flush.ms` | flush at most this many ms after an append | node default |
//! | `max.message.bytes` | largest batch accepted | 8388608 |
//! | `min.insync.replicas` | replicas needed for `acks=all` (≤ replication factor) | 1 |
//! | `unclean.leader.election.enable` | in a cluster, elect a leader outside the ISR when none in it is live (may lose acknowledged writes) | false |

use std::collections::BTreeMap;
use std::time::Duration;

use fjord_storage::{CleanupPolicy, FlushPolicy, LogConfig};

use crate::{Error, Result};

/// Every config key a topic may set.
pub const TOPIC_CONFIG_KEYS: [&str; 10] = [
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "flush.messages",
    "flush.ms",
    "max.message.bytes",
    "min.insync.replicas",
    "unclean.leader.election.enable",
];

/// Kafka's topic name rules: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
///
/// # Errors
/// `InvalidRequest` naming the rule broken.
pub(crate) fn validate_topic_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 249 {
        return Err(Error::InvalidRequest(format!(
            "topic name must be 1 to 249 characters, got {}",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(Error::InvalidRequest(format!(
            "topic name {name:?} is not allowed"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::InvalidRequest(format!(
            "topic name {name:?} has {c:?}: only ASCII letters, digits, '.', '_' and '-' are allowed"
        )));
    }
    Ok(())
}

fn number(configs: &BTreeMap<String, String>, key: &str) -> Result<Option<i64>> {
    configs
        .get(key)
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| Error::InvalidRequest(format!("config {key}={v:?} is not an integer")))
        })
        .transpose()
}

fn positive(configs: &BTreeMap<String, String>, key: &str) -> Result<Option<u64>> {
    match number(configs, key)? {
        Some(v) if v <= 0 => Err(Error::InvalidRequest(format!(
            "config {key} must be positive, got {v}"
        ))),
        other => Ok(other.map(|v| v as u64)),
    }
}

/// Checks `configs` and builds the log settings they describe.
///
/// # Errors
/// `InvalidRequest` for an unknown key or a bad value.
pub(crate) fn log_config(
    configs: &BTreeMap<String, String>,
    default_flush: FlushPolicy,
    replication_factor: u32,
) -> Result<LogConfig> {
    if let Some(key) = configs
        .keys()
        .find(|k| !TOPIC_CONFIG_KEYS.contains(&k.as_str()))
    {
        return Err(Error::InvalidRequest(format!(
            "unknown topic config {key:?} (known: {})",
            TOPIC_CONFIG_KEYS.join(", ")
        )));
    }
    let mut config = LogConfig {
        flush: default_flush,
        ..LogConfig::default()
    };
    if let Some(policy) = configs.get("cleanup.policy") {
        config.cleanup = match policy.as_str() {
            "delete" => CleanupPolicy::Delete,
            "compact" => CleanupPolicy::Compact,
            other => {
                return Err(Error::InvalidRequest(format!(
                    "cleanup.policy must be delete or compact, got {other:?}"
                )));
            }
        };
    }
    match number(configs, "retention.ms")? {
        Some(-1) => config.retention_ms = None,
        Some(ms) if ms > 0 => config.retention_ms = Some(Duration::from_millis(ms as u64)),
        Some(ms) => {
            return Err(Error::InvalidRequest(format!(
                "retention.ms must be positive or -1, got {ms}"
            )));
        }
        None => {}
    }
    match number(configs, "retention.bytes")? {
        Some(-1) => config.retention_bytes = None,
        Some(b) if b > 0 => config.retention_bytes = Some(b as u64),
        Some(b) => {
            return Err(Error::InvalidRequest(format!(
                "retention.bytes must be positive or -1, got {b}"
            )));
        }
        None => {}
    }
    if let Some(bytes) = positive(configs, "segment.bytes")? {
        if bytes < 1024 {
            return Err(Error::InvalidRequest(format!(
                "segment.bytes must be at least 1024, got {bytes}"
            )));
        }
        config.segment_bytes = bytes;
    }
    if let Some(ms) = positive(configs, "segment.ms")? {
        config.segment_ms = Some(Duration::from_millis(ms));
    }
    if let Some(bytes) = positive(configs, "max.message.bytes")? {
        config.max_batch_bytes = bytes as usize;
    }
    if let Some(n) = positive(configs, "flush.messages")? {
        config.flush = if n == 1 {
            FlushPolicy::EveryBatch
        } else {
            config.flush
        };
    }
    if let Some(ms) = positive(configs, "flush.ms")? {
        config.flush = FlushPolicy::Interval(Duration::from_millis(ms));
    }
    if let Some(n) = positive(configs, "min.insync.replicas")?
        && n > u64::from(replication_factor)
    {
        return Err(Error::InvalidRequest(format!(
            "min.insync.replicas {n} exceeds the replication factor {replication_factor}"
        )));
    }
    if let Some(v) = configs.get("unclean.leader.election.enable")
        && v != "true"
        && v != "false"
    {
        return Err(Error::InvalidRequest(format!(
            "unclean.leader.election.enable must be true or false, got {v:?}"
        )));
    }
    Ok(config)
}

/// `min.insync.replicas` of a topic (1 when unset or unreadable).
pub(crate) fn min_insync(configs: &BTreeMap<String, String>) -> usize {
    configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_follow_kafka_rules() {
        for ok in ["orders", "a.b_c-D9", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/",
            "ümlaut",
            &"x".repeat(250),
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn configs_map_to_log_settings_and_bad_ones_are_rejected() {
        let c = log_config(
            &configs(&[
                ("cleanup.policy", "compact"),
                ("retention.ms", "-1"),
                ("segment.bytes", "4096"),
                ("flush.ms", "50"),
            ]),
            FlushPolicy::EveryBatch,
            1,
        )
        .unwrap();
        assert_eq!(c.cleanup, CleanupPolicy::Compact);
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.segment_bytes, 4096);
        assert_eq!(c.flush, FlushPolicy::Interval(Duration::from_millis(50)));
        for bad in [
            configs(&[("no.such.key", "1")]),
            configs(&[("cleanup.policy", "shred")]),
            configs(&[("retention.ms", "soon")]),
            configs(&[("retention.ms", "0")]),
            configs(&[("segment.bytes", "10")]),
            configs(&[("min.insync.replicas", "2")]),
        ] {
            assert!(log_config(&bad, FlushPolicy::Os, 1).is_err(), "{bad:?}");
        }
    }
}
