//! Server configuration: built-in defaults < TOML file (`--config`) <
//! `FJORD_*` environment variables < command-line flags.
//!
//! Every option, with its TOML key, environment variable and flag:
//!
//! | TOML key | env | flag | default |
//! |---|---|---|---|
//! | `data_dir` | `FJORD_DATA_DIR` | `--data-dir` | `./fjord-data` |
//! | `node_id` | `FJORD_NODE_ID` | `--node-id` | `1` |
//! | `grpc_listen` | `FJORD_GRPC_LISTEN` | `--grpc-listen` | `127.0.0.1:9400` |
//! | `http_listen` | `FJORD_HTTP_LISTEN` | `--http-listen` | `127.0.0.1:9600` |
//! | `mqtt_listen` | `FJORD_MQTT_LISTEN` | `--mqtt-listen` | `127.0.0.1:1883` (`off` disables it) |
//! | `mqtt_tls_listen` | `FJORD_MQTT_TLS_LISTEN` | `--mqtt-tls-listen` | `127.0.0.1:8883` (`off` disables it) |
//! | `mqtt_ws_listen` | `FJORD_MQTT_WS_LISTEN` | `--mqtt-ws-listen` | `127.0.0.1:8083` (`off` disables it) |
//! | `mqtt_tls_cert`, `mqtt_tls_key` | `FJORD_MQTT_TLS_CERT`, `FJORD_MQTT_TLS_KEY` | `--mqtt-tls-cert`, `--mqtt-tls-key` | none: a self-signed `localhost` certificate in `<data-dir>/mqtt` |
//! | `mqtt_allow_anonymous` | `FJORD_MQTT_ALLOW_ANONYMOUS` | `--mqtt-allow-anonymous` | `true` |
//! | `mqtt_max_packet_size` | `FJORD_MQTT_MAX_PACKET_SIZE` | `--mqtt-max-packet-size` | `1048576` bytes |
//! | `mqtt_max_queued_messages` | `FJORD_MQTT_MAX_QUEUED_MESSAGES` | `--mqtt-max-queued-messages` | `1000` per session (offline or beyond the client's receive maximum) |
//! | `mqtt_max_session_expiry_secs` | `FJORD_MQTT_MAX_SESSION_EXPIRY_SECS` | `--mqtt-max-session-expiry-secs` | none (3.1.1 persistent sessions never expire) |
//! | `mqtt_map` | `FJORD_MQTT_MAP` | `--mqtt-map` | none: `FILTER=TOPIC,...` rules, first match wins |
//! | `mqtt_topic` | `FJORD_MQTT_TOPIC` | `--mqtt-topic` | `mqtt`: the log topic of unmapped MQTT topics |
//! | `mqtt_partitions` | `FJORD_MQTT_PARTITIONS` | `--mqtt-partitions` | `4`: partitions of log topics the gateway creates |
//! | `amqp_listen` | `FJORD_AMQP_LISTEN` | `--amqp-listen` | `127.0.0.1:5672` (`off` disables it) |
//! | `amqp_tls_listen` | `FJORD_AMQP_TLS_LISTEN` | `--amqp-tls-listen` | `127.0.0.1:5671` (`off` disables it) |
//! | `amqp_tls_cert`, `amqp_tls_key` | `FJORD_AMQP_TLS_CERT`, `FJORD_AMQP_TLS_KEY` | `--amqp-tls-cert`, `--amqp-tls-key` | none: a self-signed `localhost` certificate in `<data-dir>/amqp` |
//! | `amqp_disk_free_limit` | `FJORD_AMQP_DISK_FREE_LIMIT` | `--amqp-disk-free-limit` | `50000000` bytes: below it, publishing connections are blocked |
//! | `amqp_memory_high_watermark` | `FJORD_AMQP_MEMORY_HIGH_WATERMARK` | `--amqp-memory-high-watermark` | 40% of RAM (or of the cgroup limit, if smaller) in bytes: at or above it, publishing connections are blocked; `0` turns it off |
//! | `amqp_allow_guest` | `FJORD_AMQP_ALLOW_GUEST` | `--amqp-allow-guest` | `true`: `guest`/`guest` may log in |
//! | `advertised_grpc` | `FJORD_ADVERTISED_GRPC` | `--advertised-grpc` | the bound gRPC address |
//! | `peers` | `FJORD_PEERS` | `--peers` | none: a fixed set of voters `ID=HOST:PORT,...` (this node included) |
//! | `join` | `FJORD_JOIN` | `--join` | none: the gRPC address of any node of the cluster to join |
//! | `bootstrap` | `FJORD_BOOTSTRAP` | `--bootstrap` | the default without `--peers` or `--join`: on first start the node forms a cluster of its own (one voter) that others may `--join` |
//! | `cluster_id` | `FJORD_CLUSTER_ID` | `--cluster-id` | made up (bootstrap), adopted (join), `fjord` (peers) |
//! | `rack` | `FJORD_RACK` | `--rack` | none |
//! | `session_timeout_ms` | `FJORD_SESSION_TIMEOUT_MS` | `--session-timeout-ms` | `1500`: a broker silent this long is fenced |
//! | `max_voters` | `FJORD_MAX_VOTERS` | `--max-voters` | `3`: voters the quorum grows to as nodes join (1, 3 or 5); later nodes are learners |
//! | `voter_replace_after_ms` | `FJORD_VOTER_REPLACE_AFTER_MS` | `--voter-replace-after-ms` | `60000`: a voter silent this long is replaced by a caught-up learner (a removed voter at once) |
//! | `outbound_address` | `FJORD_OUTBOUND_ADDRESS` | `--outbound-address` | none: the source address of connections to other nodes |
//! | `catch_up_throttle` | `FJORD_CATCH_UP_THROTTLE` | `--catch-up-throttle` | `0` (none): bytes/s a replica outside the ISR copies at most |
//! | `replica_lag_max_ms` | `FJORD_REPLICA_LAG_MAX_MS` | `--replica-lag-max-ms` | `10000`: a follower behind this long leaves the ISR |
//! | `flush_policy` | `FJORD_FLUSH_POLICY` | `--flush-policy` | `batch` (`batch`, `interval:<ms>`, `os`) |
//! | `default_partitions` | `FJORD_DEFAULT_PARTITIONS` | `--default-partitions` | `1` |
//! | `auto_create_topics` | `FJORD_AUTO_CREATE_TOPICS` | `--auto-create-topics` | `false` |
//! | `offsets_topic_partitions` | `FJORD_OFFSETS_TOPIC_PARTITIONS` | `--offsets-topic-partitions` | `8` |
//! | `retention_check_interval_ms` | `FJORD_RETENTION_CHECK_INTERVAL_MS` | `--retention-check-interval-ms` | `60000` |
//! | `log_level` | `FJORD_LOG_LEVEL` | `--log-level` | `info,openraft=warn` |
//! | `log_format` | `FJORD_LOG_FORMAT` | `--log-format` | `text` (`text`, `json`) |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use fjord_broker::{BrokerConfig, ClusterConfig, FlushPolicy, Formation};
use fjord_gateway_amqp::AmqpConfig;
use fjord_gateway_mqtt::MqttConfig;
use serde::Deserialize;

/// Flags of `fjord serve`; each also reads its `FJORD_*` variable.
#[derive(Debug, Default, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (lowest precedence after the defaults).
    #[arg(long, env = "FJORD_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Directory for partition logs and metadata.
    #[arg(long, env = "FJORD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This node's id.
    #[arg(long, env = "FJORD_NODE_ID")]
    node_id: Option<u32>,
    /// gRPC listener (clients and, later, other nodes); port 0 picks one.
    #[arg(long, env = "FJORD_GRPC_LISTEN", value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// HTTP listener for /metrics, /health and /ready; port 0 picks one.
    #[arg(long, env = "FJORD_HTTP_LISTEN", value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// MQTT listener; port 0 picks one, `off` disables it.
    #[arg(long, env = "FJORD_MQTT_LISTEN", value_name = "ADDR")]
    mqtt_listen: Option<String>,
    /// MQTT over TLS listener; port 0 picks one, `off` disables it.
    #[arg(long, env = "FJORD_MQTT_TLS_LISTEN", value_name = "ADDR")]
    mqtt_tls_listen: Option<String>,
    /// MQTT over WebSocket listener; port 0 picks one, `off` disables it.
    #[arg(long, env = "FJORD_MQTT_WS_LISTEN", value_name = "ADDR")]
    mqtt_ws_listen: Option<String>,
    /// PEM certificate chain for MQTT over TLS (with --mqtt-tls-key).
    #[arg(long, env = "FJORD_MQTT_TLS_CERT", value_name = "FILE")]
    mqtt_tls_cert: Option<PathBuf>,
    /// PEM private key for MQTT over TLS.
    #[arg(long, env = "FJORD_MQTT_TLS_KEY", value_name = "FILE")]
    mqtt_tls_key: Option<PathBuf>,
    /// Let MQTT clients connect without a username.
    #[arg(long, env = "FJORD_MQTT_ALLOW_ANONYMOUS")]
    mqtt_allow_anonymous: Option<bool>,
    /// Largest MQTT packet accepted, in bytes.
    #[arg(long, env = "FJORD_MQTT_MAX_PACKET_SIZE")]
    mqtt_max_packet_size: Option<usize>,
    /// QoS 1/2 messages queued per MQTT session; more are dropped.
    #[arg(long, env = "FJORD_MQTT_MAX_QUEUED_MESSAGES")]
    mqtt_max_queued_messages: Option<usize>,
    /// Upper bound on MQTT session expiry, in seconds.
    #[arg(long, env = "FJORD_MQTT_MAX_SESSION_EXPIRY_SECS")]
    mqtt_max_session_expiry_secs: Option<u64>,
    /// MQTT topic filter → log topic rules, `FILTER=TOPIC,...`.
    #[arg(long, env = "FJORD_MQTT_MAP", value_name = "FILTER=TOPIC,...")]
    mqtt_map: Option<String>,
    /// Log topic of MQTT topics no rule maps.
    #[arg(long, env = "FJORD_MQTT_TOPIC")]
    mqtt_topic: Option<String>,
    /// Partitions of the log topics the MQTT gateway creates.
    #[arg(long, env = "FJORD_MQTT_PARTITIONS")]
    mqtt_partitions: Option<u32>,
    /// AMQP 0-9-1 listener, or `off`.
    #[arg(long, env = "FJORD_AMQP_LISTEN", value_name = "ADDR|off")]
    amqp_listen: Option<String>,
    /// AMQP over TLS listener, or `off`.
    #[arg(long, env = "FJORD_AMQP_TLS_LISTEN", value_name = "ADDR|off")]
    amqp_tls_listen: Option<String>,
    /// PEM certificate chain for AMQP over TLS (with --amqp-tls-key).
    #[arg(long, env = "FJORD_AMQP_TLS_CERT", value_name = "FILE")]
    amqp_tls_cert: Option<PathBuf>,
    /// PEM private key for AMQP over TLS.
    #[arg(long, env = "FJORD_AMQP_TLS_KEY", value_name = "FILE")]
    amqp_tls_key: Option<PathBuf>,
    /// Free disk space (bytes) below which publishing AMQP connections are
    /// blocked (`connection.blocked`).
    #[arg(long, env = "FJORD_AMQP_DISK_FREE_LIMIT", value_name = "BYTES")]
    amqp_disk_free_limit: Option<u64>,
    /// Resident memory (bytes) at which publishing AMQP connections are
    /// blocked (`connection.blocked`); 0 turns the alarm off.
    #[arg(long, env = "FJORD_AMQP_MEMORY_HIGH_WATERMARK", value_name = "BYTES")]
    amqp_memory_high_watermark: Option<u64>,
    /// Whether `guest`/`guest` may log in over AMQP (as on a fresh RabbitMQ).
    #[arg(long, env = "FJORD_AMQP_ALLOW_GUEST", value_name = "BOOL")]
    amqp_allow_guest: Option<bool>,
    /// gRPC address given to clients (default: the bound address).
    #[arg(long, env = "FJORD_ADVERTISED_GRPC", value_name = "ADDR")]
    advertised_grpc: Option<SocketAddr>,
    /// A fixed set of voters `ID=HOST:PORT,...`, this node included; the
    /// lowest id forms the cluster.
    #[arg(long, env = "FJORD_PEERS", value_name = "ID=ADDR,...")]
    peers: Option<String>,
    /// Join the cluster of the node at this gRPC address.
    #[arg(long, env = "FJORD_JOIN", value_name = "ADDR")]
    join: Option<String>,
    /// Start a new cluster (its first node); others `--join` it. This is
    /// what a node without `--peers` or `--join` does anyway.
    #[arg(long, env = "FJORD_BOOTSTRAP")]
    bootstrap: bool,
    /// The cluster's id (checked on every node-to-node call).
    #[arg(long, env = "FJORD_CLUSTER_ID")]
    cluster_id: Option<String>,
    /// This node's rack, for replica placement.
    #[arg(long, env = "FJORD_RACK")]
    rack: Option<String>,
    /// A broker whose heartbeats stop for this long is fenced, in ms.
    #[arg(long, env = "FJORD_SESSION_TIMEOUT_MS")]
    session_timeout_ms: Option<u64>,
    /// A follower not caught up for this long leaves the ISR, in ms.
    #[arg(long, env = "FJORD_REPLICA_LAG_MAX_MS")]
    replica_lag_max_ms: Option<u64>,
    /// Voters the metadata quorum grows to as nodes join (3 or 5); later
    /// nodes are learners.
    #[arg(long, env = "FJORD_MAX_VOTERS")]
    max_voters: Option<usize>,
    /// A voter silent (fenced) this long is replaced by a live learner
    /// whose log has caught up, in ms.
    #[arg(long, env = "FJORD_VOTER_REPLACE_AFTER_MS")]
    voter_replace_after_ms: Option<u64>,
    /// Source address for connections to other nodes (hosts with several
    /// addresses).
    #[arg(long, env = "FJORD_OUTBOUND_ADDRESS", value_name = "IP")]
    outbound_address: Option<std::net::IpAddr>,
    /// Bytes/s a replica outside the ISR copies at most (reassignments,
    /// catching up); 0 = no limit.
    #[arg(long, env = "FJORD_CATCH_UP_THROTTLE")]
    catch_up_throttle: Option<u64>,
    /// When appends are fsync'd: `batch` (before acknowledging, group
    /// commit), `interval:<ms>`, or `os`.
    #[arg(long, env = "FJORD_FLUSH_POLICY", value_name = "POLICY")]
    flush_policy: Option<String>,
    /// Partitions of auto-created topics.
    #[arg(long, env = "FJORD_DEFAULT_PARTITIONS")]
    default_partitions: Option<u32>,
    /// Create topics on first produce.
    #[arg(long, env = "FJORD_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<bool>,
    /// Partitions of the `__consumer_offsets` topic (on first start).
    #[arg(long, env = "FJORD_OFFSETS_TOPIC_PARTITIONS")]
    offsets_topic_partitions: Option<u32>,
    /// How often retention and compaction run, in ms.
    #[arg(long, env = "FJORD_RETENTION_CHECK_INTERVAL_MS")]
    retention_check_interval_ms: Option<u64>,
    /// Log filter (`info`, `debug`, `fjord_broker=debug,info`, ...).
    #[arg(long, env = "FJORD_LOG_LEVEL")]
    pub(crate) log_level: Option<String>,
    /// `text` or `json`.
    #[arg(long, env = "FJORD_LOG_FORMAT")]
    pub(crate) log_format: Option<String>,
}

/// The TOML file: the same options, all optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    node_id: Option<u32>,
    grpc_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    mqtt_listen: Option<String>,
    mqtt_tls_listen: Option<String>,
    mqtt_ws_listen: Option<String>,
    mqtt_tls_cert: Option<PathBuf>,
    mqtt_tls_key: Option<PathBuf>,
    mqtt_allow_anonymous: Option<bool>,
    mqtt_max_packet_size: Option<usize>,
    mqtt_max_queued_messages: Option<usize>,
    mqtt_max_session_expiry_secs: Option<u64>,
    mqtt_map: Option<String>,
    mqtt_topic: Option<String>,
    mqtt_partitions: Option<u32>,
    amqp_listen: Option<String>,
    amqp_tls_listen: Option<String>,
    amqp_tls_cert: Option<PathBuf>,
    amqp_tls_key: Option<PathBuf>,
    amqp_allow_guest: Option<bool>,
    amqp_disk_free_limit: Option<u64>,
    amqp_memory_high_watermark: Option<u64>,
    advertised_grpc: Option<SocketAddr>,
    peers: Option<String>,
    join: Option<String>,
    bootstrap: Option<bool>,
    cluster_id: Option<String>,
    rack: Option<String>,
    session_timeout_ms: Option<u64>,
    replica_lag_max_ms: Option<u64>,
    max_voters: Option<usize>,
    voter_replace_after_ms: Option<u64>,
    catch_up_throttle: Option<u64>,
    outbound_address: Option<std::net::IpAddr>,
    flush_policy: Option<String>,
    default_partitions: Option<u32>,
    auto_create_topics: Option<bool>,
    offsets_topic_partitions: Option<u32>,
    retention_check_interval_ms: Option<u64>,
    log_level: Option<String>,
    log_format: Option<String>,
}

/// The resolved server configuration.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) data_dir: PathBuf,
    pub(crate) node_id: u32,
    pub(crate) grpc_listen: SocketAddr,
    pub(crate) http_listen: SocketAddr,
    pub(crate) mqtt: MqttConfig,
    pub(crate) amqp: AmqpConfig,
    /// AMQP over TLS: the address and the certificate and key files (the
    /// acceptor is made at start).
    pub(crate) amqp_tls: Option<(SocketAddr, Option<PathBuf>, Option<PathBuf>)>,
    pub(crate) advertised_grpc: Option<SocketAddr>,
    pub(crate) flush: FlushPolicy,
    pub(crate) default_partitions: u32,
    pub(crate) auto_create_topics: bool,
    pub(crate) offsets_topic_partitions: u32,
    pub(crate) retention_check_interval: Duration,
    pub(crate) log_level: String,
    pub(crate) json_logs: bool,
    /// How the node forms or joins its cluster (alone: a cluster of one).
    pub(crate) cluster: ClusterConfig,
}

/// Parses `ID=HOST:PORT,...`.
pub(crate) fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((id, addr)) = item.split_once('=') else {
            bail!("peer {item:?} is not ID=HOST:PORT");
        };
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("peer {item:?}: the id is not a number"))?;
        let addr = addr.trim();
        if id == 0 {
            bail!("peer {item:?}: node ids start at 1");
        }
        if !addr.contains(':') {
            bail!("peer {item:?}: the address needs a port");
        }
        if peers.insert(id, addr.to_string()).is_some() {
            bail!("peer id {id} is listed twice");
        }
    }
    if peers.is_empty() {
        bail!("--peers lists no peers");
    }
    Ok(peers)
}

/// Parses `batch`, `os` or `interval:<ms>`.
pub(crate) fn parse_flush_policy(text: &str) -> Result<FlushPolicy> {
    match text.trim() {
        "batch" => Ok(FlushPolicy::EveryBatch),
        "os" => Ok(FlushPolicy::Os),
        other => match other.strip_prefix("interval:").map(str::parse::<u64>) {
            Some(Ok(ms)) if ms > 0 => Ok(FlushPolicy::Interval(Duration::from_millis(ms))),
            _ => bail!("flush policy must be batch, os or interval:<ms>, got {other:?}"),
        },
    }
}

/// A listener address, or `None` for `off`.
fn listener(text: Option<String>, default: &str, what: &str) -> Result<Option<SocketAddr>> {
    let text = text.unwrap_or_else(|| default.to_string());
    if text.trim() == "off" {
        return Ok(None);
    }
    text.trim()
        .parse()
        .map(Some)
        .with_context(|| format!("{what}: {text:?} is not HOST:PORT or off"))
}

/// Parses `FILTER=TOPIC,...`.
pub(crate) fn parse_mqtt_map(text: &str) -> Result<Vec<(String, String)>> {
    let mut rules = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((filter, topic)) = item.rsplit_once('=') else {
            bail!("MQTT mapping {item:?} is not FILTER=TOPIC");
        };
        if fjord_gateway_mqtt::topic::validate_filter(filter).is_err()
            || filter.starts_with("$share/")
        {
            bail!("MQTT mapping {item:?}: {filter:?} is not a topic filter");
        }
        if topic.is_empty() || topic.starts_with("__") {
            bail!("MQTT mapping {item:?}: {topic:?} is not a log topic name");
        }
        rules.push((filter.to_string(), topic.to_string()));
    }
    Ok(rules)
}

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl ServeArgs {
    /// Merges defaults, the TOML file, environment and flags.
    ///
    /// # Errors
    /// The file cannot be read or has unknown keys or bad values; a value is
    /// out of range; clustering was asked for.
    pub(crate) fn resolve(self) -> Result<ServerConfig> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let node_id = self.node_id.or(file.node_id).unwrap_or(1);
        let formation = match (
            self.peers.or(file.peers).filter(|p| !p.trim().is_empty()),
            self.join.or(file.join).filter(|j| !j.trim().is_empty()),
            self.bootstrap || file.bootstrap.unwrap_or(false),
        ) {
            (None, None, _) => Formation::Bootstrap,
            (Some(peers), None, false) => {
                let peers = parse_peers(&peers)?;
                if !peers.contains_key(&u64::from(node_id)) {
                    bail!("--peers does not list this node's id {node_id} (set --node-id)");
                }
                Formation::Peers(peers)
            }
            (None, Some(join), false) => Formation::Join(join.trim().to_string()),
            _ => bail!("use only one of --peers, --join and --bootstrap"),
        };
        if node_id == 0 {
            bail!("node ids start at 1");
        }
        let max_voters = self.max_voters.or(file.max_voters).unwrap_or(3);
        if ![1, 3, 5].contains(&max_voters) {
            bail!("--max-voters must be 1, 3 or 5, got {max_voters}");
        }
        let cluster = {
            let mut c = ClusterConfig::new(formation);
            c.cluster_id = self.cluster_id.clone().or(file.cluster_id.clone());
            c.rack = self.rack.clone().or(file.rack.clone());
            if let Some(ms) = self.session_timeout_ms.or(file.session_timeout_ms) {
                c.session_timeout = Duration::from_millis(ms.max(100));
            }
            if let Some(ms) = self.replica_lag_max_ms.or(file.replica_lag_max_ms) {
                c.replica_lag_max = Duration::from_millis(ms.max(100));
            }
            c.max_voters = max_voters;
            if let Some(ms) = self.voter_replace_after_ms.or(file.voter_replace_after_ms) {
                c.voter_replace_after = Duration::from_millis(ms.max(1000));
            }
            c.outbound_address = self.outbound_address.or(file.outbound_address);
            c.catch_up_throttle = self
                .catch_up_throttle
                .or(file.catch_up_throttle)
                .filter(|r| *r > 0);
            c
        };
        let flush = parse_flush_policy(
            &self
                .flush_policy
                .or(file.flush_policy)
                .unwrap_or_else(|| "batch".into()),
        )?;
        let log_format = self
            .log_format
            .or(file.log_format)
            .unwrap_or_else(|| "text".into());
        let json_logs = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => bail!("log format must be text or json, got {other:?}"),
        };
        let default_partitions = self
            .default_partitions
            .or(file.default_partitions)
            .unwrap_or(1);
        let offsets_topic_partitions = self
            .offsets_topic_partitions
            .or(file.offsets_topic_partitions)
            .unwrap_or(8);
        if default_partitions == 0 || offsets_topic_partitions == 0 {
            bail!("partition counts must be at least 1");
        }
        let retention_ms = self
            .retention_check_interval_ms
            .or(file.retention_check_interval_ms)
            .unwrap_or(60_000);
        if retention_ms == 0 {
            bail!("retention check interval must be positive");
        }
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./fjord-data"));
        let mut mqtt = MqttConfig::new(data_dir.join("mqtt"));
        mqtt.tcp = listener(
            self.mqtt_listen.or(file.mqtt_listen),
            "127.0.0.1:1883",
            "--mqtt-listen",
        )?;
        mqtt.tls = listener(
            self.mqtt_tls_listen.or(file.mqtt_tls_listen),
            "127.0.0.1:8883",
            "--mqtt-tls-listen",
        )?;
        mqtt.ws = listener(
            self.mqtt_ws_listen.or(file.mqtt_ws_listen),
            "127.0.0.1:8083",
            "--mqtt-ws-listen",
        )?;
        mqtt.tls_cert = self.mqtt_tls_cert.or(file.mqtt_tls_cert);
        mqtt.tls_key = self.mqtt_tls_key.or(file.mqtt_tls_key);
        if mqtt.tls_cert.is_some() != mqtt.tls_key.is_some() {
            bail!("give both --mqtt-tls-cert and --mqtt-tls-key, or neither");
        }
        if let Some(v) = self.mqtt_allow_anonymous.or(file.mqtt_allow_anonymous) {
            mqtt.allow_anonymous = v;
        }
        if let Some(v) = self.mqtt_max_packet_size.or(file.mqtt_max_packet_size) {
            if !(64..=268_435_455).contains(&v) {
                bail!("--mqtt-max-packet-size must be 64..=268435455 bytes, got {v}");
            }
            mqtt.max_packet_size = v;
        }
        if let Some(v) = self
            .mqtt_max_queued_messages
            .or(file.mqtt_max_queued_messages)
        {
            mqtt.max_queued_messages = v.max(1);
        }
        mqtt.max_session_expiry = self
            .mqtt_max_session_expiry_secs
            .or(file.mqtt_max_session_expiry_secs)
            .map(Duration::from_secs);
        if let Some(map) = self.mqtt_map.or(file.mqtt_map) {
            mqtt.mappings = parse_mqtt_map(&map)?;
        }
        if let Some(t) = self.mqtt_topic.or(file.mqtt_topic) {
            if t.is_empty() || t.starts_with("__") {
                bail!("--mqtt-topic {t:?} is not a log topic name");
            }
            mqtt.default_topic = t;
        }
        if let Some(p) = self.mqtt_partitions.or(file.mqtt_partitions) {
            if p == 0 {
                bail!("partition counts must be at least 1");
            }
            mqtt.partitions = p;
        }
        let mut amqp = AmqpConfig::new();
        amqp.tcp = listener(
            self.amqp_listen.or(file.amqp_listen),
            "127.0.0.1:5672",
            "--amqp-listen",
        )?;
        if let Some(v) = self.amqp_allow_guest.or(file.amqp_allow_guest) {
            amqp.allow_guest = v;
        }
        if let Some(v) = self.amqp_disk_free_limit.or(file.amqp_disk_free_limit) {
            amqp.disk_free_limit = v;
        }
        if let Some(v) = self
            .amqp_memory_high_watermark
            .or(file.amqp_memory_high_watermark)
        {
            amqp.memory_high_watermark = v;
        }
        amqp.data_dir = Some(data_dir.clone());
        let amqp_tls_cert = self.amqp_tls_cert.or(file.amqp_tls_cert);
        let amqp_tls_key = self.amqp_tls_key.or(file.amqp_tls_key);
        if amqp_tls_cert.is_some() != amqp_tls_key.is_some() {
            bail!("give both --amqp-tls-cert and --amqp-tls-key, or neither");
        }
        let amqp_tls = listener(
            self.amqp_tls_listen.or(file.amqp_tls_listen),
            "127.0.0.1:5671",
            "--amqp-tls-listen",
        )?
        .map(|a| (a, amqp_tls_cert, amqp_tls_key));
        Ok(ServerConfig {
            data_dir,
            node_id,
            grpc_listen: self
                .grpc_listen
                .or(file.grpc_listen)
                .unwrap_or_else(|| addr("127.0.0.1:9400")),
            http_listen: self
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| addr("127.0.0.1:9600")),
            mqtt,
            amqp,
            amqp_tls,
            advertised_grpc: self.advertised_grpc.or(file.advertised_grpc),
            flush,
            default_partitions,
            auto_create_topics: self
                .auto_create_topics
                .or(file.auto_create_topics)
                .unwrap_or(false),
            offsets_topic_partitions,
            retention_check_interval: Duration::from_millis(retention_ms),
            log_level: self
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info,openraft=warn".into()),
            json_logs,
            cluster,
        })
    }
}

impl ServerConfig {
    /// The broker's settings, advertising `grpc` unless configured otherwise.
    pub(crate) fn broker_config(&self, grpc: SocketAddr) -> BrokerConfig {
        let mut config = BrokerConfig::new(&self.data_dir);
        config.node_id = self.node_id;
        config.advertised_grpc = Some(self.advertised_grpc.unwrap_or(grpc));
        config.default_flush = self.flush;
        config.default_partitions = self.default_partitions;
        config.auto_create_topics = self.auto_create_topics;
        config.offsets_topic_partitions = self.offsets_topic_partitions;
        config.retention_check_interval = self.retention_check_interval;
        config.cluster = self.cluster.clone();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjord.toml");
        std::fs::write(
            &path,
            "data_dir = \"/from/file\"\nnode_id = 7\nflush_policy = \"interval:50\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            node_id: Some(3),
            ..ServeArgs::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.node_id, 3);
        assert_eq!(c.flush, FlushPolicy::Interval(Duration::from_millis(50)));
        assert_eq!(c.grpc_listen, addr("127.0.0.1:9400"));
    }

    #[test]
    fn bad_files_values_and_peers_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "data_dri = \"typo\"\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        assert!(parse_flush_policy("sometimes").is_err());
        assert!(parse_flush_policy("interval:0").is_err());
        let err = ServeArgs {
            peers: Some("2=10.0.0.2:9400".into()),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("does not list this node"), "{err}");
        for bad in ["1", "x=a:1", "0=a:1", "1=a:1,1=b:2", "1=nohost"] {
            assert!(parse_peers(bad).is_err(), "{bad}");
        }
        let err = ServeArgs {
            join: Some("127.0.0.1:1".into()),
            bootstrap: true,
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("only one of"), "{err}");
        let c = ServeArgs {
            peers: Some("1=a:1, 2=b:2,3=c:3".into()),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        assert!(matches!(c.cluster.formation, Formation::Peers(p) if p.len() == 3));
    }
}
