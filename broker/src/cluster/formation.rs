//! Forming or joining the quorum when a node starts: a node with no
//! cluster flags forms a quorum of its own (one voter) on first start;
//! `--peers` forms a fixed set; `--join` joins an existing cluster. A
//! previous release's single-node data directory is migrated here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use fjord_raft::MetadataRequest;
use tracing::{info, warn};

use super::loops::register_if_needed;
use super::{Cluster, Formation, wait_applied, with_cluster_id};
use crate::broker::Broker;
use crate::legacy;
use crate::topic::scan_marks;
use crate::{Error, Result};

/// How long a start waits for the node to lead what it leads.
const SETTLE_WAIT: Duration = Duration::from_secs(15);

/// How long the migration waits for a proposal to be applied here.
const PROPOSE_WAIT: Duration = Duration::from_secs(5);

impl Broker {
    /// Forms or joins the quorum, then starts the cluster's background
    /// loops: heartbeats, the controller, applying metadata to partitions,
    /// and ISR checks. Call once the gRPC listener serves the Raft RPCs.
    ///
    /// # Errors
    /// `Cluster` when the join is refused (wrong cluster id, duplicate node
    /// id) or the cluster cannot be reached.
    pub async fn start_cluster(&self) -> Result<()> {
        let cluster = Arc::clone(self.cluster());
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
                    self.join(&cluster, addr).await?;
                }
            }
        }
        self.migrate_single_node(&cluster).await?;
        self.spawn_cluster_loops(&cluster);
        self.await_settled(&cluster).await;
        Ok(())
    }

    /// Waits (a bounded time) until this node is registered and leads what
    /// the metadata says it leads, serving reads: a node that restarts
    /// announces itself ready to clients only then.
    async fn await_settled(&self, cluster: &Cluster) {
        let deadline = Instant::now() + SETTLE_WAIT;
        while !self.settled(cluster) {
            if Instant::now() >= deadline {
                warn!(
                    "the node is not settled after {SETTLE_WAIT:?} (is a majority of voters up?); serving anyway"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn settled(&self, cluster: &Cluster) -> bool {
        if !cluster.node.has_quorum() {
            return false;
        }
        let me = cluster.id;
        let leads: Vec<(String, u32)> = cluster
            .node
            .read_state(|s| {
                if s.brokers.get(&me).is_none_or(|b| b.fenced) {
                    return None;
                }
                Some(
                    s.topics
                        .iter()
                        .flat_map(|(name, t)| {
                            t.partitions
                                .iter()
                                .enumerate()
                                .filter(|(_, p)| p.leader == Some(me))
                                .map(|(i, _)| (name.clone(), i as u32))
                        })
                        .collect(),
                )
            })
            .unwrap_or_else(|| vec![(String::new(), u32::MAX)]);
        leads
            .iter()
            .all(|(t, p)| self.partition(t, *p).is_ok_and(|p| p.serves_reads()))
    }

    /// Proposes a previous release's single-node stores (topics with this
    /// node as their only replica, users as they were) into the quorum this
    /// node now leads alone, marks the topics' directories, and removes the
    /// old files (see `legacy.rs`).
    ///
    /// # Errors
    /// `NoQuorum` or `Cluster` when a proposal fails (the files stay, and
    /// the next start migrates again); `Metadata` for file errors.
    async fn migrate_single_node(&self, cluster: &Cluster) -> Result<()> {
        let stores = self
            .inner
            .legacy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(stores) = stores else {
            return Ok(());
        };
        info!(
            topics = stores.topics.len(),
            users = stores.users.len(),
            "moving a single node's topics and users into its metadata quorum"
        );
        let me = cluster.id;
        register_if_needed(
            cluster,
            me,
            &cluster.advertised,
            cluster.config.rack.clone(),
        )
        .await;
        wait_applied(cluster, PROPOSE_WAIT, |s| s.brokers.contains_key(&me)).await;
        let dir = &self.inner.config.data_dir;
        for topic in &stores.topics {
            let known = cluster
                .node
                .read_state(|s| s.topics.get(&topic.name).map(|t| t.id));
            let id = match known {
                Some(id) => id,
                None => {
                    let request = MetadataRequest::CreateTopic {
                        name: topic.name.clone(),
                        configs: topic.configs.clone(),
                        replicas: vec![vec![me]; topic.partitions as usize],
                    };
                    cluster.propose(request).await?;
                    wait_applied(cluster, PROPOSE_WAIT, |s| {
                        s.topics.contains_key(&topic.name)
                    })
                    .await;
                    cluster
                        .node
                        .read_state(|s| s.topics.get(&topic.name).map(|t| t.id))
                        .ok_or_else(|| {
                            Error::Cluster(format!("topic {} was not created", topic.name))
                        })?
                }
            };
            legacy::mark_replicas(dir, topic, id)?;
        }
        self.inner
            .unopened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(scan_marks(dir)?);
        for user in stores.users {
            self.store_user(user).await?;
        }
        legacy::remove(dir, legacy::TOPICS_FILE)?;
        legacy::remove(dir, legacy::USERS_FILE)?;
        info!("the single node's topics and users are in its metadata quorum");
        Ok(())
    }

    async fn join(&self, cluster: &Cluster, addr: &str) -> Result<()> {
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
