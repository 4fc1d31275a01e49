//! Which log topic and partition an MQTT topic's messages go to.
//!
//! Rules are `(MQTT topic filter, log topic)` pairs tried in order; the
//! first whose filter matches the MQTT topic wins, else the default topic.
//! The partition is murmur2 of the MQTT topic name, so every message of one
//! MQTT topic lands in one partition, in order, and a Kafka-style consumer
//! keyed by topic sees the same split.

use fjord_broker::partition_for_key;

use crate::topic;

#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    rules: Vec<(String, String)>,
    default: String,
}

impl Mapping {
    pub(crate) fn new(rules: Vec<(String, String)>, default: String) -> Mapping {
        Mapping { rules, default }
    }

    /// The log topic of `mqtt_topic`.
    pub(crate) fn log_topic(&self, mqtt_topic: &str) -> &str {
        self.rules
            .iter()
            .find(|(filter, _)| topic::matches(filter, mqtt_topic))
            .map_or(self.default.as_str(), |(_, t)| t.as_str())
    }

    /// Every log topic a message may go to.
    pub(crate) fn log_topics(&self) -> Vec<String> {
        let mut all: Vec<String> = self.rules.iter().map(|(_, t)| t.clone()).collect();
        all.push(self.default.clone());
        all.sort();
        all.dedup();
        all
    }
}

/// The partition of `mqtt_topic` in a log topic of `partitions`.
pub(crate) fn partition_of(mqtt_topic: &str, partitions: u32) -> u32 {
    partition_for_key(mqtt_topic.as_bytes(), partitions.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins_else_the_default() {
        let m = Mapping::new(
            vec![
                ("sensors/#".into(), "sensors".into()),
                ("sensors/secret/#".into(), "never".into()),
                ("+/alarm".into(), "alarms".into()),
            ],
            "mqtt".into(),
        );
        assert_eq!(m.log_topic("sensors/secret/x"), "sensors");
        assert_eq!(m.log_topic("door/alarm"), "alarms");
        assert_eq!(m.log_topic("door/open"), "mqtt");
        assert_eq!(m.log_topics(), vec!["alarms", "mqtt", "never", "sensors"]);
        assert_eq!(partition_of("a/b", 4), partition_of("a/b", 4));
        assert!(partition_of("a/b", 4) < 4);
    }
}
