//! A node started alone is a cluster of one: it serves at once, and two
//! more nodes can join it later, without a restart, to make a three-voter
//! cluster whose topics then get three replicas when asked.
#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use common::cluster::{join_args, wait_for};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn lines(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("r{i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Every partition of every topic (internal ones too) with `rf` replicas,
/// all in sync.
fn fully_replicated(server: &Server, rf: usize) -> bool {
    let topics = json(&server.ok(&["topic", "list", "--internal", "--output", "json"]));
    topics.as_array().unwrap().iter().all(|t| {
        let name = t["name"].as_str().unwrap();
        let d = json(&server.ok(&["topic", "describe", name, "--output", "json"]));
        d["partitions"].as_array().unwrap().iter().all(|p| {
            p["replicas"].as_array().unwrap().len() == rf
                && p["isr"].as_array().unwrap().len() == rf
        })
    })
}

#[tokio::test]
async fn a_node_alone_joined_by_two_more_becomes_three_voters_and_its_topics_get_three_replicas() {
    let dir = tempfile::tempdir().unwrap();
    // Alone, with its gateways: it serves at once, as a cluster of one.
    let first = Server::start(&dir.path().join("n1"));
    let alone = json(&first.ok(&["cluster", "status", "--output", "json"]));
    assert_eq!(alone["nodes"].as_array().unwrap().len(), 1, "{alone}");
    assert_eq!(alone["nodes"][0]["role"], "voter", "{alone}");
    first.ok(&["topic", "create", "orders", "--partitions", "3"]);
    first.ok_with_input(&["produce", "orders", "--acks", "all"], &lines(300));
    assert!(fully_replicated(&first, 1));

    // Two more join it while it runs.
    let off = common::GATEWAYS_OFF;
    let join = |id: u32| {
        let mut args = join_args(id, &first.grpc);
        args.extend(off.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_with(&dir.path().join(format!("n{id}")), &refs)
    };
    let second = join(2);
    let third = join(3);
    let status = wait_for(&first, "three live voters", |s| {
        s["nodes"].as_array().is_some_and(|n| {
            n.len() == 3 && n.iter().all(|x| x["live"] == true && x["role"] == "voter")
        })
    });
    assert_eq!(status["quorum"], true, "{status}");

    // Asked, every topic (the gateways' included) gets three replicas.
    let out = first.ok(&["cluster", "rebalance", "--replication-factor", "3"]);
    assert!(out.contains("orders"), "the moves are listed: {out}");
    assert!(out.contains("partitions moved"), "{out}");
    assert!(fully_replicated(&first, 3), "{out}");
    let s = wait_for(&first, "replicas spread", |s| s["reassigning"] == 0);
    let replicas: Vec<u64> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["replicas"].as_u64().unwrap())
        .collect();
    assert!(replicas.windows(2).all(|w| w[0] == w[1]), "{s}");

    // The first node can go: the others have everything, and a quorum.
    first.kill9();
    wait_for(&second, "leaders on the other nodes", |s| {
        s["quorum"] == true
            && s["offline_partitions"] == 0
            && s["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().any(|x| x["id"] == 1 && x["leaders"] == 0))
    });
    let read = second.ok(&["consume", "orders", "--from-beginning"]);
    assert_eq!(read.lines().count(), 300);
    drop(third);
}

#[test]
fn a_node_alone_answers_cluster_status_and_ready_like_any_cluster_node() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), common::GATEWAYS_OFF);
    let status = json(&server.ok(&["cluster", "status", "--output", "json"]));
    assert!(
        !status["cluster_id"].as_str().unwrap().is_empty(),
        "{status}"
    );
    assert_eq!(status["controller"], 1, "{status}");
    assert_eq!(status["quorum"], true, "{status}");
    assert_eq!(server.http_get("/ready"), (200, "ready\n".to_string()));
    let table = server.ok(&["cluster", "status"]);
    assert!(table.contains("voter (controller)"), "{table}");
    // Its cluster id survives a restart (it is the same cluster).
    let id = status["cluster_id"].clone();
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start_with(&dir.path().join("data"), common::GATEWAYS_OFF);
    let again = json(&server.ok(&["cluster", "status", "--output", "json"]));
    assert_eq!(again["cluster_id"], id);
}
