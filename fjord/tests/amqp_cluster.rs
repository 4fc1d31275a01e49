//! The AMQP gateway in a three-node cluster. Every node listens; the node
//! that leads `__amqp_acks` runs the topology and the queues, and the
//! others carry their clients' connections to it. Killing that node moves
//! the gateway to another one, which resumes from the log: no confirmed
//! message is lost and no acknowledged one comes back.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Server;
use common::amqp::{
    bind, bodies, body, channel, confirm, confirmed_queue, confirming, connect_to, consume,
    delivery, durable_exchange, durable_queue, get_held, next, prefetching, publish_confirmed,
    take_all, take_bodies,
};
use common::cluster::cluster_with_amqp;
use common::mqtt::metric;
use lapin::ExchangeKind;
use lapin::options::BasicAckOptions;
use lapin::types::FieldTable;

/// The index of the node that runs the gateway, once exactly one does.
fn gateway_node(nodes: &[Server]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let serving: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                let (_, body) = n.http_get("/metrics");
                metric(&body, "fjord_amqp_serving") == Some(1.0)
            })
            .map(|(i, _)| i)
            .collect();
        if serving.len() == 1 {
            return serving[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single node runs the AMQP gateway: {serving:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_one_set_of_exchanges_and_queues() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster_with_amqp(dir.path(), 3);

    // Published through node 2, consumed through node 3, in order.
    let c2 = connect_to(&nodes[1].amqp).await;
    let ch2 = channel(&c2).await;
    durable_queue(&ch2, "jobs").await;
    confirm(&ch2).await;
    let sent = bodies("j", 20);
    publish_confirmed(&ch2, "", "jobs", &sent).await;

    let c3 = connect_to(&nodes[2].amqp).await;
    let ch3 = prefetching(&c3, 5).await;
    let mut consumer = consume(&ch3, "jobs", "worker").await;
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let d = delivery(&mut consumer).await;
        got.push(body(&d));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(got, sent, "every message once, in order");

    // An exchange and binding made through node 1 route a publish made
    // through node 3.
    let c1 = connect_to(&nodes[0].amqp).await;
    let ch1 = channel(&c1).await;
    durable_exchange(&ch1, "events", ExchangeKind::Topic).await;
    durable_queue(&ch1, "audit").await;
    bind(&ch1, "audit", "events", "order.*", FieldTable::default()).await;
    let ch3b = confirming(&c3).await;
    publish_confirmed(&ch3b, "events", "order.created", &["o1".to_string()]).await;
    let m = next(&ch1, "audit").await;
    assert_eq!(m.delivery.data, b"o1");

    // One node runs the gateway; the CLI finds it through any node.
    gateway_node(&nodes);
    for n in &nodes {
        let out = n.ok(&["amqp", "queue", "list", "--output", "json"]);
        assert!(
            out.contains("\"jobs\"") && out.contains("\"audit\""),
            "queues listed through {}: {out}",
            n.grpc
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_moves_when_its_node_is_killed_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster_with_amqp(dir.path(), 3);
    let owner = gateway_node(&nodes);
    let via = (owner + 1) % nodes.len();

    // 30 confirmed; 10 acknowledged and the channel closed (its
    // acknowledgements are stored by close-ok).
    let conn = connect_to(&nodes[via].amqp).await;
    let ch = channel(&conn).await;
    confirmed_queue(&ch, "keep", "k", 30).await;
    for i in 0..10 {
        let m = get_held(&ch, "keep").await;
        assert_eq!(m.delivery.data, format!("k{i}").as_bytes());
        m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    ch.close(200, "done".into()).await.unwrap();
    // One more taken and held, unacknowledged, when the node dies.
    let held = channel(&conn).await;
    let m = get_held(&held, "keep").await;
    assert_eq!(m.delivery.data, b"k10");

    // The gateway's topics and the queue's are on all three nodes.
    let topics: serde_json::Value =
        serde_json::from_str(&nodes[via].ok(&["topic", "list", "--internal", "--output", "json"]))
            .unwrap();
    for t in topics.as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        if name.starts_with("__amqp") {
            assert_eq!(t["replication_factor"], 3, "{name}: {t}");
        }
    }
    nodes.remove(owner).kill9();

    // Through a surviving node, once another node runs the gateway: the
    // acknowledged ones do not come back, no confirmed one is missing, and
    // the held one is marked redelivered (others the killed node had read
    // may be too: "may have been delivered").
    let conn = connect_to(&nodes[0].amqp).await;
    let ch = channel(&conn).await;
    let got = take_all(&ch, "keep").await;
    let bodies_got: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    let want: Vec<String> = (10..30).map(|i| format!("k{i}")).collect();
    assert_eq!(bodies_got, want);
    assert!(got[0].1, "the held message comes back redelivered: {got:?}");

    // The new node takes publishes and consumers as the old one did.
    confirm(&ch).await;
    publish_confirmed(&ch, "", "keep", &bodies("after", 3)).await;
    let conn2 = connect_to(&nodes[1].amqp).await;
    let ch2 = channel(&conn2).await;
    assert_eq!(take_bodies(&ch2, "keep").await, bodies("after", 3));
    gateway_node(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_amqp_listeners_runs_the_gateway_when_it_leads() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = [
        "--mqtt-listen",
        "off",
        "--mqtt-tls-listen",
        "off",
        "--mqtt-ws-listen",
        "off",
    ];
    let listening = ["--amqp-listen", "127.0.0.1:0", "--amqp-tls-listen", "off"];
    let silent = ["--amqp-listen", "off", "--amqp-tls-listen", "off"];
    let node = |name: &str, args: &[&str], amqp: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&quiet);
        all.extend_from_slice(amqp);
        Server::start_with(&dir.path().join(name), &all)
    };
    let first = node("n1", &["--node-id", "1", "--bootstrap"], &silent);
    let join = first.grpc.clone();
    let mut nodes = vec![first];
    for id in ["2", "3"] {
        let args = ["--node-id", id, "--join", join.as_str()];
        nodes.push(node(&format!("n{id}"), &args, &listening));
    }
    assert!(nodes[0].amqp.is_empty(), "node 1 has no AMQP listener");

    let conn = connect_to(&nodes[1].amqp).await;
    let ch = channel(&conn).await;
    durable_queue(&ch, "moved").await;
    confirm(&ch).await;
    publish_confirmed(&ch, "", "moved", &bodies("m", 5)).await;
    conn.close(200, "bye".into()).await.unwrap();

    // Node 1 becomes the preferred leader of __amqp_acks: the gateway
    // moves there, and clients of nodes 2 and 3 are carried to it.
    nodes[1].ok(&["cluster", "reassign", "__amqp_acks", "0", "1,2,3"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while gateway_node(&nodes) != 0 {
        assert!(
            Instant::now() < deadline,
            "the gateway did not move to node 1"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let conn = connect_to(&nodes[2].amqp).await;
    let ch = channel(&conn).await;
    assert_eq!(take_bodies(&ch, "moved").await, bodies("m", 5));
    confirm(&ch).await;
    publish_confirmed(&ch, "", "moved", &bodies("n", 2)).await;
    assert_eq!(take_bodies(&ch, "moved").await, bodies("n", 2));
}

/// The index of the node that leads queue `name`'s topic, once it has a
/// leader (bounded).
fn queue_leader(via: &Server, name: &str) -> usize {
    let prefix = format!("__amqp_q.{name}.");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list: serde_json::Value =
            serde_json::from_str(&via.ok(&["topic", "list", "--internal", "--output", "json"]))
                .unwrap();
        let topic = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .find(|t| t.starts_with(&prefix))
            .map(str::to_string);
        if let Some(topic) = topic {
            let d: serde_json::Value =
                serde_json::from_str(&via.ok(&["topic", "describe", &topic, "--output", "json"]))
                    .unwrap();
            if let Some(id) = d["partitions"][0]["leader"].as_u64().filter(|id| *id > 0) {
                return usize::try_from(id).unwrap() - 1;
            }
        }
        assert!(Instant::now() < deadline, "queue {name} has no leader");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_while_a_queues_leader_is_down_are_held_and_confirmed_not_nacked() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster_with_amqp(dir.path(), 3);
    let owner = gateway_node(&nodes);
    let conn = connect_to(&nodes[owner].amqp).await;
    let ch = confirming(&conn).await;
    // A queue led by a node that does not run the gateway (the
    // connection stays up when that node dies).
    let mut i = 0;
    let (name, leader) = loop {
        let name = format!("held{i}");
        durable_queue(&ch, &name).await;
        let leader = queue_leader(&nodes[owner], &name);
        if leader != owner {
            break (name, leader);
        }
        i += 1;
        assert!(i < 12, "every queue is led by the gateway's node");
    };
    publish_confirmed(&ch, "", &name, &bodies("a", 5)).await;

    // Published once the leader is dead: nothing was sent to it, so each
    // waits for the next leader and is confirmed there.
    nodes.remove(leader).kill9();
    publish_confirmed(&ch, "", &name, &bodies("b", 5)).await;

    let mut want = bodies("a", 5);
    want.extend(bodies("b", 5));
    assert_eq!(take_bodies(&ch, &name).await, want, "each once, in order");
}
