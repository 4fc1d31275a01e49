//! Cluster benchmark, all on this machine:
//!
//! 1. **Replicated throughput**: a 3-node cluster, RF=3, `acks=all`,
//!    `min.insync.replicas=2`, against a single node with `acks=1`, the same
//!    load measured in the same run (1 KiB records in batches of
//!    `--batch-records`, `--inflight` requests in flight per partition,
//!    `--partitions` partitions, each request sent to the partition's
//!    leader). Prints both and their ratio.
//! 2. **Failover**: one producer writes `acks=all` to partition 0 in a loop;
//!    the leader of partition 0 is SIGKILLed; the time from the kill to the
//!    first acknowledged write is recorded (the producer asks any node for
//!    the new leader). Repeated `--failovers` times (the victim restarts
//!    and catches up in between); prints p50, p99 and max.
//! 3. **Rebalance**: `--rebalance-partitions` RF=3 partitions with data on
//!    3 nodes; a 4th node joins; time from `rebalance` until every
//!    partition has moved and is fully in sync.
//!
//! ```text
//! cargo build --release -p fjord -p fjord-benches
//! target/release/cluster_bench
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use fjord_benches::host::busy_cpu;
use fjord_benches::metrics;
use fjord_benches::mqtt_server::cpu_time;
use fjord_benches::stats::{kill_summary, median};
use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use fjord_proto::v1::produce_service_client::ProduceServiceClient;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use fjord_storage::{BatchBuilder, Compression, Record};
use fjord_testkit::{Cluster, Node, NodeBuilder, fjord_binary};
use tokio::task::JoinSet;
use tonic::transport::Channel;

#[derive(Parser, Debug, Clone)]
#[command(about = "Replicated throughput, failover time and rebalance time of a Fjord cluster")]
struct Args {
    #[arg(long)]
    fjord_bin: Option<PathBuf>,
    /// Where data directories are made (a real disk).
    #[arg(long, default_value = "target/bench-data")]
    dir: PathBuf,
    /// Records per throughput run.
    #[arg(long, default_value_t = 300_000)]
    records: u64,
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    #[arg(long, default_value_t = 32)]
    batch_records: usize,
    #[arg(long, default_value_t = 32)]
    inflight: usize,
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Throughput runs per setup; medians are printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Leader kills for the failover figure.
    #[arg(long, default_value_t = 10)]
    failovers: usize,
    #[arg(long, default_value_t = 12)]
    rebalance_partitions: u32,
    /// Records written to each partition before the rebalance.
    #[arg(long, default_value_t = 5_000)]
    rebalance_records: u64,
    /// Extra `fjord serve` flags for every node (e.g. --flush-policy os).
    #[arg(long, allow_hyphen_values = true, num_args = 1..)]
    serve_arg: Vec<String>,
}

/// CPU time (user + system) `node` has used so far.
fn node_cpu(node: &Node) -> Duration {
    node.pid()
        .and_then(|pid| cpu_time(&pid.to_string()))
        .unwrap_or_default()
}

/// How every node of the benchmark starts: no gateways, `extra` flags.
fn node(binary: &Path, extra: &[String]) -> NodeBuilder {
    Node::builder(binary)
        .log_level("warn")
        .flags(extra.iter().cloned())
}

async fn channel(addr: &str) -> Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .connect()
        .await?)
}

async fn status(addr: &str) -> Result<pb::ClusterStatusResponse> {
    Ok(ClusterServiceClient::new(channel(addr).await?)
        .status(pb::ClusterStatusRequest {})
        .await?
        .into_inner())
}

/// Bootstraps node 1 and joins the others; waits until all are live.
async fn start_cluster(binary: &Path, dir: &Path, n: u32, extra: &[String]) -> Result<Cluster> {
    let cluster = Cluster::builder(node(binary, extra), dir, n);
    tokio::task::spawn_blocking(move || cluster.start()).await?
}

async fn wait_until(addr: &str, ok: impl Fn(&pb::ClusterStatusResponse) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(s) = status(addr).await
            && ok(&s)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the cluster did not reach the expected state in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create(
    addr: &str,
    topic: &str,
    partitions: u32,
    rf: u32,
    configs: &[(&str, &str)],
) -> Result<()> {
    TopicServiceClient::new(channel(addr).await?)
        .create_topic(pb::CreateTopicRequest {
            name: topic.into(),
            partitions,
            replication_factor: rf,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await?;
    Ok(())
}

/// The leader address of each partition, as `addr` describes them.
async fn leaders(addr: &str, topic: &str) -> Result<Vec<String>> {
    let t = TopicServiceClient::new(channel(addr).await?)
        .describe_topic(pb::DescribeTopicRequest {
            name: topic.into(),
            local_only: false,
        })
        .await?
        .into_inner()
        .topic
        .context("no topic")?;
    Ok(t.partitions
        .into_iter()
        .map(|p| {
            if p.leader_address.is_empty() {
                addr.to_string()
            } else {
                p.leader_address
            }
        })
        .collect())
}

fn batch(records: usize, size: usize) -> Result<Bytes> {
    let mut b = BatchBuilder::new(Compression::None);
    let value = Bytes::from(vec![b'x'; size]);
    for _ in 0..records {
        b.add(Record::new(None, Some(value.clone()), 0));
    }
    Ok(b.build()?)
}

/// Counters read off the nodes' `/metrics` pages.
const COUNTERS: [&str; 3] = [
    "fjord_replica_fetch_responses_total",
    "fjord_replica_fetch_bytes_total",
    "fjord_flushes_total",
];

/// [`COUNTERS`] summed over `nodes` (zeros where a page is unreadable).
fn counters(nodes: &[&Node]) -> [f64; 3] {
    let mut total = [0.0; 3];
    for node in nodes {
        if let Some(page) = metrics::scrape(node.http()) {
            for (sum, name) in total.iter_mut().zip(COUNTERS) {
                *sum += metrics::value(&page, name).unwrap_or(0.0);
            }
        }
    }
    total
}

/// How much each of [`COUNTERS`] grew.
fn grown(after: [f64; 3], before: [f64; 3]) -> [f64; 3] {
    [
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2],
    ]
}

/// One batch for one partition.
fn produce_request(
    topic: &str,
    acks: pb::Acks,
    partition: usize,
    batch: &Bytes,
) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.to_string(),
        acks: acks as i32,
        batches: vec![pb::PartitionBatch {
            partition: partition as u32,
            batch: batch.clone(),
        }],
        ..Default::default()
    }
}

/// Waits until every partition of a new `topic` has a leader that takes
/// a one-record write with `acks` (so a run times the steady state, not
/// the topic's start: leaders taking up their role, followers starting to
/// fetch); returns the leaders' addresses.
async fn warm_up(addr: &str, topic: &str, acks: pb::Acks) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let one = batch(1, 16)?;
    'again: loop {
        if Instant::now() > deadline {
            bail!("{topic} did not take writes within 30 s");
        }
        let leaders = leaders(addr, topic).await?;
        for (p, leader) in leaders.iter().enumerate() {
            let r = ProduceServiceClient::new(channel(leader).await?)
                .produce(produce_request(topic, acks, p, &one))
                .await?
                .into_inner();
            if r.results.iter().any(|r| r.error != 0) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue 'again;
            }
        }
        return Ok(leaders);
    }
}

/// Sends `records` to `topic` as fast as the acks allow; records/s.
async fn throughput(addrs: &[String], topic: &str, acks: pb::Acks, args: &Args) -> Result<f64> {
    let leaders = warm_up(&addrs[0], topic, acks).await?;
    let one = batch(args.batch_records, args.record_size)?;
    let per_task = args.records / (u64::from(args.partitions) * args.inflight as u64);
    let batches_per_task = per_task.div_ceil(args.batch_records as u64).max(1);
    let mut channels = Vec::new();
    for leader in &leaders {
        channels.push(channel(leader).await?);
    }
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (p, ch) in channels.iter().enumerate() {
        for _ in 0..args.inflight {
            let mut client =
                ProduceServiceClient::new(ch.clone()).max_encoding_message_size(64 << 20);
            let (topic, one) = (topic.to_string(), one.clone());
            tasks.spawn(async move {
                let mut sent = 0;
                while sent < batches_per_task {
                    let r = client
                        .produce(produce_request(&topic, acks, p, &one))
                        .await?
                        .into_inner();
                    match r.results.iter().find(|r| r.error != 0) {
                        None => sent += 1,
                        // A new topic's leader may not have taken up its
                        // role yet: try again shortly.
                        Some(e) if e.error == pb::ErrorCode::ErrorNotLeader as i32 => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Some(e) => bail!("produce failed: {}", e.error_message),
                    }
                }
                Ok::<u64, anyhow::Error>(batches_per_task)
            });
        }
    }
    let mut batches = 0;
    while let Some(done) = tasks.join_next().await {
        batches += done??;
    }
    Ok((batches * args.batch_records as u64) as f64 / started.elapsed().as_secs_f64())
}

/// Kills the leader of partition 0 and times the first acknowledged write
/// after it; the victim restarts and catches up afterwards.
async fn failover(nodes: &mut [Node], topic: &str) -> Result<Duration> {
    let addrs: Vec<String> = nodes.iter().map(|n| n.grpc().to_string()).collect();
    let leader = leaders(&addrs[0], topic).await?[0].clone();
    let victim = nodes
        .iter()
        .position(|n| n.grpc() == leader)
        .context("leader is not a node")?;
    let one = batch(1, 100)?;
    let killed = Instant::now();
    nodes[victim].kill9();
    let elapsed = loop {
        let mut sent = false;
        for (i, addr) in addrs.iter().enumerate() {
            if i == victim {
                continue;
            }
            let Ok(l) = leaders(addr, topic).await else {
                continue;
            };
            if l[0] == leader {
                continue;
            }
            let Ok(ch) = channel(&l[0]).await else {
                continue;
            };
            let r = ProduceServiceClient::new(ch)
                .produce(pb::ProduceRequest {
                    topic: topic.into(),
                    acks: pb::Acks::All as i32,
                    batches: vec![pb::PartitionBatch {
                        partition: 0,
                        batch: one.clone(),
                    }],
                    ..Default::default()
                })
                .await;
            if let Ok(r) = r
                && r.into_inner().results.iter().all(|r| r.error == 0)
            {
                sent = true;
            }
            break;
        }
        if sent {
            break killed.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::task::block_in_place(|| nodes[victim].restart())?;
    wait_until(&addrs[(victim + 1) % addrs.len()], |s| {
        s.quorum && s.under_replicated.is_empty() && s.nodes.iter().all(|n| n.live)
    })
    .await?;
    Ok(elapsed)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = fjord_binary(args.fjord_bin.as_deref())?;
    std::fs::create_dir_all(&args.dir)?;
    let scratch = tempfile::tempdir_in(&args.dir)?;
    println!(
        "{} records x {} B per run, batches of {}, {} in flight per partition, {} partitions, {} runs",
        args.records,
        args.record_size,
        args.batch_records,
        args.inflight,
        args.partitions,
        args.runs
    );

    // 1. Throughput: single node acks=1 vs 3 nodes RF=3 acks=all.
    let mut single = Vec::new();
    let mut replicated = Vec::new();
    {
        let node = node(&binary, &args.serve_arg)
            .data_dir(scratch.path().join("single"))
            .start()?;
        let three =
            start_cluster(&binary, &scratch.path().join("three"), 3, &args.serve_arg).await?;
        let nodes = three.nodes();
        let addrs: Vec<String> = nodes.iter().map(|n| n.grpc().to_string()).collect();
        for run in 0..args.runs {
            let t = format!("single-{run}");
            create(node.grpc(), &t, args.partitions, 1, &[]).await?;
            // CPU time of the servers, of this load generator and of the
            // whole machine (kernel threads included).
            let cpu = |nodes: &[&Node]| -> (Duration, Duration, Duration) {
                (
                    nodes.iter().map(|n| node_cpu(n)).sum(),
                    cpu_time("self").unwrap_or_default(),
                    busy_cpu().unwrap_or_default(),
                )
            };
            let all: Vec<&Node> = nodes.iter().collect();
            let (cpu0, counters0) = (cpu(&[&node]), counters(&[&node]));
            single.push(throughput(&[node.grpc().to_string()], &t, pb::Acks::Leader, &args).await?);
            let (cpu1, counters1) = (cpu(&[&node]), counters(&[&node]));
            let t = format!("replicated-{run}");
            create(
                &addrs[0],
                &t,
                args.partitions,
                3,
                &[("min.insync.replicas", "2")],
            )
            .await?;
            let (cpu2, counters2) = (cpu(&all), counters(&all));
            replicated.push(throughput(&addrs, &t, pb::Acks::All, &args).await?);
            let (cpu3, counters3) = (cpu(&all), counters(&all));
            let [_, _, single_flushes] = grown(counters1, counters0);
            let [fetches, bytes, flushes] = grown(counters3, counters2);
            let per_record = |d: Duration| d.as_secs_f64() * 1e6 / args.records as f64;
            println!(
                "run {run}: single node acks=1 {:.0} records/s (CPU-µs/record: server {:.2}, \
                 load generator {:.2}, machine {:.2}; {single_flushes:.0} fsyncs), \
                 3 nodes RF=3 acks=all {:.0} records/s (CPU-µs/record: 3 servers {:.2}, \
                 load generator {:.2}, machine {:.2}; {flushes:.0} fsyncs, \
                 {fetches:.0} follower fetches of {:.0} KiB on average)",
                single[run],
                per_record(cpu1.0.saturating_sub(cpu0.0)),
                per_record(cpu1.1.saturating_sub(cpu0.1)),
                per_record(cpu1.2.saturating_sub(cpu0.2)),
                replicated[run],
                per_record(cpu3.0.saturating_sub(cpu2.0)),
                per_record(cpu3.1.saturating_sub(cpu2.1)),
                per_record(cpu3.2.saturating_sub(cpu2.2)),
                bytes / fetches.max(1.0) / 1024.0
            );
        }
    }
    let (s, r) = (median(&single), median(&replicated));
    // Each run measures both back to back: the median of the per-run
    // ratios is steadier than the ratio of medians on a drifting disk.
    let ratios: Vec<f64> = single.iter().zip(&replicated).map(|(s, r)| r / s).collect();
    println!(
        "throughput (median): single acks=1 {s:.0} records/s; 3-node RF=3 acks=all {r:.0} records/s; ratio per run {}; median ratio {:.2}",
        ratios
            .iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        median(&ratios)
    );

    if args.failovers > 0 {
        failovers(&binary, scratch.path(), &args).await?;
    }
    if args.rebalance_partitions > 0 {
        rebalance(&binary, scratch.path(), &args).await?;
    }
    Ok(())
}

/// Kills the leader `args.failovers` times; prints the percentiles.
async fn failovers(binary: &Path, scratch: &Path, args: &Args) -> Result<()> {
    let mut cluster = start_cluster(binary, &scratch.join("failover"), 3, &args.serve_arg).await?;
    let nodes = cluster.nodes_mut();
    create(
        nodes[0].grpc(),
        "failover",
        1,
        3,
        &[("min.insync.replicas", "2")],
    )
    .await?;
    let mut times = Vec::new();
    for i in 0..args.failovers {
        let t = failover(nodes, "failover").await?;
        println!(
            "failover {i}: first acks=all write {} ms after the kill",
            t.as_millis()
        );
        times.push(t);
    }
    drop(cluster);
    println!(
        "failover (kill -9 of the leader → first acks=all write): {}",
        kill_summary(times)
    );
    Ok(())
}

/// Adds a fourth node to a loaded 3-node cluster and times `rebalance`.
async fn rebalance(binary: &Path, scratch: &Path, args: &Args) -> Result<()> {
    let mut cluster = start_cluster(binary, &scratch.join("rebalance"), 3, &args.serve_arg).await?;
    let addrs: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| n.grpc().to_string())
        .collect();
    create(&addrs[0], "spread", args.rebalance_partitions, 3, &[]).await?;
    let fill = Args {
        records: args.rebalance_records * u64::from(args.rebalance_partitions),
        partitions: args.rebalance_partitions,
        inflight: 1,
        ..args.clone()
    };
    throughput(&addrs, "spread", pb::Acks::All, &fill).await?;
    tokio::task::block_in_place(|| cluster.join_one())?;
    wait_until(&addrs[0], |s| {
        s.nodes.len() == 4 && s.nodes.iter().all(|n| n.live)
    })
    .await?;
    let started = Instant::now();
    let moved = ClusterServiceClient::new(channel(&addrs[0]).await?)
        .rebalance(pb::RebalanceRequest::default())
        .await;
    let moved = match moved {
        Ok(r) => r.into_inner().moved,
        Err(e) if e.code() == tonic::Code::Unavailable => {
            // Sent to a node that is not the controller: ask the controller.
            let s = status(&addrs[0]).await?;
            let c = s
                .nodes
                .iter()
                .find(|n| n.id == s.controller)
                .context("no controller")?;
            ClusterServiceClient::new(channel(&c.address).await?)
                .rebalance(pb::RebalanceRequest::default())
                .await?
                .into_inner()
                .moved
        }
        Err(e) => return Err(e.into()),
    };
    // With too few partitions to share, nothing moves.
    wait_until(&addrs[0], |s| {
        s.reassigning == 0
            && s.under_replicated.is_empty()
            && (moved == 0 || s.nodes.iter().any(|n| n.id == 4 && n.replicas > 0))
    })
    .await?;
    let took = started.elapsed();
    let s = status(&addrs[0]).await?;
    let share: Vec<String> = s
        .nodes
        .iter()
        .map(|n| {
            format!(
                "node {}: {} replicas, {} leaders",
                n.id, n.replicas, n.leaders
            )
        })
        .collect();
    println!(
        "rebalance onto a 4th node: {moved} of {} partitions moved ({} records x {} B each) in {:.2} s; {}",
        args.rebalance_partitions,
        args.rebalance_records,
        args.record_size,
        took.as_secs_f64(),
        share.join("; ")
    );
    Ok(())
}
