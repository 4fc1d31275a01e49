//! Clusters of `fjord serve` processes for tests: forming one, and polling
//! `fjord cluster status` until a condition holds.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Server;

pub fn join_args(node_id: u32, join: &str) -> Vec<String> {
    vec![
        "--node-id".into(),
        node_id.to_string(),
        "--join".into(),
        join.to_string(),
    ]
}

pub fn start(dir: &std::path::Path, name: &str, args: &[String]) -> Server {
    let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // Cluster tests count topics and replicas: no gateway topics.
    refs.extend(super::GATEWAYS_OFF);
    Server::start_with(&dir.join(name), &refs)
}

/// Bootstraps node 1 and joins nodes 2..=n to it.
pub fn cluster(dir: &std::path::Path, n: u32) -> Vec<Server> {
    form(dir, n, super::GATEWAYS_OFF)
}

/// As [`cluster`], every node with its MQTT listener on a free port, plus
/// `extra` flags.
#[allow(dead_code)]
pub fn cluster_with_mqtt(dir: &std::path::Path, n: u32, extra: &[&str]) -> Vec<Server> {
    let mut flags = vec![
        "--mqtt-listen",
        "127.0.0.1:0",
        "--mqtt-tls-listen",
        "off",
        "--mqtt-ws-listen",
        "off",
    ];
    flags.extend_from_slice(extra);
    form(dir, n, &flags)
}

/// As [`cluster`], every node with its AMQP listener on a free port (and
/// no MQTT).
#[allow(dead_code)]
pub fn cluster_with_amqp(dir: &std::path::Path, n: u32) -> Vec<Server> {
    form(
        dir,
        n,
        &[
            "--amqp-listen",
            "127.0.0.1:0",
            "--amqp-tls-listen",
            "off",
            "--mqtt-listen",
            "off",
            "--mqtt-tls-listen",
            "off",
            "--mqtt-ws-listen",
            "off",
        ],
    )
}

fn form(dir: &std::path::Path, n: u32, flags: &[&str]) -> Vec<Server> {
    let node = |name: &str, args: Vec<String>| {
        let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
        refs.extend_from_slice(flags);
        Server::start_with(&dir.join(name), &refs)
    };
    let first = node(
        "n1",
        vec!["--node-id".into(), "1".into(), "--bootstrap".into()],
    );
    // The first node is a cluster of its own before the others join (its
    // gateways must not make their topics with one replica meanwhile).
    wait_for(&first, "the first node's quorum", |s| s["quorum"] == true);
    let mut nodes = vec![first];
    for id in 2..=n {
        let join = nodes[0].grpc.clone();
        nodes.push(node(&format!("n{id}"), join_args(id, &join)));
    }
    wait_for(&nodes[0], "every node live", |s| {
        s["nodes"]
            .as_array()
            .is_some_and(|x| x.len() == n as usize && x.iter().all(|x| x["live"] == true))
    });
    nodes
}

pub fn status(server: &Server) -> Value {
    let out = server.cli(&["cluster", "status", "--output", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Polls `fjord cluster status` on `server` until `ok` holds (bounded).
pub fn wait_for(server: &Server, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(server);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "waited too long for {what}: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
