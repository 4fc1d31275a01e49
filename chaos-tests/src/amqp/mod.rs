//! The AMQP schedule: confirming publishers and acking consumers on the
//! AMQP gateway of a cluster whose nodes are SIGKILLed and restarted.
//!
//! Three nodes (by default) with their AMQP listeners, started as the
//! MQTT schedule starts them (`mqtt::cluster`). Three durable queues
//! (`q0`..`q2`) are declared once. Publishers (two) publish numbered
//! messages with publisher confirms, a window at a time, each message to
//! one queue through the default exchange; consumers (three) consume every
//! queue on one channel with manual acknowledgements and a prefetch of 50,
//! and two of them close their channel now and then with deliveries
//! unacknowledged. Every client starts on its own node and, when its
//! connection is lost, connects to the next node.
//!
//! Once every consumer consumes, the publishers start and the MQTT
//! schedule's nemesis (`mqtt::nemesis`, aimed at the clients' nodes, the
//! node that runs the gateway — the leader of `__amqp_acks` — and the
//! leader of the first queue) kills and restarts nodes for the configured
//! time. Then the publishers stop (their window in flight may finish),
//! the consumers stop killing channels and drain until every confirmed
//! message is acknowledged or the drain bound passes, close cleanly, and
//! the history is checked (see `history.rs`).
//!
//! # Layout
//! - [`history`]: the record of a run and the checker.
//! - [`link`]: a client's connection that follows the nodes.
//! - [`publisher`] and [`consumer`]: the workload.

pub mod consumer;
pub mod history;
pub mod link;
pub mod publisher;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fjord_proto::v1 as pb;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use fjord_testkit::{Gateways, Node};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Fault;
use crate::amqp::consumer::{ConsumerSpec, Control};
use crate::amqp::history::{AmqpHistory, AmqpReport, ConsumerLog, PublisherLog, check, queue_name};
use crate::amqp::link::Link;
use crate::amqp::publisher::PublisherSpec;
use crate::mqtt::cluster;
use crate::mqtt::nemesis::{self, Aim};
use crate::mqtt::session::{Connections, Net};
use crate::stop::Stop;

/// How an AMQP run goes.
#[derive(Debug, Clone)]
pub struct AmqpRunConfig {
    pub seed: u64,
    /// How long faults are injected.
    pub duration: Duration,
    /// Nodes in the cluster (3 or more: one is down at a time).
    pub nodes: usize,
    pub queues: usize,
    pub publishers: usize,
    pub consumers: usize,
    pub prefetch: u16,
    /// How long, after the faults, consumers may take to acknowledge
    /// every confirmed message.
    pub drain: Duration,
    /// `serve` flags for every node.
    pub serve_args: Vec<String>,
    /// Only SIGKILLs: no pauses or partitions (see the README: a partition
    /// of the node running the gateway still gives messages twice).
    pub kills_only: bool,
}

impl AmqpRunConfig {
    /// The default schedule: 3 nodes, 3 queues, 2 publishers, 3 consumers
    /// with a prefetch of 50, a 60 s drain.
    pub fn new(seed: u64, duration: Duration) -> AmqpRunConfig {
        AmqpRunConfig {
            seed,
            duration,
            nodes: 3,
            queues: 3,
            publishers: 2,
            consumers: 3,
            prefetch: 50,
            drain: Duration::from_secs(60),
            serve_args: Vec::new(),
            kills_only: false,
        }
    }
}

/// How long the queues may take to be declared, and the consumers to
/// consume, at the start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the AMQP workload under faults and checks the history.
///
/// # Errors
/// The cluster cannot start, the queues cannot be declared, a consumer
/// cannot consume, or a killed node cannot be restarted.
pub async fn run(
    binary: &Path,
    dir: &Path,
    config: &AmqpRunConfig,
) -> Result<(AmqpReport, Vec<Fault>)> {
    if config.nodes < 3 {
        bail!(
            "the AMQP schedule needs 3 nodes or more, not {}",
            config.nodes
        );
    }
    let (mut nodes, proxies) = cluster::start_with(
        binary,
        dir,
        config.nodes,
        Gateways::AMQP,
        &config.serve_args,
    )
    .await?;
    let addresses = nodes
        .iter()
        .map(amqp_address)
        .collect::<Result<Vec<String>>>()?;
    let net = Net {
        addresses: Arc::new(Mutex::new(addresses)),
        connections: Connections::default(),
    };
    declare_queues(&net, config.queues).await?;
    let aim = Aim {
        leaders: vec![
            "__amqp_acks".to_string(),
            queue_topic(&nodes, &queue_name(0)).await?,
        ],
        address: amqp_address,
        kills_only: config.kills_only,
    };
    let history = Arc::new(Mutex::new(AmqpHistory {
        publishers: (0..config.publishers)
            .map(|id| PublisherLog {
                id,
                ..PublisherLog::default()
            })
            .collect(),
        consumers: (0..config.consumers)
            .map(|i| ConsumerLog {
                name: format!("con-{i}"),
                ..ConsumerLog::default()
            })
            .collect(),
        clock: 0,
    }));
    let control = Control {
        calm: Stop::default(),
        stop: Stop::default(),
    };
    let consuming = consume(config, &net, &history, &control).await?;
    let stop_publishers = Stop::default();
    let mut publishing = JoinSet::new();
    for id in 0..config.publishers {
        let spec = PublisherSpec {
            id,
            node: id % config.nodes,
            queues: config.queues,
        };
        let (net, history, stop) = (net.clone(), Arc::clone(&history), stop_publishers.clone());
        publishing.spawn(publisher::publisher(spec, net, history, stop));
    }
    let faults = nemesis::run_aimed(
        &mut nodes,
        &proxies,
        &net,
        config.seed,
        config.duration,
        &aim,
    )
    .await?;
    stop_publishers.stop();
    control.calm.stop();
    finish(publishing, "publishers").await;
    drain(&history, config.drain).await;
    control.stop.stop();
    finish(consuming, "consumers").await;
    drop(nodes);
    drop(proxies);
    let history = history
        .lock()
        .map_err(|_| anyhow::anyhow!("history lock poisoned"))?
        .clone();
    Ok((check(&history), faults))
}

/// The AMQP address of `node`'s latest start.
///
/// # Errors
/// The node announced no AMQP listener.
pub fn amqp_address(node: &Node) -> Result<String> {
    node.listeners()
        .amqp
        .clone()
        .with_context(|| format!("node {} has no AMQP listener", node.grpc()))
}

/// Declares the durable queues (through any node, bounded).
async fn declare_queues(net: &Net, queues: usize) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut link = Link::new("setup".to_string(), 0, net.clone());
    loop {
        if let Some(conn) = link.connect().await {
            let declared = declare_on(&conn, queues).await;
            let _ = conn.close(200, "done".into()).await;
            if declared.is_ok() {
                link.leave();
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the queues were not declared within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn declare_on(conn: &lapin::Connection, queues: usize) -> lapin::Result<()> {
    let ch = conn.create_channel().await?;
    for q in 0..queues {
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(queue_name(q).into(), options, FieldTable::default())
            .await?;
    }
    Ok(())
}

/// The log topic of queue `name` (in vhost `/`), as the cluster lists it.
async fn queue_topic(nodes: &[Node], name: &str) -> Result<String> {
    let prefix = format!("__amqp_q.{name}.");
    for node in nodes {
        let Some(channel) = crate::workload::connect_to(node.grpc()).await else {
            continue;
        };
        let listed = TopicServiceClient::new(channel)
            .list_topics(pb::ListTopicsRequest {
                include_internal: true,
            })
            .await;
        if let Ok(listed) = listed
            && let Some(t) = listed
                .into_inner()
                .topics
                .into_iter()
                .find(|t| t.name.starts_with(&prefix))
        {
            return Ok(t.name);
        }
    }
    bail!("no node lists the topic of queue {name}")
}

/// Starts the consumers and waits (bounded) until each consumes.
async fn consume(
    config: &AmqpRunConfig,
    net: &Net,
    history: &Arc<Mutex<AmqpHistory>>,
    control: &Control,
) -> Result<JoinSet<()>> {
    let mut tasks = JoinSet::new();
    let mut ready = Vec::new();
    for index in 0..config.consumers {
        let spec = ConsumerSpec {
            index,
            node: (index + 1) % config.nodes,
            queues: config.queues,
            prefetch: config.prefetch,
            kills: index > 0,
            seed: config.seed.wrapping_add(index as u64 + 1),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push((index, rx));
        let (net, history, control) = (net.clone(), Arc::clone(history), control.clone());
        tasks.spawn(consumer::consumer(spec, net, history, tx, control));
    }
    for (index, rx) in ready {
        tokio::time::timeout(READY_TIMEOUT, rx)
            .await
            .with_context(|| format!("con-{index} did not consume within {READY_TIMEOUT:?}"))?
            .with_context(|| format!("con-{index} ended before consuming"))?;
    }
    Ok(tasks)
}

/// How long the clients may take to finish once told to.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits for `tasks` to end; ends those still running after
/// `FINISH_TIMEOUT` (saying how many: a client that hung).
async fn finish(mut tasks: JoinSet<()>, what: &str) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(FINISH_TIMEOUT, all).await.is_err() {
        eprintln!(
            "{} {what} still running after {FINISH_TIMEOUT:?}: ended",
            tasks.len()
        );
        tasks.abort_all();
    }
}

/// Waits until every confirmed message is acknowledged, or `bound`
/// passes.
async fn drain(history: &Mutex<AmqpHistory>, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let missing = history.lock().map_or(0, |h| check(&h).missing.len());
        if missing == 0 || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
