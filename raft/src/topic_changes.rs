//! Changes to a topic that exists: its configs, and more partitions.
//!
//! Applied like every [`MetadataRequest`]: a pure function of (state,
//! command). The proposer checks configs against the topic-config rules
//! (the broker owns them) and places the new partitions; applying checks
//! only what the metadata can know (the topic exists, brokers are known,
//! the partition count is the one the proposer saw).

use std::collections::BTreeMap;

use crate::metadata::{MetadataResponse, MetadataState, PartitionState};

impl MetadataState {
    /// Sets the configs of `set` and removes those of `delete`.
    pub(crate) fn alter_topic_config(
        &mut self,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<MetadataResponse, String> {
        if let Some(both) = delete.iter().find(|k| set.contains_key(*k)) {
            return Err(format!("config {both} is both set and deleted"));
        }
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| format!("unknown topic {name}"))?;
        for key in delete {
            topic.configs.remove(key);
        }
        topic
            .configs
            .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(MetadataResponse::Applied)
    }

    /// Appends partitions `first`, `first + 1`, ... with the given replica
    /// lists; each starts led by its first replica, all replicas in sync.
    /// Refused unless the topic has exactly `first` partitions (a proposer
    /// that saw an older count must look again).
    pub(crate) fn add_partitions(
        &mut self,
        name: &str,
        first: u32,
        replicas: &[Vec<u64>],
    ) -> Result<MetadataResponse, String> {
        let count = self
            .topics
            .get(name)
            .map(|t| t.partitions.len())
            .ok_or_else(|| format!("unknown topic {name}"))?;
        if count != first as usize {
            return Err(format!(
                "topic {name} has {count} partitions now, not {first}: look again"
            ));
        }
        if replicas.is_empty() {
            return Err(format!("no partitions to add to {name}"));
        }
        let mut added = Vec::with_capacity(replicas.len());
        for (i, set) in replicas.iter().enumerate() {
            added.push(self.new_partition(name, count + i, set)?);
        }
        if let Some(topic) = self.topics.get_mut(name) {
            topic.partitions.extend(added);
        }
        Ok(MetadataResponse::Applied)
    }

    /// A new partition `name`-`index` on `set` (checked: not empty, known
    /// brokers, none twice), led by its first replica, all in sync.
    pub(crate) fn new_partition(
        &self,
        name: &str,
        index: usize,
        set: &[u64],
    ) -> Result<PartitionState, String> {
        let Some(first) = set.first() else {
            return Err(format!("partition {name}-{index} has no replicas"));
        };
        if let Some(missing) = set.iter().find(|b| !self.brokers.contains_key(b)) {
            return Err(format!(
                "partition {name}-{index}: unknown broker {missing}"
            ));
        }
        let mut unique = set.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != set.len() {
            return Err(format!("partition {name}-{index} lists a broker twice"));
        }
        Ok(PartitionState {
            replicas: set.to_vec(),
            leader: Some(*first),
            leader_epoch: 0,
            isr: set.to_vec(),
            target: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::tests::{cluster, create};
    use crate::metadata::MetadataRequest;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn configs_are_set_and_deleted_and_unknown_topics_refused() {
        let mut s = cluster(&[None]);
        create(&mut s, "t", vec![vec![1]], &[("retention.ms", "1000")]);
        let alter = |set: &[(&str, &str)], delete: &[&str]| MetadataRequest::AlterTopicConfig {
            name: "t".into(),
            set: configs(set),
            delete: delete.iter().map(|k| k.to_string()).collect(),
        };
        assert_eq!(
            s.apply(&alter(&[("segment.bytes", "4096")], &["retention.ms"])),
            MetadataResponse::Applied
        );
        assert_eq!(s.topics["t"].configs, configs(&[("segment.bytes", "4096")]));
        assert!(matches!(
            s.apply(&alter(&[("segment.bytes", "1")], &["segment.bytes"])),
            MetadataResponse::Rejected(r) if r.contains("both set and deleted")
        ));
        let unknown = MetadataRequest::AlterTopicConfig {
            name: "nope".into(),
            set: configs(&[("retention.ms", "1")]),
            delete: Vec::new(),
        };
        assert!(
            matches!(s.apply(&unknown), MetadataResponse::Rejected(r) if r.contains("unknown topic"))
        );
    }

    #[test]
    fn partitions_are_added_in_sync_led_by_their_first_replica_and_stale_counts_refused() {
        let mut s = cluster(&[None, None, None]);
        create(&mut s, "t", vec![vec![1, 2], vec![2, 3]], &[]);
        let add = |first, replicas: Vec<Vec<u64>>| MetadataRequest::AddPartitions {
            name: "t".into(),
            first,
            replicas,
        };
        assert_eq!(
            s.apply(&add(2, vec![vec![3, 1], vec![1, 2]])),
            MetadataResponse::Applied
        );
        let p = &s.topics["t"].partitions;
        assert_eq!(p.len(), 4);
        assert_eq!((p[2].leader, p[2].isr.clone()), (Some(3), vec![3, 1]));
        for (request, words) in [
            (add(2, vec![vec![1]]), "has 4 partitions now"),
            (add(4, vec![]), "no partitions"),
            (add(4, vec![vec![9]]), "unknown broker 9"),
            (add(4, vec![vec![1, 1]]), "twice"),
        ] {
            assert!(
                matches!(s.apply(&request), MetadataResponse::Rejected(r) if r.contains(words)),
                "{words}"
            );
        }
        assert_eq!(s.topics["t"].partitions.len(), 4);
        // Old logs and snapshots hold none of the new requests: JSON with
        // only the old variants still loads, and the new ones round-trip.
        let json = serde_json::to_string(&add(4, vec![vec![2]])).unwrap();
        assert_eq!(
            serde_json::from_str::<MetadataRequest>(&json).unwrap(),
            add(4, vec![vec![2]])
        );
    }
}
