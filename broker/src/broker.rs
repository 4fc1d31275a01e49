//! The [`Broker`] handle: the one way into a node's broker. It opens the
//! data directory, starts the parts, and gives each caller one verb per
//! concept: [`Broker::produce`], [`Broker::fetch`], [`Broker::list_offset`]
//! and [`Broker::tail`] (each going where its [`Route`] says), and the
//! parts for the rest ([`Broker::admin`], [`Broker::groups`],
//! [`Broker::tunnels`]).
//!
//! # Concurrency
//! `Broker` is an `Arc` around the parts; clone it freely. Background tasks
//! are owned by one `TaskTracker` and stop on [`Broker::shutdown`].

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admin::{Admin, legacy};
use crate::api::{
    FetchRequest, FetchResult, Leader, OffsetSpec, ProduceRequest, ProduceResult, Route, TopicSpec,
};
use crate::config::BrokerConfig;
use crate::coordinator::{CoordinatorSettings, GroupCoordinator};
use crate::metrics::{Gauges, Metrics};
use crate::quorum::{Quorum, has_identity};
use crate::replica::{ReplicaManager, ReplicaSettings};
use crate::router::{Router, Tail, Tunnels};
use crate::{Error, Result};

/// How long a shutdown waits for the background tasks to stop.
const TASKS_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a shutdown waits for the Raft node to stop.
const RAFT_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The broker's parts, each with one way in.
pub(crate) struct Parts {
    config: BrokerConfig,
    pub(crate) quorum: Arc<Quorum>,
    pub(crate) replicas: Arc<ReplicaManager>,
    pub(crate) router: Arc<Router>,
    pub(crate) admin: Arc<Admin>,
    pub(crate) groups: Arc<GroupCoordinator>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    closed: AtomicBool,
    _lock: File,
}

/// The in-process broker handle; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Parts>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("data_dir", &self.inner.config.data_dir)
            .field("node_id", &self.inner.config.node_id)
            .finish_non_exhaustive()
    }
}

/// Locks the data directory for this process.
fn lock_data_dir(config: &BrokerConfig) -> Result<File> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Metadata(format!("create data directory {}: {e}", dir.display())))?;
    let lock_path = dir.join(".lock");
    let lock = File::create(&lock_path)
        .map_err(|e| Error::Metadata(format!("create {}: {e}", lock_path.display())))?;
    lock.try_lock().map_err(|_| {
        Error::Metadata(format!(
            "data directory {} is in use by another fjord process",
            dir.display()
        ))
    })?;
    Ok(lock)
}

impl Broker {
    /// Opens the data directory and this node's Raft, and builds the
    /// parts. Replicas open once the metadata says this node holds them;
    /// call [`Broker::start`] next, once the gRPC listener serves the
    /// node-to-node RPCs.
    ///
    /// # Errors
    /// `Metadata` when the directory cannot be created or locked (another
    /// broker uses it) or a previous release's `topics.json` or
    /// `users.json` is unreadable; `Cluster` for an identity that does not
    /// match the data directory.
    pub async fn open(config: BrokerConfig) -> Result<Broker> {
        let lock = lock_data_dir(&config)?;
        let dir = config.data_dir.clone();
        let legacy = legacy::open(&dir, has_identity(&dir)?)?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let metrics = Arc::new(Metrics::default());
        let advertised = config
            .advertised_grpc
            .map(|a| a.to_string())
            .unwrap_or_default();
        let quorum = Arc::new(
            Quorum::open(
                &dir,
                u64::from(config.node_id),
                advertised,
                config.cluster.clone(),
                tracker.clone(),
                shutdown.clone(),
            )
            .await?,
        );
        let replicas = ReplicaManager::open(
            Arc::clone(&quorum),
            ReplicaSettings {
                data_dir: dir.clone(),
                default_flush: config.default_flush,
                retention_check_interval: config.retention_check_interval,
            },
            Arc::clone(&metrics),
            shutdown.clone(),
            tracker.clone(),
        )?;
        let router = Arc::new(Router::new(Arc::clone(&quorum), Arc::clone(&replicas)));
        let admin = Arc::new(Admin::new(
            Arc::clone(&quorum),
            Arc::clone(&replicas),
            config.default_flush,
            dir.clone(),
            legacy,
        ));
        let groups = GroupCoordinator::start(
            (
                Arc::clone(&quorum),
                Arc::clone(&replicas),
                Arc::clone(&router),
                Arc::clone(&admin),
            ),
            Arc::clone(&metrics),
            CoordinatorSettings {
                data_dir: dir.clone(),
                offsets_topic_partitions: config.offsets_topic_partitions,
            },
            &tracker,
            &shutdown,
        );
        info!(data_dir = %dir.display(), "broker open");
        Ok(Broker {
            inner: Arc::new(Parts {
                config,
                quorum,
                replicas,
                router,
                admin,
                groups,
                metrics,
                shutdown,
                tracker,
                closed: AtomicBool::new(false),
                _lock: lock,
            }),
        })
    }

    /// Forms or joins the cluster (a node alone forms its own), migrates a
    /// previous release's single-node stores, starts the background work,
    /// and waits (a bounded time) until this node leads what it should.
    ///
    /// # Errors
    /// `Cluster` when a join is refused or the cluster cannot be reached;
    /// `NoQuorum`/`Metadata` when a migration cannot be done.
    pub async fn start(&self) -> Result<()> {
        let parts = &self.inner;
        parts.quorum.form().await?;
        parts.admin.migrate_single_node().await?;
        parts.quorum.spawn_loops(&parts.tracker, &parts.shutdown);
        parts.replicas.spawn_loops();
        parts.replicas.await_settled().await;
        Ok(())
    }

    pub(crate) fn parts(&self) -> &Parts {
        &self.inner
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Appends one batch (or records the broker batches) where the
    /// request's route says; creates the topic first when it is unknown
    /// and the node auto-creates topics.
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; `InvalidRequest`, `InvalidBatch`
    /// (nothing appended); `NotLeader`, `NotEnoughReplicas`, `Timeout`;
    /// `Storage` (e.g. disk full: nothing partial is visible, and later
    /// appends work once space frees); `ShuttingDown`.
    pub async fn produce(&self, request: ProduceRequest) -> Result<ProduceResult> {
        self.check_open()?;
        let auto_create = self.inner.config.auto_create_topics && !request.topic.starts_with("__");
        if auto_create && self.inner.quorum.partition_count(&request.topic).is_err() {
            let mut spec = TopicSpec::new(
                request.topic.clone(),
                self.inner.config.default_partitions.max(1),
            );
            spec.replication_factor = 0;
            match self.inner.admin.create_topic(spec).await {
                Ok(_) | Err(Error::TopicExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.inner.router.produce(request).await
    }

    /// Reads whole batches below the high watermark where the request's
    /// route says, waiting up to `max_wait` for `min_bytes`.
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; `NotLeader`, `LeaderNotReady`;
    /// `OffsetOutOfRange` with the earliest offset and the high watermark;
    /// `Storage`; `Cluster` when the leader could not be reached.
    ///
    /// # Cancel safety
    /// Safe: a fetch only reads.
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResult> {
        self.check_open()?;
        self.inner.router.fetch(&request).await
    }

    /// `(offset, timestamp)`: Earliest → log start, Latest → high
    /// watermark, Timestamp → the first record at or after it (`None` if
    /// there is none), where `route` says.
    ///
    /// # Errors
    /// As [`Broker::fetch`].
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
        route: Route,
    ) -> Result<Option<(i64, i64)>> {
        self.check_open()?;
        self.inner
            .router
            .list_offset(topic, partition, spec, route)
            .await
    }

    /// Follows `topic`-`partition` from offset `from`, on its leader
    /// wherever it is (see [`Tail`]).
    pub fn tail(&self, topic: &str, partition: u32, from: i64) -> Tail {
        Tail::new(Arc::clone(&self.inner.router), topic, partition, from)
    }

    /// Who leads `topic`-`partition`.
    pub fn leader_of(&self, topic: &str, partition: u32) -> Leader {
        self.inner.router.leader_of(topic, partition)
    }

    /// Topics, users and cluster operations.
    pub fn admin(&self) -> &Admin {
        &self.inner.admin
    }

    /// Consumer groups, committed offsets and producer ids.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.inner.groups
    }

    /// Client connections carried to the node that runs a gateway.
    pub fn tunnels(&self) -> &Tunnels {
        self.inner.router.tunnels()
    }

    pub fn node_id(&self) -> u32 {
        self.inner.config.node_id
    }

    pub fn cluster_id(&self) -> String {
        self.inner.quorum.cluster_id().to_string()
    }

    /// Whether node `node` is live: registered and not fenced (a node
    /// silent for a session timeout is fenced by the controller).
    pub fn is_live(&self, node: u32) -> bool {
        self.inner
            .quorum
            .liveness()
            .get(&u64::from(node))
            .copied()
            .unwrap_or(false)
    }

    /// The gRPC address clients are told to use for this node.
    pub fn advertised_grpc(&self) -> Option<std::net::SocketAddr> {
        self.inner.config.advertised_grpc
    }

    /// `Ok` while the node serves: open, and the metadata quorum has a
    /// leader it can reach; else why not.
    ///
    /// # Errors
    /// Why the node is not ready, in words.
    pub fn readiness(&self) -> std::result::Result<(), &'static str> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err("shutting down")
        } else if !self.inner.quorum.has_quorum() {
            Err("no metadata quorum: metadata cannot change (is a majority of voters up?)")
        } else {
            Ok(())
        }
    }

    /// Prometheus text exposition of the broker's metrics.
    pub fn render_metrics(&self) -> String {
        let (topics, partitions, log_size_bytes) = self.inner.replicas.counts();
        let (groups, group_members) = self.inner.groups.counts();
        self.inner.metrics.render(&Gauges {
            topics,
            partitions,
            log_size_bytes,
            groups,
            group_members,
        })
    }

    /// Hands leadership away (when another node can take it), stops the
    /// background work and the Raft node, and flushes every replica.
    /// Each step is bounded, so a node without a metadata quorum stops
    /// within seconds too; what a step gave up on is said once, in one
    /// warning. Idempotent.
    pub async fn shutdown(&self) {
        let parts = &self.inner;
        if parts.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut gave_up = Vec::new();
        if let Err(why) = parts.replicas.hand_off().await {
            gave_up.push(why);
        }
        parts.shutdown.cancel();
        parts.tracker.close();
        if tokio::time::timeout(TASKS_STOP_WAIT, parts.tracker.wait())
            .await
            .is_err()
        {
            gave_up.push(format!(
                "waiting for {} background tasks to stop",
                parts.tracker.len()
            ));
        }
        match tokio::time::timeout(RAFT_STOP_WAIT, parts.quorum.node.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => gave_up.push(format!("stopping the metadata node ({e})")),
            Err(_) => gave_up.push(format!(
                "waiting for the metadata node to stop (over {RAFT_STOP_WAIT:?})"
            )),
        }
        parts.replicas.flush_all().await;
        if !gave_up.is_empty() {
            warn!(
                "controlled shutdown gave up on {}; stopped anyway",
                gave_up.join(", ")
            );
        }
        info!("broker stopped");
    }
}
