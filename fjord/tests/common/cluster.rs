//! Clusters of `fjord serve` processes for tests (formed by the kit), and
//! polling `fjord cluster status` until a condition holds.

use std::time::Duration;

use fjord_testkit::{Cluster, Gateways, Node};
use serde_json::Value;

use super::{BIN, Server};

pub fn join_args(node_id: u32, join: &str) -> Vec<String> {
    fjord_testkit::join_args(node_id, join)
}

pub fn start(dir: &std::path::Path, name: &str, args: &[String]) -> Server {
    let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // Cluster tests count topics and replicas: no gateway topics.
    refs.extend(super::GATEWAYS_OFF);
    Server::start_with(&dir.join(name), &refs)
}

/// Bootstraps node 1 and joins nodes 2..=n to it.
pub fn cluster(dir: &std::path::Path, n: u32) -> Vec<Server> {
    form(dir, n, Gateways::NONE, &[])
}

/// As [`cluster`], every node with `extra` flags too.
#[allow(dead_code)]
pub fn cluster_with_flags(dir: &std::path::Path, n: u32, extra: &[&str]) -> Vec<Server> {
    form(dir, n, Gateways::NONE, extra)
}

/// As [`cluster`], every node with its MQTT listener on a free port, plus
/// `extra` flags.
#[allow(dead_code)]
pub fn cluster_with_mqtt(dir: &std::path::Path, n: u32, extra: &[&str]) -> Vec<Server> {
    form(dir, n, Gateways::MQTT, extra)
}

/// As [`cluster`], every node with its AMQP listener on a free port (and
/// no MQTT).
#[allow(dead_code)]
pub fn cluster_with_amqp(dir: &std::path::Path, n: u32) -> Vec<Server> {
    form(dir, n, Gateways::AMQP, &[])
}

fn form(dir: &std::path::Path, n: u32, gateways: Gateways, extra: &[&str]) -> Vec<Server> {
    let template = Node::builder(BIN)
        .gateways(gateways)
        .flags(extra.iter().copied());
    Cluster::builder(template, dir, n)
        .logs()
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
        .into_nodes()
        .into_iter()
        .map(Server::from)
        .collect()
}

pub fn status(server: &Server) -> Value {
    server.node().cluster_status().unwrap_or(Value::Null)
}

/// Polls `fjord cluster status` on `server` until `ok` holds (bounded).
pub fn wait_for(server: &Server, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    server
        .node()
        .wait_for_status(what, Duration::from_secs(60), ok)
        .unwrap_or_else(|e| panic!("{e:#}\nthe node's log ends:\n{}", server.log_tail(60)))
}
