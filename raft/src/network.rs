//! Raft RPCs to other nodes over gRPC (`fjord.raft.v1.RaftService`).
//!
//! One [`GrpcConnection`] per target node, connecting lazily and again after
//! a failure. A call that cannot reach its target is `Unreachable` (openraft
//! backs off); an error the target's Raft returned comes back as
//! `RemoteError`.

use std::time::Duration;

use fjord_proto::raft::v1::RaftPayload;
use fjord_proto::raft::v1::raft_service_client::RaftServiceClient;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::types::TypeConfig;

type RpcResult<T, E = RaftError<u64>> = Result<T, RPCError<u64, BasicNode, E>>;

/// The gRPC metadata key naming the sender's cluster on node-to-node calls.
pub const CLUSTER_ID_HEADER: &str = "fjord-cluster-id";

/// Makes a connection per target node; every call names `cluster_id` (when
/// not empty) so a node of another cluster refuses it.
#[derive(Debug, Clone, Default)]
pub struct GrpcNetwork {
    pub cluster_id: String,
    /// Source address of connections to other nodes (`None`: the OS picks).
    pub local_address: Option<std::net::IpAddr>,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcConnection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        GrpcConnection {
            target,
            node: node.clone(),
            client: None,
            cluster_id: self.cluster_id.clone(),
            local_address: self.local_address,
        }
    }
}

/// Raft RPCs to one node.
#[derive(Debug)]
pub struct GrpcConnection {
    target: u64,
    node: BasicNode,
    client: Option<RaftServiceClient<Channel>>,
    cluster_id: String,
    local_address: Option<std::net::IpAddr>,
}

#[derive(Clone, Copy)]
enum Call {
    Append,
    Vote,
    Snapshot,
}

impl GrpcConnection {
    async fn client<E: std::error::Error>(&mut self) -> RpcResult<RaftServiceClient<Channel>, E> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let url = format!("http://{}", self.node.addr);
        let endpoint =
            Endpoint::from_shared(url).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let channel = endpoint
            .local_address(self.local_address)
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let client = RaftServiceClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn call<Req, Resp, E>(
        &mut self,
        call: Call,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let json =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self.client().await?;
        let mut payload = tonic::Request::new(RaftPayload { json: json.into() });
        if let Ok(value) = self.cluster_id.parse() {
            payload.metadata_mut().insert(CLUSTER_ID_HEADER, value);
        }
        let sent = async {
            match call {
                Call::Append => client.append_entries(payload).await,
                Call::Vote => client.vote(payload).await,
                Call::Snapshot => client.install_snapshot(payload).await,
            }
        };
        let response = match tokio::time::timeout(option.hard_ttl(), sent).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                self.client = None;
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
        };
        let result: Result<Resp, E> = serde_json::from_slice(&response.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

/// The first wait before trying an unreachable node again, doubled on
/// each failure up to [`BACKOFF_MAX`]; a call that gets through resets it.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);

/// The longest wait between tries of an unreachable node: a node that
/// comes back is reached again within this long, before its election
/// timer runs out.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl RaftNetwork<TypeConfig> for GrpcConnection {
    /// Doubling up to [`BACKOFF_MAX`], not openraft's constant 500 ms: a
    /// dead node costs the leader one connection attempt (and log line) a
    /// second, not two.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::successors(Some(BACKOFF_FIRST), |d| {
            Some((*d * 2).min(BACKOFF_MAX))
        }))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.call(Call::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        self.call(Call::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        self.call(Call::Vote, &rpc, &option).await
    }
}
