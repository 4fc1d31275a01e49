//! Chaos tests: real `fjord` processes under faults, and a checker that
//! judges what clients saw.
//!
//! A run starts a node, creates a topic, runs the workload (producers with
//! `acks=all` writing unique values, a consumer per partition) while a
//! seeded nemesis kills the node with SIGKILL and restarts it, or pauses it
//! with SIGSTOP. When the time is up the faults stop, the log is read back
//! and the history is checked (see `history.rs`). Every run prints its seed;
//! the same seed replays the same fault schedule.
//!
//! Today the target is a single node (the durability of acknowledged
//! writes across crashes); multi-node clusters and network partitions
//! come with replication.
//!
//! # Layout
//! - [`history`]: the record of a run and the checker.
//! - [`node`]: a `fjord serve` process to kill, pause and restart.
//! - [`workload`]: producers and consumers that follow the node.
//! - [`stop`]: the flag that ends the workload.

pub mod history;
pub mod node;
pub mod stop;
pub mod workload;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fjord_proto::v1 as pb;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{History, Report, check};
use crate::node::Node;
use crate::stop::Stop;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    /// How long faults are injected.
    pub duration: Duration,
    pub partitions: u32,
    pub producers: usize,
    /// `serve` flags for the node (e.g. a flush policy).
    pub serve_args: Vec<String>,
}

/// One fault the nemesis injected, for the run's log.
#[derive(Debug, Clone)]
pub struct Fault {
    pub at: Duration,
    pub what: String,
}

/// Runs the workload under faults and checks the history.
///
/// # Errors
/// The node cannot start or be reached after the faults stop.
pub async fn run(binary: &Path, dir: &Path, config: &RunConfig) -> Result<(Report, Vec<Fault>)> {
    let extra: Vec<&str> = config.serve_args.iter().map(String::as_str).collect();
    let node = Node::start(binary, &dir.join("node"), &extra)?;
    let address = Arc::new(Mutex::new(node.grpc.clone()));
    let topic = "chaos".to_string();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.grpc))?
        .connect()
        .await?;
    TopicServiceClient::new(channel)
        .create_topic(pb::CreateTopicRequest {
            name: topic.clone(),
            partitions: config.partitions,
            replication_factor: 1,
            configs: Default::default(),
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

    let (node, faults) = nemesis(node, &address, config).await?;
    // Let the workload see the healthy node once more, then stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.stop();
    while tasks.join_next().await.is_some() {}
    workload::read_final(config.partitions, &topic, &address, &history).await?;
    drop(node);
    let history = history
        .lock()
        .map_err(|_| anyhow::anyhow!("history lock poisoned"))?
        .clone();
    Ok((check(&history), faults))
}

/// Injects seeded faults for `config.duration`; hands back the node, running.
async fn nemesis(
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
                a.clone_from(&node.grpc);
            }
        } else {
            let pause = Duration::from_millis(rng.random_range(100..1200));
            faults.push(Fault {
                at,
                what: format!("SIGSTOP for {} ms", pause.as_millis()),
            });
            node.pause();
            tokio::time::sleep(pause).await;
            node.resume();
        }
    }
    Ok((node, faults))
}
