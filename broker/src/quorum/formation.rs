//! Forming or joining the quorum when a node starts: a node with no
//! cluster flags forms a quorum of its own (one voter) on first start;
//! `--peers` forms a fixed set; `--join` joins an existing cluster.

use std::time::{Duration, Instant};

use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use tracing::info;

use super::{Quorum, with_cluster_id};
use crate::config::Formation;
use crate::{Error, Result};

impl Quorum {
    /// Forms or joins the quorum. Call once the gRPC listener serves the
    /// Raft RPCs.
    ///
    /// # Errors
    /// `Cluster` when the join is refused (wrong cluster id, duplicate node
    /// id) or the cluster cannot be reached.
    pub(crate) async fn form(&self) -> Result<()> {
        let cluster = self;
        match &cluster.config.formation {
            Formation::Bootstrap => {
                let members = cluster.node.members();
                if members.voters.is_empty() && members.learners.is_empty() {
                    let voters = [(cluster.id, cluster.advertised.clone())].into();
                    cluster
                        .node
                        .initialize(voters)
                        .await
                        .map_err(|e| Error::Cluster(e.to_string()))?;
                }
            }
            Formation::Peers(peers) => {
                if !peers.contains_key(&cluster.id) {
                    return Err(Error::Cluster(format!(
                        "--peers does not list this node ({})",
                        cluster.id
                    )));
                }
                if peers.keys().next() == Some(&cluster.id)
                    && cluster.node.members().voters.is_empty()
                {
                    cluster
                        .node
                        .initialize(peers.clone())
                        .await
                        .map_err(|e| Error::Cluster(e.to_string()))?;
                }
            }
            Formation::Join(addr) => {
                let known = cluster.node.members();
                if !known.voters.contains_key(&cluster.id)
                    && !known.learners.contains_key(&cluster.id)
                {
                    self.join(addr).await?;
                }
            }
        }
        Ok(())
    }

    async fn join(&self, addr: &str) -> Result<()> {
        let cluster = self;
        let mut target = addr.to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let request = with_cluster_id(
                &cluster.cluster_id,
                pb::JoinClusterRequest {
                    node_id: cluster.id,
                    address: cluster.advertised.clone(),
                    rack: cluster.config.rack.clone().unwrap_or_default(),
                    cluster_id: cluster.cluster_id.clone(),
                },
            );
            let result = match cluster.channel(&target) {
                Ok(channel) => ClusterServiceClient::new(channel)
                    .join(request)
                    .await
                    .map_err(Some),
                Err(_) => Err(None),
            };
            match result {
                Ok(reply) => {
                    info!(role = %reply.into_inner().role, "joined the cluster");
                    return Ok(());
                }
                Err(Some(status))
                    if matches!(
                        status.code(),
                        tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists
                    ) =>
                {
                    return Err(Error::Cluster(format!(
                        "the cluster refused this node: {}",
                        status.message()
                    )));
                }
                Err(failure) => {
                    if let Some(status) = &failure
                        && let Some(leader) = status
                            .metadata()
                            .get("fjord-leader-address")
                            .and_then(|v| v.to_str().ok())
                    {
                        target = leader.to_string();
                    } else {
                        target = addr.to_string();
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::Cluster(format!(
                            "could not join the cluster at {addr}: {}",
                            failure.map_or("unreachable".to_string(), |s| s.message().to_string())
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
