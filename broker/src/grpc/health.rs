//! `HealthService`: is this node serving.

use fjord_proto::v1::health_service_server::HealthService;
use fjord_proto::v1::{HealthCheckRequest, HealthCheckResponse};
use tonic::{Request, Response};

use super::status::GrpcResult;
use crate::Broker;

pub(crate) struct Health(pub(crate) Broker);

#[tonic::async_trait]
impl HealthService for Health {
    async fn check(&self, _: Request<HealthCheckRequest>) -> GrpcResult<HealthCheckResponse> {
        Ok(Response::new(HealthCheckResponse {
            serving: self.0.readiness().is_ok(),
            node_id: self.0.node_id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }
}
