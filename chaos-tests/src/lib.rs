//! Chaos tests: real `fjord` processes under faults, and a checker that
//! judges what clients saw.
//!
//! A run starts a single node or a cluster (one node bootstraps, the others
//! join it), creates a topic (replicated three ways in a cluster, with
//! `min.insync.replicas=2`), runs the workload (idempotent producers with
//! `acks=all` writing unique values, a consumer per partition, all
//! following partition leaders) while a seeded nemesis SIGKILLs a node —
//! the leader of partition 0, the controller or any node — and restarts it
//! after a while, or pauses one with SIGSTOP (a node cut off from everyone,
//! that then wakes up believing what it believed before), or splits the
//! network, cutting a node or a minority off from the rest through the
//! proxies every node sits behind (a leader that keeps running but cannot
//! reach the quorum). When the time is
//! up the faults stop, the log is read back from the leaders and the
//! history is checked (see `history.rs`). Every run prints its seed; the
//! same seed replays the same fault schedule.
//!
//! The MQTT schedule (see `mqtt/mod.rs`) runs the same way against the
//! MQTT gateway: QoS 1 and QoS 2 publishers and persistent-session
//! subscribers (one pair sharing a `$share` subscription) spread over a
//! three-node cluster, each moving to another node when its own dies, while
//! a seeded nemesis SIGKILLs and restarts the node a client is connected
//! to, the leader of `__mqtt_sessions`-0 or `mqtt`-0, or any node. Its
//! checker wants every acknowledged message at every subscriber (and in
//! the union of the shared group), QoS 2 messages exactly once, each
//! publisher's messages in order but for DUP redeliveries, and nothing
//! that was never published.
//!
//! The AMQP schedule (see `amqp/mod.rs`) runs against the AMQP gateway:
//! confirming publishers and acking consumers (some closing their channel
//! with messages unacknowledged) spread over a three-node cluster, each
//! moving to another node when its own dies, under the MQTT schedule's
//! nemesis aimed at the clients' nodes, the node that runs the gateway
//! and a queue's leader. Its checker wants every confirmed message
//! acknowledged, every second delivery flagged `redelivered`, nothing
//! delivered again once its acknowledgement was stored, nothing that was
//! never published, and each channel's first deliveries in publish order.
//!
//! The `fjord serve` processes (started, killed, paused, restarted, and a
//! cluster formed of them) come from `fjord-testkit`.
//!
//! # Layout
//! - [`history`]: the record of a run and the checker.
//! - [`proxy`]: the fault-injecting proxy in front of each cluster node,
//!   for network partitions.
//! - [`workload`]: producers and consumers that follow the node.
//! - [`stop`]: the flag that ends the workload.
//! - [`mqtt`]: the MQTT schedule (its workload, nemesis and checker).
//! - [`amqp`]: the AMQP schedule (its workload and checker; the MQTT
//!   schedule's cluster and nemesis).

pub mod amqp;
pub mod history;
pub mod mqtt;
pub mod proxy;
pub mod stop;
pub mod workload;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use fjord_testkit::{Cluster, Node};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{History, Report, check};
use crate::stop::Stop;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    /// How long faults are injected.
    pub duration: Duration,
    pub partitions: u32,
    pub producers: usize,
    /// 1: a single node; 3 or 5: a cluster.
    pub nodes: usize,
    /// `serve` flags for the node (e.g. a flush policy).
    pub serve_args: Vec<String>,
}

/// One fault the nemesis injected, for the run's log.
#[derive(Debug, Clone)]
pub struct Fault {
    pub at: Duration,
    pub what: String,
}

/// The processes of a run and, in a cluster, the proxy in front of each.
struct Nodes {
    nodes: Vec<Node>,
    proxies: Vec<proxy::Proxy>,
}

impl Nodes {
    /// The address clients use for node `i` (its proxy's, in a cluster).
    fn addr(&self, i: usize) -> String {
        self.proxies
            .get(i)
            .map_or_else(|| self.nodes[i].grpc().to_string(), |p| p.addr.clone())
    }

    fn addrs(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.addr(i)).collect()
    }
}

/// Runs the workload under faults and checks the history.
///
/// # Errors
/// The node cannot start or be reached after the faults stop.
pub async fn run(binary: &Path, dir: &Path, config: &RunConfig) -> Result<(Report, Vec<Fault>)> {
    let nodes = start_nodes(binary, dir, config).await?;
    let address: workload::Address = Arc::new(Mutex::new(nodes.addrs()));
    let topic = "chaos".to_string();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", nodes.addr(0)))?
        .connect()
        .await?;
    let (replication_factor, configs) = if config.nodes >= 3 {
        (
            3,
            [("min.insync.replicas".to_string(), "2".to_string())].into(),
        )
    } else {
        (config.nodes as u32, Default::default())
    };
    TopicServiceClient::new(channel)
        .create_topic(pb::CreateTopicRequest {
            name: topic.clone(),
            partitions: config.partitions,
            replication_factor,
            configs,
        })
        .await
        .context("create the topic")?;

    let history = Arc::new(Mutex::new(History::default()));
    let stop = Stop::default();
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..config.producers {
        tasks.spawn(workload::producer(
            id,
            config.partitions,
            topic.clone(),
            Arc::clone(&address),
            Arc::clone(&history),
            stop.clone(),
        ));
    }
    for partition in 0..config.partitions {
        tasks.spawn(workload::consumer(
            partition,
            topic.clone(),
            Arc::clone(&address),
            Arc::clone(&history),
            stop.clone(),
        ));
    }

    let (nodes, faults) = nemesis(nodes, &address, &topic, config).await?;
    // Let the workload see the healthy cluster once more, then stop it.
    tokio::time::sleep(Duration::from_millis(if config.nodes > 1 {
        3000
    } else {
        300
    }))
    .await;
    stop.stop();
    while tasks.join_next().await.is_some() {}
    workload::read_final(config.partitions, &topic, &address, &history).await?;
    drop(nodes);
    let history = history
        .lock()
        .map_err(|_| anyhow::anyhow!("history lock poisoned"))?
        .clone();
    Ok((check(&history), faults))
}

/// Starts the single node, or bootstraps node 1 and joins the others to it,
/// each behind its proxy (waiting until every one is live).
async fn start_nodes(binary: &Path, dir: &Path, config: &RunConfig) -> Result<Nodes> {
    let template = || {
        Node::builder(binary)
            .log_level("warn")
            .flags(config.serve_args.iter().cloned())
    };
    if config.nodes <= 1 {
        let node = template().data_dir(dir.join("node"));
        return Ok(Nodes {
            nodes: vec![tokio::task::spawn_blocking(move || node.start()).await??],
            proxies: Vec::new(),
        });
    }
    let voters = if config.nodes >= 5 { "5" } else { "3" };
    let mut proxies = Vec::with_capacity(config.nodes);
    for _ in 0..config.nodes {
        proxies.push(proxy::Proxy::start().await?);
    }
    // The proxy must forward before the node announces itself (a joining
    // node is called back at its advertised address), so each node gets a
    // free port picked here, and keeps it across restarts.
    let mut flags = Vec::with_capacity(config.nodes);
    for (i, proxy) in proxies.iter().enumerate() {
        let grpc = free_port()?;
        proxy.set_target(&grpc);
        flags.push(vec![
            "--grpc-listen".to_string(),
            grpc,
            "--max-voters".to_string(),
            voters.to_string(),
            "--advertised-grpc".to_string(),
            proxy.addr.clone(),
            "--outbound-address".to_string(),
            proxy::node_ip(i + 1).to_string(),
        ]);
    }
    let cluster = Cluster::builder(template(), dir, u32::try_from(config.nodes)?)
        .join_via(&proxies[0].addr)
        .node_flags(move |id| flags.get(id as usize - 1).cloned().unwrap_or_default());
    let nodes = tokio::task::spawn_blocking(move || cluster.start()).await??;
    Ok(Nodes {
        nodes: nodes.into_nodes(),
        proxies,
    })
}

/// A free loopback address (bound, read back, released).
fn free_port() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

async fn cluster_status(addr: &str) -> Option<pb::ClusterStatusResponse> {
    let channel = crate::workload::connect_to(addr).await?;
    ClusterServiceClient::new(channel)
        .status(pb::ClusterStatusRequest {})
        .await
        .ok()
        .map(tonic::Response::into_inner)
}

/// The node (index) to hit: the leader of partition 0, the controller, or
/// any node.
async fn pick_victim(nodes: &Nodes, topic: &str, rng: &mut StdRng) -> (usize, &'static str) {
    let n = nodes.nodes.len();
    let any = rng.random_range(0..n);
    let roll: f64 = rng.random();
    let addrs = nodes.addrs();
    let Some(asked) = (0..n)
        .find(|i| !nodes.nodes[*i].is_down())
        .map(|i| addrs[i].clone())
    else {
        return (any, "a node");
    };
    if roll < 0.4 {
        if let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{asked}"))
            && let Ok(ch) = ch.connect().await
            && let Ok(d) = TopicServiceClient::new(ch)
                .describe_topic(pb::DescribeTopicRequest {
                    name: topic.into(),
                    local_only: false,
                })
                .await
            && let Some(p) = d
                .into_inner()
                .topic
                .and_then(|t| t.partitions.into_iter().next())
            && let Some(i) = addrs.iter().position(|a| *a == p.leader_address)
        {
            return (i, "the leader of partition 0");
        }
    } else if roll < 0.6
        && let Some(s) = cluster_status(&asked).await
        && let Some(c) = s.nodes.iter().find(|n| n.id == s.controller)
        && let Some(i) = addrs.iter().position(|a| *a == c.address)
    {
        return (i, "the controller");
    }
    (any, "a node")
}

/// Injects seeded faults for `config.duration` on a cluster, one at a
/// time: a node is killed (and restarted after a while) or paused, or the
/// network is split (one node, or a minority, cut off from the rest, then
/// healed). Hands back the nodes, all running and connected.
async fn nemesis(
    mut nodes: Nodes,
    address: &workload::Address,
    topic: &str,
    config: &RunConfig,
) -> Result<(Nodes, Vec<Fault>)> {
    if nodes.nodes.len() == 1 {
        let node = nodes.nodes.remove(0);
        let (node, faults) = nemesis_single(node, address, config).await?;
        nodes.nodes.push(node);
        return Ok((nodes, faults));
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let start = Instant::now();
    let mut faults = Vec::new();
    let n = nodes.nodes.len();
    while start.elapsed() < config.duration {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
        let at = start.elapsed();
        let (victim, role) = pick_victim(&nodes, topic, &mut rng).await;
        let id = victim + 1;
        let lasting = Duration::from_millis(rng.random_range(200..3000));
        let roll: f64 = rng.random();
        if roll < 0.4 {
            faults.push(Fault {
                at,
                what: format!(
                    "SIGKILL node {id} ({role}), restart after {} ms",
                    lasting.as_millis()
                ),
            });
            nodes.nodes[victim].kill9();
            tokio::time::sleep(lasting).await;
            let mut node = nodes.nodes.remove(victim);
            node = tokio::task::spawn_blocking(move || node.restart().map(|()| node)).await??;
            nodes.nodes.insert(victim, node);
        } else if roll < 0.7 {
            faults.push(Fault {
                at,
                what: format!("SIGSTOP node {id} ({role}) for {} ms", lasting.as_millis()),
            });
            nodes.nodes[victim].pause()?;
            tokio::time::sleep(lasting).await;
            nodes.nodes[victim].resume()?;
        } else {
            // Cut off the victim, or (5 nodes) the victim and its
            // neighbour: a minority that may hold the leader.
            let mut side = vec![id];
            if n >= 5 && rng.random_bool(0.5) {
                side.push(id % n + 1);
            }
            faults.push(Fault {
                at,
                what: format!(
                    "partition nodes {side:?} ({role}) from the rest for {} ms",
                    lasting.as_millis()
                ),
            });
            proxy::partition(&nodes.proxies, &side);
            tokio::time::sleep(lasting).await;
            proxy::heal(&nodes.proxies);
        }
    }
    Ok((nodes, faults))
}

/// Injects seeded faults for `config.duration`; hands back the node, running.
async fn nemesis_single(
    mut node: Node,
    address: &workload::Address,
    config: &RunConfig,
) -> Result<(Node, Vec<Fault>)> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let start = Instant::now();
    let mut faults = Vec::new();
    while start.elapsed() < config.duration {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        let at = start.elapsed();
        if rng.random_bool(0.6) {
            faults.push(Fault {
                at,
                what: "SIGKILL, restart".into(),
            });
            node = tokio::task::spawn_blocking(move || node.restart().map(|()| node)).await??;
            if let Ok(mut a) = address.lock() {
                *a = vec![node.grpc().to_string()];
            }
        } else {
            let pause = Duration::from_millis(rng.random_range(100..1200));
            faults.push(Fault {
                at,
                what: format!("SIGSTOP for {} ms", pause.as_millis()),
            });
            node.pause()?;
            tokio::time::sleep(pause).await;
            node.resume()?;
        }
    }
    Ok((node, faults))
}
