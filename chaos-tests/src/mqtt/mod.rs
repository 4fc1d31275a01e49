//! The MQTT schedule: persistent sessions on the MQTT gateway of a
//! cluster whose nodes are SIGKILLed and restarted, paused with SIGSTOP
//! and cut off from each other.
//!
//! Three nodes (by default), each with its MQTT listener, started by the
//! test kit as a fixed set of voters (`--peers`). Publishers (two at QoS
//! 1, one at QoS 2 and one at QoS 1 with the retain flag, each with its
//! own client id and topic `chaos/p<id>`) send numbered messages one at a
//! time, and a will publisher makes short connections with wills (see
//! `wills.rs`); subscribers are persistent sessions (clean session false, fixed
//! client ids) on `chaos/#`, one at QoS 1 and one at QoS 2, and (unless
//! turned off) a shared subscription `$share/g/chaos/#` of two members.
//! Every client starts on its own node and, when its connection is lost,
//! connects to the next node with the same client id and session.
//!
//! Once every subscriber has its SUBACK (and every node knows the shared
//! members on the others), the publishers start and the nemesis (see
//! `nemesis.rs`) kills, pauses or cuts off nodes for the configured time. Then
//! the publishers stop (their message in flight may finish), the
//! subscribers drain until each one (and the shared group as a whole)
//! holds every acknowledged message or the drain bound passes, and the
//! history is checked (see `history.rs`).
//!
//! # Layout
//! - [`history`]: the record of a run and the checker.
//! - [`session`]: a client's persistent session that follows the nodes.
//! - [`publisher`] and [`subscriber`]: the workload.
//! - [`cluster`]: the processes and what is asked of them.
//! - [`nemesis`]: the seeded fault schedule.
//! - [`wills`]: the will publisher and the retained message read at the
//!   end.

pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod publisher;
pub mod session;
pub mod subscriber;
pub mod wills;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fjord_testkit::Node;
use rumqttc::QoS;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Fault;
use crate::mqtt::history::{MqttHistory, MqttReport, PublisherLog, SubscriberLog, check};
use crate::mqtt::publisher::PublisherSpec;
use crate::mqtt::session::{Connections, Net};
use crate::mqtt::subscriber::SubscriberSpec;
use crate::stop::Stop;

/// How an MQTT run goes.
#[derive(Debug, Clone)]
pub struct MqttRunConfig {
    pub seed: u64,
    /// How long faults are injected.
    pub duration: Duration,
    /// Nodes in the cluster (3 or more: one is down at a time).
    pub nodes: usize,
    /// With the shared subscription group.
    pub shared: bool,
    /// How long, after the faults, subscribers may take to receive every
    /// acknowledged message.
    pub drain: Duration,
    /// `serve` flags for every node.
    pub serve_args: Vec<String>,
}

impl MqttRunConfig {
    /// The default schedule: 3 nodes, the shared group, a 30 s drain.
    pub fn new(seed: u64, duration: Duration) -> MqttRunConfig {
        MqttRunConfig {
            seed,
            duration,
            nodes: 3,
            shared: true,
            drain: Duration::from_secs(30),
            serve_args: Vec::new(),
        }
    }
}

/// How long the clients may take to subscribe at the start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the MQTT workload under faults and checks the history.
///
/// # Errors
/// The cluster cannot start, a subscriber cannot subscribe, or a killed
/// node cannot be restarted.
pub async fn run(
    binary: &Path,
    dir: &Path,
    config: &MqttRunConfig,
) -> Result<(MqttReport, Vec<Fault>)> {
    if config.nodes < 3 {
        bail!(
            "the MQTT schedule needs 3 nodes or more, not {}",
            config.nodes
        );
    }
    let (mut nodes, proxies) =
        cluster::start(binary, dir, config.nodes, &config.serve_args).await?;
    let addresses = nodes
        .iter()
        .map(cluster::mqtt_address)
        .collect::<Result<Vec<String>>>()?;
    let net = Net {
        addresses: Arc::new(Mutex::new(addresses)),
        connections: Connections::default(),
    };
    let (publishers, subscribers) = workload(config);
    let will_id = publishers.len();
    let retaining: Vec<usize> = publishers
        .iter()
        .filter(|p| p.retain)
        .map(|p| p.id)
        .collect();
    let history = Arc::new(Mutex::new(MqttHistory {
        publishers: publishers
            .iter()
            .map(publisher_log)
            .chain([will_log(will_id)])
            .collect(),
        subscribers: subscribers.iter().map(subscriber_log).collect(),
        stored_again: Default::default(),
    }));

    let (stop_subscribers, stop_publishers) = (Stop::default(), Stop::default());
    let mut listening = subscribe(&subscribers, &net, &history, &stop_subscribers).await?;
    wait_for_shared_members(&nodes, &subscribers).await;

    let mut publishing = JoinSet::new();
    for spec in publishers {
        let (net, history, stop) = (net.clone(), Arc::clone(&history), stop_publishers.clone());
        publishing.spawn(publisher::publisher(spec, net, history, stop));
    }
    let (n, h, stop) = (net.clone(), Arc::clone(&history), stop_publishers.clone());
    publishing.spawn(wills::graceful(will_id, n, h, stop));
    let faults = nemesis::run(&mut nodes, &proxies, &net, config.seed, config.duration).await?;
    stop_publishers.stop();
    while publishing.join_next().await.is_some() {}
    wills::dropped(will_id, DROPPED_WILLS, &net, &history).await;
    drain(&history, config.drain).await;
    for id in retaining {
        let found = wills::retained(&history::topic_of(id), &net).await;
        if let Ok(mut h) = history.lock()
            && let Some(p) = h.publishers.get_mut(id)
        {
            p.retained_at_end = found;
        }
    }
    let stored_again = stored_again(&nodes).await?;
    if let Ok(mut h) = history.lock() {
        h.stored_again = stored_again;
    }
    stop_subscribers.stop();
    while listening.join_next().await.is_some() {}
    drop(nodes);
    drop(proxies);
    let history = history
        .lock()
        .map_err(|_| anyhow::anyhow!("history lock poisoned"))?
        .clone();
    Ok((check(&history), faults))
}

/// The payloads the gateway's log topic holds more than once, with their
/// count.
async fn stored_again(nodes: &[Node]) -> Result<std::collections::BTreeMap<String, usize>> {
    let addrs: Vec<String> = nodes.iter().map(|n| n.grpc().to_string()).collect();
    let address: crate::workload::Address = Arc::new(Mutex::new(addrs));
    let partitions = crate::workload::partition_count(&address, LOG_TOPIC)
        .await
        .context("the MQTT log topic is not described")?;
    let mut copies = std::collections::BTreeMap::<String, usize>::new();
    for partition in 0..partitions {
        let log = crate::workload::read_settled(partition, LOG_TOPIC, &address).await?;
        for payload in log.into_values() {
            *copies.entry(payload).or_default() += 1;
        }
    }
    copies.retain(|_, n| *n > 1);
    Ok(copies)
}

/// The log topic the gateway maps `chaos/...` to (its default mapping).
const LOG_TOPIC: &str = "mqtt";

/// Starts the subscribers and waits (bounded) until each has its SUBACK.
async fn subscribe(
    subscribers: &[SubscriberSpec],
    net: &Net,
    history: &Arc<Mutex<MqttHistory>>,
    stop: &Stop,
) -> Result<JoinSet<()>> {
    let mut tasks = JoinSet::new();
    let mut ready = Vec::new();
    for spec in subscribers {
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push((spec.client_id.clone(), rx));
        let (net, history, stop) = (net.clone(), Arc::clone(history), stop.clone());
        tasks.spawn(subscriber::subscriber(spec.clone(), net, history, tx, stop));
    }
    for (client, rx) in ready {
        tokio::time::timeout(READY_TIMEOUT, rx)
            .await
            .with_context(|| format!("{client} got no SUBACK within {READY_TIMEOUT:?}"))?
            .with_context(|| format!("{client} ended before its SUBACK"))?;
    }
    Ok(tasks)
}

/// The publishers and subscribers of a run, spread over the nodes.
fn workload(config: &MqttRunConfig) -> (Vec<PublisherSpec>, Vec<SubscriberSpec>) {
    let n = config.nodes;
    let kinds = [
        (QoS::AtLeastOnce, false),
        (QoS::AtLeastOnce, false),
        (QoS::ExactlyOnce, false),
        (QoS::AtLeastOnce, true),
    ];
    let publishers = kinds
        .into_iter()
        .enumerate()
        .map(|(id, (qos, retain))| PublisherSpec {
            id,
            qos,
            retain,
            node: id % n,
        })
        .collect();
    let mut subscribers = vec![
        ("sub-q1", "chaos/#", QoS::AtLeastOnce, 0),
        ("sub-q2", "chaos/#", QoS::ExactlyOnce, 1),
    ];
    if config.shared {
        subscribers.push(("share-a", "$share/g/chaos/#", QoS::AtLeastOnce, 2));
        subscribers.push(("share-b", "$share/g/chaos/#", QoS::AtLeastOnce, 0));
    }
    let subscribers = subscribers
        .into_iter()
        .enumerate()
        .map(|(index, (id, filter, qos, node))| SubscriberSpec {
            index,
            client_id: id.to_string(),
            filter: filter.to_string(),
            qos,
            node: node % n,
        })
        .collect();
    (publishers, subscribers)
}

fn publisher_log(spec: &PublisherSpec) -> PublisherLog {
    PublisherLog {
        id: spec.id,
        qos: spec.qos as u8,
        retain: spec.retain,
        ..PublisherLog::default()
    }
}

/// The will publisher's record (see `wills.rs`): its id follows the
/// publishers'.
fn will_log(id: usize) -> PublisherLog {
    PublisherLog {
        id,
        qos: 1,
        unordered: true,
        ..PublisherLog::default()
    }
}

/// Wills whose connections are dropped after the faults (each must come).
const DROPPED_WILLS: u64 = 10;

fn subscriber_log(spec: &SubscriberSpec) -> SubscriberLog {
    let group = spec
        .filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(group, _)| group.to_string());
    SubscriberLog {
        client_id: spec.client_id.clone(),
        qos: spec.qos as u8,
        group,
        ..SubscriberLog::default()
    }
}

/// Waits (bounded) until every node counts the shared subscription's
/// members on the other nodes, so that the group gets every message from
/// the first one (a node that does not know the others' members yet may
/// leave a message to them). A node without the metric is not waited on.
async fn wait_for_shared_members(nodes: &[Node], subscribers: &[SubscriberSpec]) {
    let members: Vec<usize> = subscribers
        .iter()
        .filter(|s| s.filter.starts_with("$share/"))
        .map(|s| s.node)
        .collect();
    let deadline = Instant::now() + READY_TIMEOUT;
    for (i, node) in nodes.iter().enumerate() {
        let elsewhere = members.iter().filter(|m| **m != i).count() as f64;
        while let Some(known) = cluster::remote_shared_members(node).await
            && known != elsewhere
        {
            if Instant::now() > deadline {
                eprintln!(
                    "node {} knows {known} remote shared members, not {elsewhere}",
                    i + 1
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until every subscriber (and shared group) holds every
/// acknowledged message, or `bound` passes.
async fn drain(history: &Mutex<MqttHistory>, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let missing = history.lock().map_or(0, |h| check(&h).missing_count());
        if missing == 0 || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
