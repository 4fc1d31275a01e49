//! A topic as the metadata describes it, with each partition's figures
//! (log start, high watermark, log end, size) as its leader knows them:
//! this node's own for the partitions it leads, asked of the other
//! leaders (one request per node) for the rest.

use std::collections::BTreeMap;
use std::time::Duration;

use fjord_proto::v1 as pb;
use fjord_proto::v1::topic_service_client::TopicServiceClient;

use super::Admin;
use crate::api::{PartitionInfo, TopicDescription};
use crate::{Error, Result};

/// How long asking another leader for its figures may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

impl Admin {
    /// The topic, with every partition's figures as its leader knows
    /// them (-1 where the leader could not be asked).
    ///
    /// # Errors
    /// `UnknownTopic`.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let mut d = self.describe_local(name)?;
        let me = u32::try_from(self.quorum.id).unwrap_or(u32::MAX);
        // Partitions led elsewhere, by their leader's address.
        let mut elsewhere: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, p) in d.partitions.iter_mut().enumerate() {
            if p.leader == me {
                continue;
            }
            (
                p.log_start_offset,
                p.high_watermark,
                p.log_end_offset,
                p.size_bytes,
            ) = (-1, -1, -1, 0);
            if p.leader != 0 && !p.leader_address.is_empty() {
                elsewhere
                    .entry(p.leader_address.clone())
                    .or_default()
                    .push(i);
            }
        }
        for (addr, indexes) in elsewhere {
            let Ok(theirs) = self.ask_figures(&addr, name).await else {
                continue;
            };
            for i in indexes {
                let ours = &mut d.partitions[i];
                if let Some(t) = theirs
                    .partitions
                    .iter()
                    .find(|t| t.partition == ours.partition && t.high_watermark >= 0)
                {
                    ours.log_start_offset = t.log_start_offset;
                    ours.high_watermark = t.high_watermark;
                    ours.log_end_offset = t.log_end_offset;
                    ours.size_bytes = t.size_bytes;
                }
            }
        }
        Ok(d)
    }

    /// A node's own figures of its replicas of `topic`.
    async fn ask_figures(&self, addr: &str, topic: &str) -> Result<pb::TopicDescription> {
        let mut client = TopicServiceClient::new(self.quorum.channel(addr)?);
        let mut request = tonic::Request::new(pb::DescribeTopicRequest {
            name: topic.to_string(),
            local_only: true,
        });
        request.set_timeout(ASK_TIMEOUT);
        let answer = client.describe_topic(request).await.map_err(|status| {
            Error::Cluster(format!("asking {addr} for {topic}: {}", status.message()))
        })?;
        answer
            .into_inner()
            .topic
            .ok_or_else(|| Error::Cluster(format!("{addr} described no topic {topic}")))
    }

    /// The topic with this node's own figures of its replicas (-1 for the
    /// partitions it holds none of).
    ///
    /// # Errors
    /// `UnknownTopic`.
    pub fn describe_local(&self, name: &str) -> Result<TopicDescription> {
        let topic = self
            .quorum
            .read(|s| s.topics.get(name).cloned())
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        let partitions = topic
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (log_start_offset, high_watermark, log_end_offset, size_bytes) = self
                    .replicas
                    .figures(name, i as u32)
                    .unwrap_or((-1, -1, -1, 0));
                PartitionInfo {
                    partition: i as u32,
                    leader: p.leader.unwrap_or(0) as u32,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.iter().map(|r| *r as u32).collect(),
                    isr: p.isr.iter().map(|r| *r as u32).collect(),
                    leader_address: p
                        .leader
                        .and_then(|l| self.quorum.broker_addr(l))
                        .unwrap_or_default(),
                    log_start_offset,
                    high_watermark,
                    log_end_offset,
                    size_bytes,
                }
            })
            .collect();
        let replication_factor = topic
            .partitions
            .first()
            .map_or(0, |p| p.target.as_ref().unwrap_or(&p.replicas).len() as u32);
        Ok(TopicDescription {
            name: name.to_string(),
            internal: name.starts_with("__"),
            replication_factor,
            configs: topic.configs.clone(),
            partitions,
        })
    }
}
