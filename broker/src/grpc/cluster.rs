//! `ClusterService` (status, joins, heartbeats, scaling operations) and
//! `ReplicaService` (followers' fetch streams).

use std::pin::Pin;

use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_server::ClusterService;
use fjord_proto::v1::replica_service_server::ReplicaService;
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::status::{GrpcResult, to_status};
use crate::Broker;
use crate::quorum::{ControllerRedirect, JoinReply};

pub(crate) struct Cluster(pub(crate) Broker);

/// Refuses node-to-node calls from another cluster.
pub(super) fn check_cluster<T>(broker: &Broker, request: &Request<T>) -> Result<(), Status> {
    fjord_raft::check_cluster_id(broker.parts().quorum.cluster_id(), request)
}

fn redirect(to: ControllerRedirect) -> Status {
    match to {
        ControllerRedirect::Controller(addr) => {
            let mut status = Status::unavailable(format!(
                "this node is not the controller; the controller is at {addr}"
            ));
            if let Ok(v) = addr.parse() {
                status.metadata_mut().insert("fjord-leader-address", v);
            }
            status
        }
        ControllerRedirect::Unknown => {
            Status::unavailable("no controller is known (is a majority of voters up?)")
        }
    }
}

fn rack(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

#[tonic::async_trait]
impl ClusterService for Cluster {
    async fn status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> GrpcResult<pb::ClusterStatusResponse> {
        let s = self.0.admin().cluster_status();
        Ok(Response::new(pb::ClusterStatusResponse {
            cluster_id: s.cluster_id,
            controller: s.controller.unwrap_or(0),
            quorum: s.quorum,
            nodes: s
                .nodes
                .into_iter()
                .map(|n| pb::ClusterNode {
                    id: n.id,
                    address: n.address,
                    role: n.role,
                    live: n.live,
                    rack: n.rack.unwrap_or_default(),
                    leaders: n.leaders,
                    replicas: n.replicas,
                    draining: n.draining,
                })
                .collect(),
            under_replicated: s
                .under_replicated
                .into_iter()
                .map(|u| pb::UnderReplicated {
                    topic: u.topic,
                    partition: u.partition,
                    replicas: u.replicas,
                    isr: u.isr,
                    leader: u.leader.unwrap_or(0),
                })
                .collect(),
            node_id: s.node_id,
            offline_partitions: s.offline_partitions,
            partitions: s.partitions,
            reassigning: s.reassigning,
            max_voters: s.max_voters,
        }))
    }

    async fn join(
        &self,
        request: Request<pb::JoinClusterRequest>,
    ) -> GrpcResult<pb::JoinClusterResponse> {
        let r = request.into_inner();
        let outcome = self
            .0
            .parts()
            .quorum
            .handle_join(r.node_id, r.address, rack(r.rack), &r.cluster_id)
            .await
            .map_err(to_status)?;
        match outcome {
            JoinReply::Joined { voter } => Ok(Response::new(pb::JoinClusterResponse {
                cluster_id: self.0.cluster_id(),
                role: if voter { "voter" } else { "learner" }.to_string(),
            })),
            JoinReply::Redirect(to) => Err(redirect(to)),
        }
    }

    async fn heartbeat(
        &self,
        request: Request<pb::BrokerHeartbeatRequest>,
    ) -> GrpcResult<pb::BrokerHeartbeatResponse> {
        check_cluster(&self.0, &request)?;
        let r = request.into_inner();
        match self
            .0
            .parts()
            .quorum
            .handle_heartbeat(r.node_id, r.address, rack(r.rack))
            .map_err(to_status)?
        {
            Ok(fenced) => Ok(Response::new(pb::BrokerHeartbeatResponse { fenced })),
            Err(to) => Err(redirect(to)),
        }
    }

    async fn reassign(
        &self,
        request: Request<pb::ReassignRequest>,
    ) -> GrpcResult<pb::ReassignResponse> {
        let r = request.into_inner();
        self.0
            .admin()
            .reassign(&r.topic, r.partition, r.replicas)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReassignResponse {}))
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> GrpcResult<pb::DrainNodeResponse> {
        let moves = self
            .0
            .admin()
            .drain_node(request.into_inner().node_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DrainNodeResponse {
            moved: moves.len() as u32,
            moves: moves.into_iter().map(to_move).collect(),
        }))
    }

    async fn undrain_node(
        &self,
        request: Request<pb::UndrainNodeRequest>,
    ) -> GrpcResult<pb::UndrainNodeResponse> {
        self.0
            .admin()
            .undrain_node(request.into_inner().node_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UndrainNodeResponse {}))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> GrpcResult<pb::RemoveNodeResponse> {
        self.0
            .admin()
            .remove_node(request.into_inner().node_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RemoveNodeResponse {}))
    }

    async fn rebalance(
        &self,
        request: Request<pb::RebalanceRequest>,
    ) -> GrpcResult<pb::RebalanceResponse> {
        let rf = request.into_inner().replication_factor;
        let moves = self
            .0
            .admin()
            .rebalance((rf > 0).then_some(rf))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RebalanceResponse {
            moved: moves.len() as u32,
            moves: moves.into_iter().map(to_move).collect(),
        }))
    }
}

fn to_move(m: crate::PartitionMove) -> pb::PartitionMove {
    pb::PartitionMove {
        topic: m.topic,
        partition: m.partition,
        from: m.from,
        to: m.to,
    }
}

pub(crate) struct Replica(pub(crate) Broker);

type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::ReplicaFetchResponse, Status>> + Send>>;
type TunnelStream = Pin<Box<dyn Stream<Item = Result<pb::TunnelFrame, Status>> + Send>>;

#[tonic::async_trait]
impl ReplicaService for Replica {
    type FetchStream = FetchStream;
    type TunnelStream = TunnelStream;

    /// The generated service's `Fetch`. The server answers `Fetch` in
    /// `grpc::replica_fetch` (the same answers, without copying the
    /// records); this stays for a `ReplicaServiceServer` built directly.
    async fn fetch(
        &self,
        request: Request<Streaming<pb::ReplicaFetchRequest>>,
    ) -> GrpcResult<Self::FetchStream> {
        check_cluster(&self.0, &request)?;
        let mut inbound = request.into_inner();
        let broker = self.0.clone();
        let stream = async_stream::try_stream! {
            while let Some(r) = inbound.message().await? {
                yield broker.parts().replicas.answer_replica_fetch(r).await;
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn append(
        &self,
        request: Request<pb::ForwardAppendRequest>,
    ) -> GrpcResult<pb::PartitionProduceResult> {
        check_cluster(&self.0, &request)?;
        let r = request.into_inner();
        let acks = super::produce::acks(r.acks)?;
        // Forwarded by a node that does not lead the partition: appended
        // only if this one does.
        let request = crate::ProduceRequest::batch(r.topic, r.partition, r.batch).acks(acks);
        let outcome = self.0.produce(request).await;
        Ok(Response::new(super::produce::result_for(
            r.partition,
            outcome,
        )))
    }

    async fn tunnel(
        &self,
        request: Request<Streaming<pb::TunnelFrame>>,
    ) -> GrpcResult<Self::TunnelStream> {
        check_cluster(&self.0, &request)?;
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("a tunnel opens with a frame naming it"))?;
        let open = first
            .open
            .ok_or_else(|| Status::invalid_argument("a tunnel opens with a frame naming it"))?;
        let io = self
            .0
            .tunnels()
            .accept(&open)
            .map_err(super::status::to_status)?;
        Ok(Response::new(Box::pin(crate::router::pump(
            io, inbound, first.data,
        ))))
    }
}
