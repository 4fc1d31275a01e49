//! Clusters of real `fjord serve` processes on loopback: formation by
//! bootstrap and join, replication with acks=all, leader failover and
//! rejoin, controlled shutdown, scaling operations, and the bad inputs of
//! the cluster (wrong cluster id, duplicate node id, requests to a
//! non-leader, too few in-sync replicas, a lost majority).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::cluster::{cluster, join_args, start, status, wait_for};
use common::{BIN, Server};
use fjord_testkit::{Gateways, Node};
use serde_json::Value;

fn describe(server: &Server, topic: &str) -> Value {
    let out = server.ok(&["topic", "describe", topic, "--output", "json"]);
    serde_json::from_str(&out).unwrap()
}

fn partition(desc: &Value, p: u64) -> &Value {
    desc["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["partition"] == p)
        .unwrap()
}

fn lines(n: std::ops::Range<u32>) -> Vec<u8> {
    n.map(|i| format!("{i}\n")).collect::<String>().into_bytes()
}

fn consume_all(server: &Server, topic: &str) -> Vec<u32> {
    let out = server.ok(&["consume", topic, "--from-beginning"]);
    let mut values: Vec<u32> = out.lines().map(|l| l.parse().unwrap()).collect();
    values.sort_unstable();
    values
}

#[test]
fn three_nodes_replicate_fail_over_and_rejoin() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 3);
    nodes[0].ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--config",
        "min.insync.replicas=2",
    ]);
    let d = describe(&nodes[1], "orders");
    assert_eq!(d["replication_factor"], 3, "{d}");
    // Leaders are spread: one partition per node.
    let mut leaders: Vec<u64> = (0..3)
        .map(|p| partition(&d, p)["leader"].as_u64().unwrap())
        .collect();
    leaders.sort_unstable();
    assert_eq!(leaders, vec![1, 2, 3], "{d}");

    // Produce through a node that leads only one partition: the CLI
    // follows the leaders.
    nodes[1].ok_with_input(&["produce", "orders", "--acks", "all"], &lines(0..3000));
    assert_eq!(
        consume_all(&nodes[2], "orders"),
        (0..3000).collect::<Vec<_>>()
    );
    // Each leader sent its records to two followers: the replica counters
    // on `/metrics` add up to at least twice the bytes produced.
    let counter = |node: &Server, name: &str| -> f64 {
        let (status, page) = node.http_get("/metrics");
        assert_eq!(status, 200);
        page.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {page}"))
    };
    let sum = |name: &str| nodes.iter().map(|n| counter(n, name)).sum::<f64>();
    let produced = sum("fjord_produce_bytes_total");
    assert!(produced > 0.0);
    assert!(sum("fjord_replica_fetch_responses_total") >= 6.0);
    assert!(
        sum("fjord_replica_fetch_bytes_total") >= 2.0 * produced,
        "{} replicated of {produced} produced",
        sum("fjord_replica_fetch_bytes_total")
    );

    // Kill the leader of partition 0 (node 1, also the controller).
    let victim = partition(&d, 0)["leader"].as_u64().unwrap() as usize - 1;
    let victim_grpc = nodes[victim].grpc.clone();
    let victim_dir = nodes[victim].data.clone();
    let survivor = (victim + 1) % 3;
    nodes.remove(victim).kill9();
    let survivor = if survivor > victim {
        survivor - 1
    } else {
        survivor
    };
    let dead = victim as u64 + 1;
    wait_for(&nodes[survivor], "the dead node fenced", |s| {
        s["quorum"] == true
            && s["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().all(|x| (x["live"] == true) != (x["id"] == dead)))
            && s["under_replicated"]
                .as_array()
                .is_some_and(|u| u.len() == 3)
    });
    // Writes go on (acks=all, min.insync.replicas=2 with two nodes left).
    nodes[survivor].ok_with_input(
        &["produce", "orders", "--acks", "all", "--partition", "0"],
        &lines(3000..4000),
    );
    assert_eq!(
        consume_all(&nodes[survivor], "orders"),
        (0..4000).collect::<Vec<_>>()
    );
    let after = describe(&nodes[survivor], "orders");
    let p0 = partition(&after, 0);
    assert_ne!(p0["leader"].as_u64(), Some(victim as u64 + 1), "{after}");
    assert!(p0["leader_epoch"].as_i64().unwrap() >= 1, "{after}");

    // The dead node comes back on its address, catches up and rejoins
    // every ISR.
    let back = Server::start_with(
        &victim_dir,
        &[
            "--node-id",
            &(victim + 1).to_string(),
            "--bootstrap",
            "--grpc-listen",
            &victim_grpc,
        ],
    );
    wait_for(&back, "a full ISR everywhere", |s| {
        s["quorum"] == true
            && s["under_replicated"].as_array().is_some_and(Vec::is_empty)
            && s["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().all(|x| x["live"] == true))
    });
    // Every partition's leader (node 1 may lead partition 0 again) holds
    // every record and has committed them all: a leader's high watermark
    // catches up with its log end once its followers fetch again.
    for p in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = partition(&describe(&back, "orders"), p).clone();
            if now["log_end_offset"] == now["high_watermark"] {
                break;
            }
            assert!(Instant::now() < deadline, "{now}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(consume_all(&back, "orders"), (0..4000).collect::<Vec<_>>());
}

#[test]
fn a_node_of_another_cluster_or_with_a_used_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 2);
    let join = nodes[0].grpc.clone();
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args([
                "serve",
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(common::GATEWAYS_OFF)
            .args(args)
            .output()
            .unwrap()
    };
    // Wrong cluster id.
    let d = dir.path().join("wrong");
    let out = run(&[
        "--data-dir",
        d.to_str().unwrap(),
        "--node-id",
        "5",
        "--join",
        &join,
        "--cluster-id",
        "not-this-one",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong cluster id"), "{err}");
    // A node id a live node has, from another address.
    let d = dir.path().join("dup");
    let out = run(&[
        "--data-dir",
        d.to_str().unwrap(),
        "--node-id",
        "2",
        "--join",
        &join,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("duplicate node id"), "{err}");
    // A data directory of another node.
    let out = run(&[
        "--data-dir",
        nodes[1].data.to_str().unwrap(),
        "--node-id",
        "7",
        "--join",
        &join,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belongs to node 2") || err.contains("in use"),
        "{err}"
    );
    // The cluster is unharmed.
    let s = status(&nodes[0]);
    assert_eq!(s["nodes"].as_array().unwrap().len(), 2, "{s}");
    assert_eq!(s["quorum"], true);
}

#[test]
fn non_leaders_redirect_and_too_few_in_sync_replicas_refuse_acks_all() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 3);
    nodes[0].ok(&[
        "topic",
        "create",
        "pairs",
        "--partitions",
        "1",
        "--replication-factor",
        "2",
        "--config",
        "min.insync.replicas=2",
    ]);
    let d = describe(&nodes[0], "pairs");
    let p = partition(&d, 0);
    let leader = p["leader"].as_u64().unwrap();
    let replicas: Vec<u64> = p["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let outsider = (1..=3u64).find(|id| !replicas.contains(id)).unwrap();
    // A raw request to a node that does not lead: UNAVAILABLE naming the
    // leader, nothing written.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outsider_addr = nodes[outsider as usize - 1].grpc.clone();
    let (code, leader_addr) = rt.block_on(async {
        let mut c = fjord_proto::v1::produce_service_client::ProduceServiceClient::connect(
            format!("http://{outsider_addr}"),
        )
        .await
        .unwrap();
        let r = c
            .produce(fjord_proto::v1::ProduceRequest {
                topic: "pairs".into(),
                acks: fjord_proto::v1::Acks::All as i32,
                records: vec![fjord_proto::v1::ProduceRecord {
                    value: Some(b"x".to_vec().into()),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        (r.results[0].error, r.results[0].error_message.clone())
    });
    assert_eq!(code, fjord_proto::v1::ErrorCode::ErrorNotLeader as i32);
    assert!(
        leader_addr.contains(&nodes[leader as usize - 1].grpc),
        "{leader_addr}"
    );
    // Fetching from a non-leader is refused the same way.
    let out = nodes[outsider as usize - 1].cli(&["consume", "pairs", "--from-beginning"]);
    assert!(out.status.success(), "the CLI follows the leader");

    // Kill the follower: once it leaves the ISR, acks=all is refused with
    // NotEnoughReplicas while acks=1 still works.
    let follower = *replicas.iter().find(|r| **r != leader).unwrap();
    let mut nodes: Vec<Option<Server>> = nodes.into_iter().map(Some).collect();
    nodes[follower as usize - 1].take().unwrap().kill9();
    let leader_node = nodes[leader as usize - 1].as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = describe(leader_node, "pairs");
        if partition(&d, 0)["isr"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the ISR did not shrink: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = rt.block_on(async {
        let mut c = fjord_proto::v1::produce_service_client::ProduceServiceClient::connect(
            format!("http://{}", leader_node.grpc),
        )
        .await
        .unwrap();
        let produce = |acks: fjord_proto::v1::Acks| fjord_proto::v1::ProduceRequest {
            topic: "pairs".into(),
            acks: acks as i32,
            records: vec![fjord_proto::v1::ProduceRecord {
                value: Some(b"y".to_vec().into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let all = c
            .produce(produce(fjord_proto::v1::Acks::All))
            .await
            .unwrap()
            .into_inner();
        let one = c
            .produce(produce(fjord_proto::v1::Acks::Leader))
            .await
            .unwrap()
            .into_inner();
        (all.results[0].clone(), one.results[0].clone())
    });
    assert_eq!(
        out.0.error,
        fjord_proto::v1::ErrorCode::ErrorNotEnoughReplicas as i32,
        "{:?}",
        out.0
    );
    assert!(out.0.error_message.contains("min.insync.replicas"));
    assert_eq!(
        out.1.error,
        fjord_proto::v1::ErrorCode::ErrorNone as i32,
        "{:?}",
        out.1
    );
}

#[test]
fn losing_a_majority_stops_metadata_changes_but_not_intact_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 3);
    // A partition only node 3 holds: its ISR survives the loss of 1 and 2.
    nodes[0].ok(&["topic", "create", "solo", "--replication-factor", "1"]);
    let d = describe(&nodes[0], "solo");
    let holder = partition(&d, 0)["leader"].as_u64().unwrap() as usize - 1;
    let keep = nodes.remove(holder);
    for n in nodes {
        n.kill9();
    }
    let s = wait_for(&keep, "the quorum lost", |s| s["quorum"] == false);
    assert!(s["controller"].is_null(), "{s}");
    // `cluster status` reports it (and fails), /ready says why.
    let out = keep.cli(&["cluster", "status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no metadata quorum"));
    let (code, body) = keep.http_get("/ready");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("quorum"), "{body}");
    // Metadata changes fail with a clear error.
    let out = keep.cli(&["topic", "create", "more"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("majority"), "{err}");
    // Cut off from any controller, the node may have been deposed: it
    // refuses acks=1 writes (fenced) rather than acknowledge on its own.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused = rt.block_on(async {
        let mut c = fjord_proto::v1::produce_service_client::ProduceServiceClient::connect(
            format!("http://{}", keep.grpc),
        )
        .await
        .unwrap();
        c.produce(fjord_proto::v1::ProduceRequest {
            topic: "solo".into(),
            acks: fjord_proto::v1::Acks::Leader as i32,
            records: vec![fjord_proto::v1::ProduceRecord {
                value: Some(b"x".to_vec().into()),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results[0]
            .clone()
    });
    assert_eq!(
        refused.error,
        fjord_proto::v1::ErrorCode::ErrorNotLeader as i32,
        "{refused:?}"
    );
    // The intact partition still takes acks=all writes and serves reads.
    keep.ok_with_input(&["produce", "solo", "--acks", "all"], &lines(0..100));
    assert_eq!(consume_all(&keep, "solo"), (0..100).collect::<Vec<_>>());
}

#[test]
fn a_new_node_takes_its_share_and_a_drained_node_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 3);
    nodes[0].ok(&["topic", "create", "spread", "--partitions", "4"]);
    nodes[0].ok_with_input(&["produce", "spread", "--acks", "all"], &lines(0..2000));
    // Add node 4 and rebalance onto it.
    let join = nodes[0].grpc.clone();
    nodes.push(start(dir.path(), "n4", &join_args(4, &join)));
    wait_for(&nodes[0], "node 4 live", |s| {
        s["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x["id"] == 4 && x["live"] == true))
    });
    nodes[1].ok(&["cluster", "rebalance"]);
    let s = wait_for(&nodes[0], "node 4 holding replicas, all in sync", |s| {
        s["under_replicated"].as_array().is_some_and(Vec::is_empty)
            && s["reassigning"] == 0
            && s["nodes"].as_array().is_some_and(|n| {
                n.iter()
                    .any(|x| x["id"] == 4 && x["replicas"].as_u64().unwrap_or(0) >= 2)
            })
    });
    let counts: Vec<u64> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["replicas"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 12, "{s}");
    assert!(counts.iter().all(|c| *c == 3), "even spread: {s}");
    assert_eq!(
        consume_all(&nodes[3], "spread"),
        (0..2000).collect::<Vec<_>>()
    );

    // Drain node 4, then remove it.
    nodes[0].ok(&["cluster", "drain-node", "4"]);
    wait_for(&nodes[0], "node 4 empty", |s| {
        s["under_replicated"].as_array().is_some_and(Vec::is_empty)
            && s["reassigning"] == 0
            && s["nodes"].as_array().is_some_and(|n| {
                n.iter()
                    .any(|x| x["id"] == 4 && x["replicas"] == 0 && x["leaders"] == 0)
            })
    });
    nodes[0].ok(&["cluster", "remove-node", "4"]);
    wait_for(&nodes[0], "node 4 gone", |s| {
        s["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 3 && n.iter().all(|x| x["id"] != 4))
    });
    assert_eq!(
        consume_all(&nodes[0], "spread"),
        (0..2000).collect::<Vec<_>>()
    );
    // Removing a node that still holds replicas is refused.
    let out = nodes[0].cli(&["cluster", "remove-node", "3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("drain it first"));
}

/// Three nodes on a fixed peer list (`--peers`), their gRPC addresses
/// picked free and released first. Another process, or a node's own
/// connection to a peer, may take one of them before its node binds it: a
/// start that finds its port taken is tried again, on new addresses.
fn fixed_peers(dir: &std::path::Path) -> Vec<Server> {
    for attempt in 0..5 {
        let addrs = free_addresses();
        let peers = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = (i + 1).to_string();
            let data = dir.join(format!("try{attempt}-p{id}"));
            let flags = [
                "--node-id",
                &id,
                "--peers",
                &peers,
                "--cluster-id",
                "fixed",
                "--grpc-listen",
                addr,
            ];
            match Node::builder(BIN)
                .data_dir(&data)
                .log(data.with_extension("log"))
                .gateways(Gateways::ALL)
                .flags(flags)
                .start()
            {
                Ok(node) => nodes.push(Server::from(node)),
                Err(e) if format!("{e:#}").contains("Address already in use") => break,
                Err(e) => panic!("{e:#}"),
            }
        }
        if nodes.len() == addrs.len() {
            return nodes;
        }
    }
    panic!("three free gRPC ports were taken before their nodes bound them, five times");
}

/// Three free loopback addresses (bound, read back, released).
fn free_addresses() -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

#[test]
fn a_fixed_peer_list_forms_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = fixed_peers(dir.path());
    let s = wait_for(&nodes[2], "three voters live", |s| {
        s["quorum"] == true
            && s["nodes"].as_array().is_some_and(|n| {
                n.len() == 3 && n.iter().all(|x| x["live"] == true && x["role"] == "voter")
            })
    });
    assert_eq!(s["cluster_id"], "fixed");
    nodes[2].ok(&["topic", "create", "fixed", "--partitions", "2"]);
    nodes[0].ok_with_input(&["produce", "fixed"], &lines(0..500));
    assert_eq!(
        consume_all(&nodes[1], "fixed"),
        (0..500).collect::<Vec<_>>()
    );
}

#[test]
fn sigterm_hands_leadership_away_and_groups_survive_their_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 3);
    nodes[0].ok(&[
        "topic",
        "create",
        "jobs",
        "--partitions",
        "1",
        "--config",
        "min.insync.replicas=2",
    ]);
    nodes[0].ok_with_input(&["produce", "jobs"], &lines(0..300));
    // A group consumes everything through a node that is probably not its
    // coordinator, committing its offsets.
    let out = nodes[1].ok(&["consume", "jobs", "--group", "g1", "--from-beginning"]);
    assert_eq!(out.lines().count(), 300);
    nodes[0].ok_with_input(&["produce", "jobs"], &lines(300..350));

    // SIGTERM the leader of jobs-0: it exits cleanly after the controller
    // moved its leaderships.
    let d = describe(&nodes[0], "jobs");
    let leader = partition(&d, 0)["leader"].as_u64().unwrap() as usize - 1;
    let mut nodes: Vec<Option<Server>> = nodes.into_iter().map(Some).collect();
    let victim = nodes[leader].take().unwrap();
    let logs_path = victim.log.clone();
    assert_eq!(victim.terminate(), Some(0));
    let logs = std::fs::read_to_string(logs_path).unwrap_or_default();
    assert!(logs.contains("handing partition leadership away"), "{logs}");
    let other = nodes.iter().flatten().next().unwrap();
    // The other nodes apply the new leadership shortly after the victim saw
    // it committed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = describe(other, "jobs");
        if partition(&d, 0)["leader"].as_u64() != Some(leader as u64 + 1) {
            break;
        }
        assert!(Instant::now() < deadline, "leadership did not move: {d}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The group resumes where it committed, whichever node coordinates it
    // now: only the 50 new records.
    let out = other.ok(&["consume", "jobs", "--group", "g1"]);
    let got: Vec<u32> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(
        got,
        (300..350).collect::<Vec<_>>(),
        "{}\n{}",
        other.ok(&["group", "describe", "g1", "--output", "json"]),
        describe(other, "jobs")
    );
    // Any node can describe the group (the CLI asks its coordinator).
    for node in nodes.iter().flatten() {
        let d: Value =
            serde_json::from_str(&node.ok(&["group", "describe", "g1", "--output", "json"]))
                .unwrap();
        assert_eq!(d["offsets"][0]["committed"], 350, "{d}");
        // Every node coordinates some groups; the list asks them all.
        let list: Value =
            serde_json::from_str(&node.ok(&["group", "list", "--output", "json"])).unwrap();
        let g1 = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["group"] == "g1")
            .count();
        assert_eq!(g1, 1, "{list}");
    }
}
