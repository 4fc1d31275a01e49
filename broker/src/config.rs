//! A node's settings: where its data lives, its defaults for topics, and
//! how it forms or joins its cluster (topic-level settings come from
//! `TopicSpec::configs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fjord_storage::FlushPolicy;

/// Node-level settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub node_id: u32,
    /// Address clients use to reach this node's gRPC listener (advertised).
    pub advertised_grpc: Option<SocketAddr>,
    /// Flush policy of topics that set neither `flush.ms` nor `flush.messages`.
    pub default_flush: FlushPolicy,
    /// Partitions of auto-created topics.
    pub default_partitions: u32,
    /// Create a topic on first produce to it.
    pub auto_create_topics: bool,
    /// Partitions of `__consumer_offsets` (fixed once created).
    pub offsets_topic_partitions: u32,
    /// How often retention, compaction and time-based rolls run.
    pub retention_check_interval: Duration,
    /// How this node forms or joins its cluster (a node alone is a
    /// cluster of one), and the cluster's timings.
    pub cluster: ClusterConfig,
}

impl BrokerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> BrokerConfig {
        BrokerConfig {
            data_dir: data_dir.into(),
            node_id: 1,
            advertised_grpc: None,
            default_flush: FlushPolicy::EveryBatch,
            default_partitions: 1,
            auto_create_topics: false,
            offsets_topic_partitions: 8,
            retention_check_interval: Duration::from_secs(60),
            cluster: ClusterConfig::new(Formation::Bootstrap),
        }
    }
}

/// How a node finds its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formation {
    /// Start a new cluster with this node as its only voter (on first
    /// start; later starts find their quorum on disk); others may join.
    Bootstrap,
    /// A fixed set of voters (id → gRPC address, this node included); the
    /// lowest id forms the quorum.
    Peers(BTreeMap<u64, String>),
    /// Join the cluster that the node at this address belongs to.
    Join(String),
}

/// How the node takes part in its cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `None`: adopt the cluster's (joining), or make one up (bootstrap).
    pub cluster_id: Option<String>,
    pub formation: Formation,
    pub rack: Option<String>,
    pub heartbeat_interval: Duration,
    /// A broker silent for this long is fenced.
    pub session_timeout: Duration,
    /// An ISR member that has not caught up for this long leaves the ISR.
    pub replica_lag_max: Duration,
    /// How long an `acks=all` produce waits for the ISR.
    pub produce_timeout: Duration,
    /// Voters the quorum grows to as nodes join, and keeps while enough
    /// live nodes exist (1, 3 or 5).
    pub max_voters: usize,
    /// A voter silent (fenced) for this long is replaced by a caught-up
    /// learner, which keeps the quorum's size when a voter dies for good.
    pub voter_replace_after: Duration,
    /// Source address of connections to other nodes (`None`: the OS
    /// picks), for hosts with several addresses.
    pub outbound_address: Option<std::net::IpAddr>,
    /// Bytes per second a replica outside the ISR (a new replica of a
    /// reassignment, or one that fell behind) copies at most; `None`: no
    /// limit.
    pub catch_up_throttle: Option<u64>,
}

impl ClusterConfig {
    pub fn new(formation: Formation) -> ClusterConfig {
        ClusterConfig {
            cluster_id: None,
            formation,
            rack: None,
            heartbeat_interval: Duration::from_millis(250),
            session_timeout: Duration::from_millis(1500),
            replica_lag_max: Duration::from_secs(10),
            produce_timeout: Duration::from_secs(30),
            max_voters: 3,
            voter_replace_after: Duration::from_secs(60),
            catch_up_throttle: None,
            outbound_address: None,
        }
    }
}
