//! `AmqpService`: the AMQP gateway's vhosts, exchanges, queues and bindings
//! over gRPC, for `fjord amqp`.
//!
//! The gateway starts after the gRPC listener (which the cluster needs
//! first), so the service holds a cell that `fjord serve` fills once it
//! knows: the running gateway, or why there is none. Until then calls are
//! UNAVAILABLE; without a gateway, FAILED_PRECONDITION.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use fjord_gateway_amqp::codec::reply;
use fjord_gateway_amqp::routing::Destination;
use fjord_gateway_amqp::{
    AdminError, BindingInfo, ExchangeInfo, ExchangeSpec, Gateway, QueueInfo, QueueSpec,
};
use fjord_proto::v1 as pb;
use fjord_proto::v1::amqp_service_server::{AmqpService, AmqpServiceServer};
use tonic::{Code, Request, Response, Status};

/// The running gateway, or why this node has none.
pub(crate) type GatewayCell = Arc<OnceLock<Result<Gateway, String>>>;

type GrpcResult<T> = Result<Response<T>, Status>;

struct AmqpAdmin(GatewayCell);

/// The service's routes, for `serve_grpc`.
pub(crate) fn routes(cell: GatewayCell) -> tonic::service::Routes {
    tonic::service::Routes::new(AmqpServiceServer::new(AmqpAdmin(cell)))
}

/// The one mapping from AMQP reply codes to gRPC status codes; the AMQP
/// reply text is the message.
fn to_status(e: AdminError) -> Status {
    let code = match e.code {
        // 530 NOT_ALLOWED is what a missing vhost gets in AMQP.
        reply::NOT_FOUND | reply::NOT_ALLOWED => Code::NotFound,
        reply::ACCESS_REFUSED => Code::PermissionDenied,
        reply::PRECONDITION_FAILED | reply::RESOURCE_LOCKED => Code::FailedPrecondition,
        reply::SYNTAX_ERROR | reply::COMMAND_INVALID | reply::FRAME_ERROR => Code::InvalidArgument,
        reply::NOT_IMPLEMENTED => Code::Unimplemented,
        // The gateway left this node while the call ran.
        reply::CONNECTION_FORCED => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, e.text)
}

impl AmqpAdmin {
    fn gateway(&self) -> Result<&Gateway, Status> {
        match self.0.get() {
            Some(Ok(g)) if g.runs_here() => Ok(g),
            // In a cluster one node runs the gateway: name it, so the CLI
            // can ask there.
            Some(Ok(g)) => {
                let mut status = Status::unavailable(g.elsewhere());
                if let Some((id, addr)) = g.runs_on() {
                    let md = status.metadata_mut();
                    if let Ok(v) = id.to_string().parse() {
                        md.insert("fjord-leader-id", v);
                    }
                    if let Ok(v) = addr.parse() {
                        md.insert("fjord-leader-address", v);
                    }
                }
                Err(status)
            }
            Some(Err(why)) => Err(Status::failed_precondition(why.clone())),
            None => Err(Status::unavailable(
                "the AMQP gateway is not running on this node",
            )),
        }
    }
}

/// The vhost a request names; empty means the default one.
fn vhost(v: String) -> String {
    if v.is_empty() { "/".to_string() } else { v }
}

/// Arguments in key order: a binding's stored key includes them in order,
/// so bind and unbind must give the same order.
fn arguments(map: HashMap<String, String>) -> Vec<(String, String)> {
    let mut list: Vec<_> = map.into_iter().collect();
    list.sort();
    list
}

fn destination(kind: i32, name: String) -> Result<Destination, Status> {
    match pb::AmqpDestinationKind::try_from(kind) {
        Ok(pb::AmqpDestinationKind::Queue) => Ok(Destination::Queue(name)),
        Ok(pb::AmqpDestinationKind::Exchange) => Ok(Destination::Exchange(name)),
        Ok(pb::AmqpDestinationKind::Unspecified) | Err(_) => Err(Status::invalid_argument(
            "a binding's destination must be a queue or an exchange",
        )),
    }
}

/// The vhost and binding of a bind or unbind request (two message types
/// with the same fields), or INVALID_ARGUMENT for a destination of no kind.
macro_rules! binding {
    ($request:expr) => {{
        let r = $request;
        let binding = BindingInfo {
            source: r.source,
            destination: destination(r.destination_kind, r.destination)?,
            routing_key: r.routing_key,
            arguments: arguments(r.arguments),
        };
        (vhost(r.vhost), binding)
    }};
}

fn exchange_to_pb(x: ExchangeInfo) -> pb::AmqpExchange {
    pb::AmqpExchange {
        name: x.name,
        r#type: x.kind.as_str().to_string(),
        durable: x.durable,
        auto_delete: x.auto_delete,
        internal: x.internal,
        arguments: x.arguments.into_iter().collect(),
    }
}

fn queue_to_pb(q: QueueInfo) -> pb::AmqpQueue {
    pb::AmqpQueue {
        name: q.name,
        durable: q.durable,
        exclusive: q.exclusive,
        auto_delete: q.auto_delete,
        ready: q.ready,
        unacked: q.unacked,
        consumers: q.consumers,
        arguments: q.arguments.into_iter().collect(),
    }
}

fn binding_to_pb(b: BindingInfo) -> pb::AmqpBinding {
    let (kind, destination) = match b.destination {
        Destination::Queue(q) => (pb::AmqpDestinationKind::Queue, q),
        Destination::Exchange(e) => (pb::AmqpDestinationKind::Exchange, e),
    };
    pb::AmqpBinding {
        source: b.source,
        destination_kind: kind.into(),
        destination,
        routing_key: b.routing_key,
        arguments: b.arguments.into_iter().collect(),
    }
}

#[tonic::async_trait]
impl AmqpService for AmqpAdmin {
    async fn list_vhosts(
        &self,
        _: Request<pb::ListVhostsRequest>,
    ) -> GrpcResult<pb::ListVhostsResponse> {
        let vhosts = self.gateway()?.vhosts().await.map_err(to_status)?;
        let vhosts = vhosts
            .into_iter()
            .map(|v| pb::AmqpVhost {
                name: v.name,
                exchanges: u32::try_from(v.exchanges).unwrap_or(u32::MAX),
                queues: u32::try_from(v.queues).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(pb::ListVhostsResponse { vhosts }))
    }

    async fn declare_vhost(
        &self,
        request: Request<pb::DeclareVhostRequest>,
    ) -> GrpcResult<pb::DeclareVhostResponse> {
        let name = request.into_inner().name;
        let created = self
            .gateway()?
            .declare_vhost(&name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeclareVhostResponse { created }))
    }

    async fn delete_vhost(
        &self,
        request: Request<pb::DeleteVhostRequest>,
    ) -> GrpcResult<pb::DeleteVhostResponse> {
        let name = request.into_inner().name;
        let queues_deleted = self
            .gateway()?
            .delete_vhost(&name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteVhostResponse { queues_deleted }))
    }

    async fn list_exchanges(
        &self,
        request: Request<pb::ListExchangesRequest>,
    ) -> GrpcResult<pb::ListExchangesResponse> {
        let v = vhost(request.into_inner().vhost);
        let list = self.gateway()?.exchanges(&v).await.map_err(to_status)?;
        Ok(Response::new(pb::ListExchangesResponse {
            exchanges: list.into_iter().map(exchange_to_pb).collect(),
        }))
    }

    async fn declare_exchange(
        &self,
        request: Request<pb::DeclareExchangeRequest>,
    ) -> GrpcResult<pb::DeclareExchangeResponse> {
        let r = request.into_inner();
        let spec = ExchangeSpec {
            kind: r.r#type,
            durable: r.durable,
            auto_delete: r.auto_delete,
            internal: r.internal,
            alternate_exchange: r.alternate_exchange,
        };
        self.gateway()?
            .declare_exchange(&vhost(r.vhost), &r.name, &spec)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeclareExchangeResponse {}))
    }

    async fn delete_exchange(
        &self,
        request: Request<pb::DeleteExchangeRequest>,
    ) -> GrpcResult<pb::DeleteExchangeResponse> {
        let r = request.into_inner();
        self.gateway()?
            .delete_exchange(&vhost(r.vhost), &r.name, r.if_unused)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteExchangeResponse {}))
    }

    async fn list_queues(
        &self,
        request: Request<pb::ListQueuesRequest>,
    ) -> GrpcResult<pb::ListQueuesResponse> {
        let v = vhost(request.into_inner().vhost);
        let list = self.gateway()?.queues(&v).await.map_err(to_status)?;
        Ok(Response::new(pb::ListQueuesResponse {
            queues: list.into_iter().map(queue_to_pb).collect(),
        }))
    }

    async fn declare_queue(
        &self,
        request: Request<pb::DeclareQueueRequest>,
    ) -> GrpcResult<pb::DeclareQueueResponse> {
        let r = request.into_inner();
        let spec = QueueSpec {
            durable: r.durable,
            auto_delete: r.auto_delete,
            arguments: arguments(r.arguments),
        };
        let (messages, consumers) = self
            .gateway()?
            .declare_queue(&vhost(r.vhost), &r.name, &spec)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeclareQueueResponse {
            messages,
            consumers,
        }))
    }

    async fn delete_queue(
        &self,
        request: Request<pb::DeleteQueueRequest>,
    ) -> GrpcResult<pb::DeleteQueueResponse> {
        let r = request.into_inner();
        let messages = self
            .gateway()?
            .delete_queue(&vhost(r.vhost), &r.name, r.if_unused, r.if_empty)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteQueueResponse { messages }))
    }

    async fn list_bindings(
        &self,
        request: Request<pb::ListBindingsRequest>,
    ) -> GrpcResult<pb::ListBindingsResponse> {
        let v = vhost(request.into_inner().vhost);
        let list = self.gateway()?.bindings(&v).await.map_err(to_status)?;
        Ok(Response::new(pb::ListBindingsResponse {
            bindings: list.into_iter().map(binding_to_pb).collect(),
        }))
    }

    async fn bind(
        &self,
        request: Request<pb::AmqpBindRequest>,
    ) -> GrpcResult<pb::AmqpBindResponse> {
        let (vhost, binding) = binding!(request.into_inner());
        self.gateway()?
            .bind(&vhost, &binding)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::AmqpBindResponse {}))
    }

    async fn unbind(
        &self,
        request: Request<pb::AmqpUnbindRequest>,
    ) -> GrpcResult<pb::AmqpUnbindResponse> {
        let (vhost, binding) = binding!(request.into_inner());
        self.gateway()?
            .unbind(&vhost, &binding)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::AmqpUnbindResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_map_to_statuses_with_the_reply_text() {
        for (code, want) in [
            (404, Code::NotFound),
            (530, Code::NotFound),
            (403, Code::PermissionDenied),
            (405, Code::FailedPrecondition),
            (406, Code::FailedPrecondition),
            (503, Code::InvalidArgument),
            (541, Code::Internal),
        ] {
            let s = to_status(AdminError {
                code,
                text: format!("reply {code}"),
            });
            assert_eq!(s.code(), want, "{code}");
            assert_eq!(s.message(), format!("reply {code}"));
        }
    }

    #[tokio::test]
    async fn calls_wait_for_the_gateway_and_fail_without_one() {
        let cell = GatewayCell::default();
        let admin = AmqpAdmin(Arc::clone(&cell));
        let unavailable = admin
            .list_vhosts(Request::new(pb::ListVhostsRequest {}))
            .await
            .map(|_| ())
            .expect_err("no gateway yet");
        assert_eq!(unavailable.code(), Code::Unavailable);
        let _ = cell.set(Err("the AMQP gateway is off on this node".into()));
        let off = admin
            .list_vhosts(Request::new(pb::ListVhostsRequest {}))
            .await
            .map(|_| ())
            .expect_err("gateway off");
        assert_eq!(off.code(), Code::FailedPrecondition);
        assert!(off.message().contains("off"), "{}", off.message());
    }
}
