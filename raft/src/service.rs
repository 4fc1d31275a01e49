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
}

impl RaftRpcService {
    pub fn new(raft: Raft<TypeConfig>) -> RaftRpcService {
        RaftRpcService { raft }
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
        let result = self.raft.append_entries(decode(request)?).await;
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.vote(decode(request)?).await;
        encode(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.install_snapshot(decode(request)?).await;
        encode(&result)
    }
}
