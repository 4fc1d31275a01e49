//! `TopicService`: create, list, describe, delete, alter configs, add
//! partitions.

use fjord_proto::v1 as pb;
use fjord_proto::v1::topic_service_server::TopicService;
use tonic::{Request, Response};

use super::status::{GrpcResult, to_status};
use crate::{Broker, TopicDescription, TopicSpec};

pub(crate) struct Topics(pub(crate) Broker);

pub(crate) fn to_pb(d: TopicDescription, leader_address: &str) -> pb::TopicDescription {
    pb::TopicDescription {
        name: d.name,
        internal: d.internal,
        replication_factor: d.replication_factor,
        configs: d.configs.into_iter().collect(),
        partitions: d
            .partitions
            .into_iter()
            .map(|p| pb::PartitionDescription {
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas,
                isr: p.isr,
                log_start_offset: p.log_start_offset,
                high_watermark: p.high_watermark,
                log_end_offset: p.log_end_offset,
                size_bytes: p.size_bytes,
                leader_address: if p.leader_address.is_empty() {
                    leader_address.to_string()
                } else {
                    p.leader_address
                },
            })
            .collect(),
    }
}

impl Topics {
    fn address(&self) -> String {
        self.0
            .advertised_grpc()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }
}

#[tonic::async_trait]
impl TopicService for Topics {
    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> GrpcResult<pb::CreateTopicResponse> {
        let r = request.into_inner();
        let spec = TopicSpec {
            name: r.name,
            partitions: r.partitions,
            replication_factor: r.replication_factor,
            configs: r.configs.into_iter().collect(),
        };
        let d = self.0.admin().create_topic(spec).await.map_err(to_status)?;
        Ok(Response::new(pb::CreateTopicResponse {
            topic: Some(to_pb(d, &self.address())),
        }))
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> GrpcResult<pb::ListTopicsResponse> {
        let topics = self
            .0
            .admin()
            .list_topics(request.into_inner().include_internal)
            .into_iter()
            .map(|t| pb::TopicSummary {
                name: t.name,
                partitions: t.partitions.len() as u32,
                replication_factor: t.replication_factor,
                internal: t.internal,
            })
            .collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> GrpcResult<pb::DescribeTopicResponse> {
        let r = request.into_inner();
        let admin = self.0.admin();
        let d = if r.local_only {
            admin.describe_local(&r.name)
        } else {
            admin.describe_topic(&r.name).await
        }
        .map_err(to_status)?;
        Ok(Response::new(pb::DescribeTopicResponse {
            topic: Some(to_pb(d, &self.address())),
        }))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> GrpcResult<pb::DeleteTopicResponse> {
        self.0
            .admin()
            .delete_topic(&request.into_inner().name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn alter_topic_config(
        &self,
        request: Request<pb::AlterTopicConfigRequest>,
    ) -> GrpcResult<pb::AlterTopicConfigResponse> {
        let r = request.into_inner();
        let d = self
            .0
            .admin()
            .alter_topic_config(&r.name, r.set.into_iter().collect(), r.delete)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::AlterTopicConfigResponse {
            topic: Some(to_pb(d, &self.address())),
        }))
    }

    async fn create_partitions(
        &self,
        request: Request<pb::CreatePartitionsRequest>,
    ) -> GrpcResult<pb::CreatePartitionsResponse> {
        let r = request.into_inner();
        let d = self
            .0
            .admin()
            .add_partitions(&r.name, r.partitions)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreatePartitionsResponse {
            topic: Some(to_pb(d, &self.address())),
        }))
    }
}
