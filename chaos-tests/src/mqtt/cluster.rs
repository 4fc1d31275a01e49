//! The cluster under test: `fjord serve` processes with the MQTT gateway
//! on every node, started by the test kit as a fixed set of voters, and
//! what the nemesis and the run ask of them (MQTT addresses, who leads a
//! partition, how many shared-subscription members a node knows on the
//! others).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use fjord_proto::v1 as pb;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use fjord_testkit::{Gateways, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::{Proxy, node_ip};

/// How long the cluster may take to form once its nodes are up.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `size` nodes with the plain MQTT listener on, each logging to
/// `<dir>/n<id>.log`, as a fixed set of voters (`--peers`, every node
/// pinned to a gRPC port picked here), and waits until every node is live.
/// Node-to-node traffic goes through a proxy in front of each node (see
/// `proxy.rs`), so the nemesis can cut nodes off; MQTT clients connect to
/// the nodes directly. The gateway's topics are then made with three
/// replicas from the start, by any version of the binary (no rebalance
/// needed).
///
/// # Errors
/// A node cannot start or the cluster does not form within 60 s.
pub async fn start(
    binary: &Path,
    dir: &Path,
    size: usize,
    serve_args: &[String],
) -> Result<(Vec<Node>, Vec<Proxy>)> {
    start_with(binary, dir, size, Gateways::MQTT, serve_args).await
}

/// As [`start`], with `gateways` listening instead of MQTT's.
///
/// The gRPC ports are picked free and released before their nodes bind
/// them: another process, or a proxy's connection to a node, may take one
/// first. A start that finds its port taken is tried again (five times at
/// most), on new ports and fresh data directories.
///
/// # Errors
/// As [`start`].
pub async fn start_with(
    binary: &Path,
    dir: &Path,
    size: usize,
    gateways: Gateways,
    serve_args: &[String],
) -> Result<(Vec<Node>, Vec<Proxy>)> {
    let mut attempt = 0;
    loop {
        match start_once(binary, dir, size, gateways, serve_args).await {
            Err(e) if attempt < 4 && format!("{e:#}").contains("Address already in use") => {
                attempt += 1;
                for i in 1..=size {
                    let _ = std::fs::remove_dir_all(dir.join(format!("n{i}")));
                }
            }
            other => return other,
        }
    }
}

async fn start_once(
    binary: &Path,
    dir: &Path,
    size: usize,
    gateways: Gateways,
    serve_args: &[String],
) -> Result<(Vec<Node>, Vec<Proxy>)> {
    let grpc = (0..size).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
    let mut proxies = Vec::with_capacity(size);
    for addr in &grpc {
        let proxy = Proxy::start().await?;
        proxy.set_target(addr);
        proxies.push(proxy);
    }
    let peers: Vec<String> = proxies
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}={}", i + 1, p.addr))
        .collect();
    let peers = peers.join(",");
    // Started together: a voter waits for the others to form its quorum.
    let mut starting = Vec::with_capacity(size);
    for (i, addr) in grpc.iter().enumerate() {
        let id = (i + 1).to_string();
        let outbound = node_ip(i + 1).to_string();
        let node = Node::builder(binary)
            .log_level("warn")
            .gateways(gateways)
            .data_dir(dir.join(format!("n{id}")))
            .log(dir.join(format!("n{id}.log")))
            .flags(["--node-id", &id, "--peers", &peers, "--grpc-listen", addr])
            .flags(["--advertised-grpc", &proxies[i].addr])
            .flags(["--outbound-address", &outbound])
            .flags(serve_args.iter().cloned());
        starting.push(tokio::task::spawn_blocking(move || node.start()));
    }
    let mut nodes = Vec::with_capacity(size);
    for (i, started) in starting.into_iter().enumerate() {
        nodes.push(
            started
                .await?
                .with_context(|| format!("start node {}", i + 1))?,
        );
    }
    tokio::task::spawn_blocking(move || {
        nodes[0].wait_for_status("every node live", FORM_TIMEOUT, |s| {
            s["nodes"]
                .as_array()
                .is_some_and(|x| x.len() == size && x.iter().all(|x| x["live"] == true))
        })?;
        Ok(nodes)
    })
    .await?
    .map(|nodes| (nodes, proxies))
}

/// A free loopback address (bound, read back, released).
fn free_port() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

/// The MQTT address of `node`'s latest start.
///
/// # Errors
/// The node announced no MQTT listener.
pub fn mqtt_address(node: &Node) -> Result<String> {
    node.listeners()
        .mqtt
        .clone()
        .with_context(|| format!("node {} has no MQTT listener", node.grpc()))
}

/// The index of the node that leads `topic`-`partition`, as the first
/// live node that answers describes it (by its proxy's address).
pub async fn leader_of(
    nodes: &[Node],
    proxies: &[Proxy],
    topic: &str,
    partition: u32,
) -> Option<usize> {
    for node in nodes.iter().filter(|n| !n.is_down()) {
        let Some(leader) = describe_leader(node.grpc(), topic, partition).await else {
            continue;
        };
        return proxies.iter().position(|p| p.addr == leader);
    }
    None
}

async fn describe_leader(addr: &str, topic: &str, partition: u32) -> Option<String> {
    let channel = crate::workload::connect_to(addr).await?;
    let described = TopicServiceClient::new(channel)
        .describe_topic(pb::DescribeTopicRequest {
            name: topic.to_string(),
            local_only: false,
        })
        .await
        .ok()?;
    described
        .into_inner()
        .topic?
        .partitions
        .into_iter()
        .find(|p| p.partition == partition)
        .map(|p| p.leader_address)
        .filter(|a| !a.is_empty())
}

/// `fjord_mqtt_remote_shared_members` on `node`'s `/metrics`: members of
/// shared subscriptions it knows to be online on other nodes.
pub async fn remote_shared_members(node: &Node) -> Option<f64> {
    let body = http_get(node.http(), "/metrics").await?;
    body.lines()
        .find_map(|l| l.strip_prefix("fjord_mqtt_remote_shared_members "))
        .and_then(|v| v.trim().parse().ok())
}

/// The body of a plain HTTP/1.0 GET (bounded by a timeout).
async fn http_get(addr: &str, path: &str) -> Option<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .ok()?
}
