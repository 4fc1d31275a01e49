//! What a node's death costs gateway clients, on a 3-node cluster on this
//! machine (every node with an MQTT and an AMQP listener).
//!
//! - **MQTT**: a persistent-session subscriber (clean session false, QoS 1)
//!   is connected to the victim; a QoS 1 publisher on another node
//!   publishes a timestamped message every 10 ms. The victim is SIGKILLed;
//!   the subscriber reconnects (same client id) to the next node until it
//!   is accepted. Figures: kill → CONNACK accepted, and kill → the first
//!   message published after the kill received ("served again").
//! - **AMQP**: the victim is the node that runs the AMQP gateway (its
//!   queues). A consumer and a confirming publisher are connected to the
//!   other nodes (their connections are carried to the victim). After the
//!   kill both reconnect to a surviving node until a publish is confirmed
//!   and consumed. Figures: kill → first confirmed publish, and kill →
//!   the first message published after the kill consumed.
//!
//! The victim restarts and the cluster is back in sync between kills.
//! Prints each kill and p50/p99/max over `--kills`.
//!
//! ```text
//! cargo build --release -p fjord -p fjord-benches
//! target/release/failover_bench --kills 10
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use fjord_benches::metrics;
use fjord_benches::stats::kill_summary;
use fjord_testkit::{Cluster, Gateways, Node, fjord_binary};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[derive(Parser, Debug)]
#[command(about = "Time until MQTT and AMQP clients are served again after a node dies")]
struct Args {
    /// The fjord binary (default: next to this program).
    #[arg(long)]
    fjord_bin: Option<PathBuf>,
    /// Where the nodes' data directories are made.
    #[arg(long, default_value = "target/bench-data")]
    dir: PathBuf,
    /// Kills per protocol.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Protocols to measure.
    #[arg(long, value_delimiter = ',', default_value = "mqtt,amqp")]
    protocols: Vec<String>,
    /// FJORD_LOG_LEVEL for the nodes (their logs are kept when a run fails).
    #[arg(long, default_value = "warn")]
    fjord_log_level: String,
    /// Give up on one failover after this long.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

/// Nanoseconds since `base`, as a message body.
fn stamp(base: Instant) -> Vec<u8> {
    (base.elapsed().as_nanos() as u64).to_be_bytes().to_vec()
}

fn stamped_after(body: &[u8], base: Instant, at: Instant) -> bool {
    let Ok(bytes) = <[u8; 8]>::try_from(body.get(..8).unwrap_or_default()) else {
        return false;
    };
    Duration::from_nanos(u64::from_be_bytes(bytes)) > at.duration_since(base)
}

fn mqtt_addr(node: &Node) -> Result<(String, u16)> {
    let addr: std::net::SocketAddr = node
        .listeners()
        .mqtt
        .as_deref()
        .context("no MQTT listener")?
        .parse()?;
    Ok((addr.ip().to_string(), addr.port()))
}

/// Connects `id` to `node` (persistent session); returns the client and a
/// task that forwards received payloads (until aborted).
async fn mqtt_connect(
    node: &Node,
    id: &str,
    tx: mpsc::UnboundedSender<Vec<u8>>,
) -> Result<(AsyncClient, JoinHandle<()>)> {
    let (host, port) = mqtt_addr(node)?;
    let mut options = MqttOptions::new(id, host, port);
    options.set_clean_session(false);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(options, 1000);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) => {
                if a.code != rumqttc::ConnectReturnCode::Success {
                    bail!("CONNACK {:?}", a.code);
                }
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("{e}"),
            Err(_) => bail!("no CONNACK in 5 s"),
        }
    }
    // The client connects again (to the same node) when its connection
    // breaks: the gateway closes a publisher's connection when a publish
    // may or may not have been appended (its partition's leader died), and
    // the client sends what was unacknowledged again.
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p.payload.to_vec()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    Ok((client, task))
}

/// A QoS 1 publisher on `node`, a message every 10 ms until aborted.
async fn mqtt_publisher(node: &Node, base: Instant) -> Result<JoinHandle<()>> {
    let (tx, _rx) = mpsc::unbounded_channel();
    let (client, events) = mqtt_connect(node, "failover-pub", tx).await?;
    Ok(tokio::spawn(async move {
        let _events = AbortOnDrop(events);
        loop {
            if client
                .publish("failover/t", QoS::AtLeastOnce, false, stamp(base))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }))
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits for a payload stamped after `at`.
async fn first_after(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>, base: Instant, at: Instant) {
    while let Some(body) = rx.recv().await {
        if stamped_after(&body, base, at) {
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Before a kill: a subscriber on `victim` that received a message
/// published through the next node after it subscribed.
async fn mqtt_live_subscriber(
    nodes: &[Node],
    victim: usize,
    tx: &mpsc::UnboundedSender<Vec<u8>>,
    rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    base: Instant,
) -> Result<(AsyncClient, AbortOnDrop, AbortOnDrop)> {
    let (sub, events) = within("the subscriber before the kill", async {
        mqtt_connect(&nodes[victim], "failover-sub", tx.clone()).await
    })
    .await?;
    let events = AbortOnDrop(events);
    sub.subscribe("failover/t", QoS::AtLeastOnce).await?;
    let publisher = within(
        "the publisher",
        mqtt_publisher(&nodes[(victim + 1) % 3], base),
    )
    .await?;
    let publisher = AbortOnDrop(publisher);
    let since = Instant::now();
    within("a message before the kill", async {
        first_after(rx, base, since).await;
        Ok(())
    })
    .await?;
    Ok((sub, events, publisher))
}

/// One MQTT failover with node `victim`: (kill → CONNACK, kill → served).
async fn mqtt_failover(nodes: &mut [Node], victim: usize, base: Instant) -> Result<[Duration; 2]> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_sub, _events, _publisher) =
        mqtt_live_subscriber(nodes, victim, &tx, &mut rx, base).await?;
    let killed = Instant::now();
    nodes[victim].kill9();
    let mut next = victim;
    let mut last = String::new();
    let (_sub, events) = loop {
        if killed.elapsed() > Duration::from_secs(30) {
            bail!("no node accepted the subscriber again in 30 s (last: {last})");
        }
        next = (next + 1) % 3;
        if next == victim {
            continue;
        }
        match mqtt_connect(&nodes[next], "failover-sub", tx.clone()).await {
            Ok(connected) => break connected,
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _events = AbortOnDrop(events);
    let connack = killed.elapsed();
    within("the first message after the kill", async {
        first_after(&mut rx, base, killed).await;
        Ok(())
    })
    .await?;
    Ok([connack, killed.elapsed()])
}

fn amqp_url(node: &Node) -> Result<String> {
    let addr = node.listeners().amqp.clone().context("no AMQP listener")?;
    Ok(format!("amqp://guest:guest@{addr}/%2f"))
}

/// The node that runs the AMQP gateway (`fjord_amqp_serving 1`).
fn amqp_serving(nodes: &[Node]) -> Option<usize> {
    nodes.iter().position(|n| {
        metrics::scrape(n.http())
            .and_then(|page| metrics::value(&page, "fjord_amqp_serving"))
            .is_some_and(|v| v == 1.0)
    })
}

/// Opens a consumer of `queue` on `url` that forwards bodies.
async fn amqp_consumer(
    url: &str,
    queue: &str,
    tx: mpsc::UnboundedSender<Vec<u8>>,
) -> Result<(Connection, JoinHandle<()>)> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "failover-consumer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let task = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let _ = d.ack(BasicAckOptions::default()).await;
            if tx.send(d.data.clone()).is_err() {
                return;
            }
        }
    });
    Ok((conn, task))
}

/// Publishes one stamped message to `queue` on `url` and waits for its
/// confirm.
async fn amqp_publish(url: &str, queue: &str, base: Instant) -> Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &stamp(base),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
    let _ = conn.close(200, "done".into()).await;
    if !confirm.is_ack() {
        bail!("nacked");
    }
    Ok(())
}

/// Before a kill: the gateway's node, and a consumer on another node
/// that received a message published through the third.
async fn amqp_live_consumer(
    nodes: &[Node],
    queue: &str,
    tx: &mpsc::UnboundedSender<Vec<u8>>,
    rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    base: Instant,
) -> Result<(usize, Connection, AbortOnDrop)> {
    let victim = amqp_serving(nodes).context("no node runs the AMQP gateway")?;
    let (conn, task) = within("the consumer before the kill", async {
        amqp_consumer(&amqp_url(&nodes[(victim + 1) % 3])?, queue, tx.clone()).await
    })
    .await?;
    let task = AbortOnDrop(task);
    within("a publish before the kill", async {
        amqp_publish(&amqp_url(&nodes[(victim + 2) % 3])?, queue, base).await
    })
    .await?;
    within("a delivery before the kill", async {
        first_after(rx, base, base).await;
        Ok(())
    })
    .await?;
    Ok((victim, conn, task))
}

/// One AMQP failover of the gateway's node, on a queue of its own (a
/// consumer an earlier round left behind cannot take its messages):
/// (kill → first confirmed publish, kill → served).
async fn amqp_failover(nodes: &mut [Node], round: usize, base: Instant) -> Result<[Duration; 2]> {
    let queue = format!("failover-{round}");
    let queue = queue.as_str();
    let (tx, mut rx) = mpsc::unbounded_channel();
    // A restarted node takes its preferred leaderships back, and the
    // gateway moves with `__amqp_acks` (closing every AMQP connection): a
    // consumer that lost its connection that way tries again.
    let mut attempt = 0;
    let (victim, _conn, _task) = loop {
        attempt += 1;
        match amqp_live_consumer(nodes, queue, &tx, &mut rx, base).await {
            Ok(live) => break live,
            Err(e) if attempt >= 5 => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    let killed = Instant::now();
    nodes[victim].kill9();
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| amqp_url(&nodes[i]))
        .collect::<Result<_>>()?;
    let mut turn = 0;
    let (conn, task) = loop {
        turn += 1;
        let url = &survivors[turn % 2];
        if let Ok(c) = within("a consumer", amqp_consumer(url, queue, tx.clone())).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _task = AbortOnDrop(task);
    let confirmed = loop {
        turn += 1;
        if within("a publish", amqp_publish(&survivors[turn % 2], queue, base))
            .await
            .is_ok()
        {
            break killed.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    within("the first delivery after the kill", async {
        first_after(&mut rx, base, killed).await;
        Ok(())
    })
    .await?;
    let served = killed.elapsed();
    // Closed, so that the next round's consumer is the queue's only one.
    let _ = within("closing the consumer", async {
        Ok(conn.close(200, "done".into()).await?)
    })
    .await;
    Ok([confirmed, served])
}

/// `step` within a few seconds, or an error naming it.
async fn within<T>(step: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .with_context(|| format!("{step}: no answer in 10 s"))?
        .with_context(|| step.to_string())
}

/// Restarts `victim` and waits until every node is live and in sync.
fn recover(nodes: &mut [Node], victim: usize) -> Result<()> {
    nodes[victim].restart()?;
    nodes[(victim + 1) % 3].wait_for_status(
        "all live, in sync",
        Duration::from_secs(120),
        |s| {
            s["quorum"] == true
                && s["under_replicated"].as_array().is_some_and(Vec::is_empty)
                && s["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().all(|x| x["live"] == true))
        },
    )?;
    Ok(())
}

async fn run(protocol: &str, nodes: &mut [Node], args: &Args) -> Result<()> {
    let base = Instant::now();
    let (mut first, mut served) = (Vec::new(), Vec::new());
    for i in 0..args.kills {
        let limit = Duration::from_secs(args.timeout_secs);
        let one = match protocol {
            "mqtt" => tokio::time::timeout(limit, mqtt_failover(nodes, i % 3, base)).await,
            _ => tokio::time::timeout(limit, amqp_failover(nodes, i, base)).await,
        };
        let [a, b] = one.context("a failover took too long")??;
        let victim = nodes.iter().position(Node::is_down).context("no victim")?;
        println!(
            "{protocol} kill {i} (node {}): {} ms to the first answer, {} ms until served again",
            victim + 1,
            a.as_millis(),
            b.as_millis()
        );
        first.push(a);
        served.push(b);
        tokio::task::block_in_place(|| recover(nodes, victim))?;
    }
    let answer = if protocol == "mqtt" {
        "kill → CONNACK accepted on another node"
    } else {
        "kill → first confirmed publish"
    };
    println!("{protocol}: {answer}: {}", kill_summary(first));
    println!(
        "{protocol}: kill → first new message received: {}",
        kill_summary(served)
    );
    Ok(())
}

fn start(binary: &Path, dir: &Path, log_level: &str) -> Result<Cluster> {
    let gateways = Gateways {
        mqtt: true,
        amqp: true,
        ..Gateways::NONE
    };
    let template = Node::builder(binary)
        .log_level(log_level)
        .gateways(gateways);
    Cluster::builder(template, dir, 3).logs().start()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = fjord_binary(args.fjord_bin.as_deref())?;
    std::fs::create_dir_all(&args.dir)?;
    let scratch = tempfile::Builder::new()
        .prefix("failover-bench-")
        .tempdir_in(&args.dir)?;
    println!(
        "fjord: {}; 3 nodes on loopback; {} kills per protocol",
        binary.display(),
        args.kills
    );
    for protocol in &args.protocols {
        if protocol != "mqtt" && protocol != "amqp" {
            bail!("unknown protocol {protocol:?} (mqtt, amqp)");
        }
        let dir = scratch.path().join(protocol);
        let mut cluster =
            tokio::task::block_in_place(|| start(&binary, &dir, &args.fjord_log_level))?;
        if let Err(e) = run(protocol, cluster.nodes_mut(), &args).await {
            drop(cluster);
            let kept = scratch.keep();
            eprintln!("the nodes' logs are kept in {}", kept.display());
            return Err(e);
        }
    }
    Ok(())
}
