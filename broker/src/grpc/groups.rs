//! `GroupService`: membership with coordinator-side assignment, offsets,
//! an operator's offset resets and group deletes.

use std::time::Duration;

use fjord_proto::v1 as pb;
use fjord_proto::v1::group_service_server::GroupService;
use tonic::{Request, Response, Status};

use super::status::{GrpcResult, to_status};
use crate::{Broker, OffsetCommit, OffsetResetSpec};

pub(crate) struct Groups(pub(crate) Broker);

/// Where a `ResetOffsetsRequest` moves the group.
fn reset_spec(to: i32, value: i64) -> Result<OffsetResetSpec, Status> {
    Ok(match pb::ResetTo::try_from(to) {
        Ok(pb::ResetTo::Earliest) => OffsetResetSpec::Earliest,
        Ok(pb::ResetTo::Latest) => OffsetResetSpec::Latest,
        Ok(pb::ResetTo::Offset) => OffsetResetSpec::Offset(value),
        Ok(pb::ResetTo::Timestamp) => OffsetResetSpec::Timestamp(value),
        Ok(pb::ResetTo::ShiftBy) => OffsetResetSpec::ShiftBy(value),
        Ok(pb::ResetTo::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument(
                "say where to reset to: earliest, latest, offset, timestamp or shift-by",
            ));
        }
    })
}

fn topic_partitions(assignment: Vec<(String, Vec<u32>)>) -> Vec<pb::TopicPartitions> {
    assignment
        .into_iter()
        .map(|(topic, partitions)| pb::TopicPartitions { topic, partitions })
        .collect()
}

#[tonic::async_trait]
impl GroupService for Groups {
    async fn join_group(
        &self,
        request: Request<pb::JoinGroupRequest>,
    ) -> GrpcResult<pb::JoinGroupResponse> {
        let r = request.into_inner();
        let session = Duration::from_millis(u64::from(if r.session_timeout_ms == 0 {
            10_000
        } else {
            r.session_timeout_ms.clamp(1_000, 300_000)
        }));
        let rebalance = if r.rebalance_timeout_ms == 0 {
            session
        } else {
            Duration::from_millis(u64::from(r.rebalance_timeout_ms.min(300_000)))
        };
        let outcome = self
            .0
            .groups()
            .join_group(
                &r.group_id,
                &r.member_id,
                &r.client_id,
                &r.topics,
                session,
                rebalance,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::JoinGroupResponse {
            member_id: outcome.member_id,
            generation: outcome.generation,
            assignment: topic_partitions(outcome.assignment),
            heartbeat_interval_ms: (session.as_millis() / 3) as u32,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> GrpcResult<pb::HeartbeatResponse> {
        let r = request.into_inner();
        let rebalance = self
            .0
            .groups()
            .heartbeat(&r.group_id, &r.member_id, r.generation)
            .map_err(to_status)?;
        Ok(Response::new(pb::HeartbeatResponse { rebalance }))
    }

    async fn leave_group(
        &self,
        request: Request<pb::LeaveGroupRequest>,
    ) -> GrpcResult<pb::LeaveGroupResponse> {
        let r = request.into_inner();
        self.0.groups().leave_group(&r.group_id, &r.member_id);
        Ok(Response::new(pb::LeaveGroupResponse {}))
    }

    async fn commit_offsets(
        &self,
        request: Request<pb::CommitOffsetsRequest>,
    ) -> GrpcResult<pb::CommitOffsetsResponse> {
        let r = request.into_inner();
        let commits = r
            .offsets
            .into_iter()
            .map(|o| OffsetCommit {
                topic: o.topic,
                partition: o.partition,
                offset: o.offset,
                metadata: o.metadata,
            })
            .collect();
        self.0
            .groups()
            .commit_offsets(&r.group_id, &r.member_id, r.generation, commits)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        request: Request<pb::FetchOffsetsRequest>,
    ) -> GrpcResult<pb::FetchOffsetsResponse> {
        let r = request.into_inner();
        if r.group_id.is_empty() {
            return Err(Status::invalid_argument("a group id is required"));
        }
        let wanted = (!r.partitions.is_empty()).then(|| {
            r.partitions
                .into_iter()
                .flat_map(|tp| {
                    tp.partitions
                        .into_iter()
                        .map(move |p| (tp.topic.clone(), p))
                })
                .collect()
        });
        let offsets = self
            .0
            .groups()
            .fetch_offsets(&r.group_id, wanted)
            .map_err(to_status)?
            .into_iter()
            .map(|(topic, partition, c)| pb::CommittedOffset {
                topic,
                partition,
                offset: c.as_ref().map_or(-1, |c| c.offset),
                metadata: c.as_ref().map(|c| c.metadata.clone()).unwrap_or_default(),
                commit_time_ms: c.map_or(-1, |c| c.commit_time_ms),
            })
            .collect();
        Ok(Response::new(pb::FetchOffsetsResponse { offsets }))
    }

    async fn list_groups(
        &self,
        _: Request<pb::ListGroupsRequest>,
    ) -> GrpcResult<pb::ListGroupsResponse> {
        let groups = self
            .0
            .groups()
            .list_groups()
            .into_iter()
            .map(|g| pb::GroupSummary {
                group_id: g.group_id,
                state: g.state,
                members: g.members as u32,
            })
            .collect();
        Ok(Response::new(pb::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        request: Request<pb::DescribeGroupRequest>,
    ) -> GrpcResult<pb::DescribeGroupResponse> {
        let d = self
            .0
            .groups()
            .describe_group(&request.into_inner().group_id)
            .await
            .map_err(|e| match e {
                crate::Error::InvalidRequest(m) => Status::not_found(m),
                other => to_status(other),
            })?;
        Ok(Response::new(pb::DescribeGroupResponse {
            group_id: d.group_id,
            state: d.membership.state.as_str().to_string(),
            generation: d.membership.generation,
            members: d
                .membership
                .members
                .into_iter()
                .map(|m| pb::GroupMember {
                    member_id: m.member_id,
                    client_id: m.client_id,
                    assignment: topic_partitions(m.assignment),
                })
                .collect(),
            offsets: d
                .offsets
                .into_iter()
                .map(|o| pb::PartitionLag {
                    topic: o.topic,
                    partition: o.partition,
                    committed_offset: o.committed,
                    log_end_offset: o.log_end,
                    lag: o.lag,
                })
                .collect(),
        }))
    }

    async fn reset_offsets(
        &self,
        request: Request<pb::ResetOffsetsRequest>,
    ) -> GrpcResult<pb::ResetOffsetsResponse> {
        let r = request.into_inner();
        let spec = reset_spec(r.to, r.value)?;
        let plan = self
            .0
            .groups()
            .reset_offsets(&r.group_id, &r.topic, spec, r.execute)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ResetOffsetsResponse {
            partitions: plan
                .into_iter()
                .map(|p| pb::OffsetReset {
                    topic: p.topic,
                    partition: p.partition,
                    current_offset: p.current.unwrap_or(-1),
                    new_offset: p.target,
                    clamped: p.clamped,
                })
                .collect(),
            executed: r.execute,
        }))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> GrpcResult<pb::DeleteGroupResponse> {
        let removed = self
            .0
            .groups()
            .delete_group(&request.into_inner().group_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteGroupResponse {
            offsets_removed: removed as u32,
        }))
    }
}
