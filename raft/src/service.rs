//! The server side of the Raft RPCs: hands each request to this node's Raft.

use fjord_proto::raft::v1::RaftPayload;
use fjord_proto::raft::v1::raft_service_server::RaftService;
use openraft::Raft;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use crate::types::TypeConfig;

/// `RaftService` over a node's [`Raft`].
#[derive(Clone)]
pub struct RaftRpcService {
    raft: Raft<TypeConfig>,
    cluster_id: String,
}

impl RaftRpcService {
    pub fn new(raft: Raft<TypeConfig>) -> RaftRpcService {
        RaftRpcService {
            raft,
            cluster_id: String::new(),
        }
    }

    /// Refuses calls that name another cluster (when `cluster_id` is not
    /// empty).
    pub fn with_cluster_id(mut self, cluster_id: impl Into<String>) -> RaftRpcService {
        self.cluster_id = cluster_id.into();
        self
    }

    fn decode<T: DeserializeOwned>(&self, request: Request<RaftPayload>) -> Result<T, Status> {
        check_cluster_id(&self.cluster_id, &request)?;
        decode(request)
    }
}

/// Refuses a node-to-node call whose `fjord-cluster-id` names another
/// cluster than `ours` (an empty `ours` accepts any).
///
/// # Errors
/// `FAILED_PRECONDITION` naming both ids.
pub fn check_cluster_id<T>(ours: &str, request: &Request<T>) -> Result<(), Status> {
    if ours.is_empty() {
        return Ok(());
    }
    let theirs = request
        .metadata()
        .get(crate::network::CLUSTER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if theirs == ours {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "wrong cluster id: this node belongs to cluster {ours:?}, the caller to {theirs:?}"
        )))
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("not a Raft message: {e}")))
}

fn encode<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    let json = serde_json::to_vec(result)
        .map_err(|e| Status::internal(format!("encode Raft reply: {e}")))?;
    Ok(Response::new(RaftPayload { json: json.into() }))
}

#[tonic::async_trait]
impl RaftService for RaftRpcService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.append_entries(self.decode(request)?).await;
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.vote(self.decode(request)?).await;
        encode(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.install_snapshot(self.decode(request)?).await;
        encode(&result)
    }
}
