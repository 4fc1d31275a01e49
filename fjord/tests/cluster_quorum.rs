//! The metadata quorum under an operator's changes and under failures: a
//! removed or long-silent voter's place goes to a caught-up learner, a
//! drain that no node can take is refused and an undrained node takes
//! replicas again, and a node left without a majority stops promptly and
//! quietly on SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Server;
use common::cluster::{cluster, cluster_with_flags, status, wait_for};
use serde_json::Value;

fn nodes_of(s: &Value) -> Vec<Value> {
    s["nodes"].as_array().cloned().unwrap_or_default()
}

/// Ids of the nodes with `role`.
fn with_role(s: &Value, role: &str) -> Vec<u64> {
    nodes_of(s)
        .iter()
        .filter(|n| n["role"] == role)
        .filter_map(|n| n["id"].as_u64())
        .collect()
}

fn live(s: &Value, id: u64) -> bool {
    nodes_of(s)
        .iter()
        .any(|n| n["id"] == id && n["live"] == true)
}

/// A voter other than the controller and `except`.
fn follower_voter(s: &Value, except: &[u64]) -> u64 {
    let controller = s["controller"].as_u64().unwrap();
    with_role(s, "voter")
        .into_iter()
        .find(|id| *id != controller && !except.contains(id))
        .unwrap_or_else(|| panic!("no voter to pick: {s}"))
}

/// Four nodes formed by the kit: three voters and a learner (node 4).
fn three_voters_and_a_learner(nodes: &[Server]) -> Value {
    wait_for(&nodes[0], "three voters and a learner, all live", |s| {
        with_role(s, "voter").len() == 3
            && with_role(s, "learner") == vec![4]
            && nodes_of(s).iter().all(|n| n["live"] == true)
    })
}

/// After losing one more voter, metadata still changes: a topic is made.
fn metadata_changes_after_losing(nodes: &mut [Option<Server>], voter: u64) {
    nodes[voter as usize - 1].take().unwrap().kill9();
    let any = nodes.iter().flatten().next().unwrap();
    let s = wait_for(any, "the killed voter fenced, the quorum kept", |s| {
        s["quorum"] == true && !live(s, voter)
    });
    let controller = s["controller"].as_u64().unwrap() as usize - 1;
    let at = nodes[controller].as_ref().unwrap();
    at.ok(&[
        "topic",
        "create",
        "after-the-loss",
        "--replication-factor",
        "2",
    ]);
    let list = at.ok(&["topic", "list"]);
    assert!(list.contains("after-the-loss"), "{list}");
}

#[test]
fn a_removed_voters_place_goes_to_a_learner_and_the_quorum_survives_another_loss() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 4);
    let s = three_voters_and_a_learner(&nodes);
    nodes[0].ok(&["topic", "create", "events", "--partitions", "2"]);
    let removed = follower_voter(&s, &[]);
    let id = removed.to_string();
    nodes[0].ok(&["cluster", "drain-node", &id]);
    nodes[0].ok(&["cluster", "remove-node", &id]);
    let s = wait_for(&nodes[0], "the learner promoted to voter", |s| {
        let voters = with_role(s, "voter");
        voters.len() == 3 && voters.contains(&4) && !voters.contains(&removed)
    });
    assert_eq!(s["voters"], 3, "{s}");
    let table = nodes[0].ok(&["cluster", "status"]);
    assert!(table.contains("voters 3/3"), "{table}");
    let mut nodes: Vec<Option<Server>> = nodes.into_iter().map(Some).collect();
    nodes[removed as usize - 1].take().unwrap().kill9();
    let another = follower_voter(&s, &[removed]);
    metadata_changes_after_losing(&mut nodes, another);
}

#[test]
fn a_voter_silent_past_the_limit_is_replaced_by_a_learner() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster_with_flags(dir.path(), 4, &["--voter-replace-after-ms", "2000"]);
    let s = three_voters_and_a_learner(&nodes);
    let silent = follower_voter(&s, &[]);
    let mut nodes: Vec<Option<Server>> = nodes.into_iter().map(Some).collect();
    nodes[silent as usize - 1].take().unwrap().kill9();
    let any = nodes.iter().flatten().next().unwrap();
    let s = wait_for(any, "the learner voting in the silent voter's place", |s| {
        let voters = with_role(s, "voter");
        voters.len() == 3 && voters.contains(&4) && with_role(s, "learner") == vec![silent]
    });
    let another = follower_voter(&s, &[silent]);
    metadata_changes_after_losing(&mut nodes, another);
}

#[test]
fn a_drain_no_node_can_take_is_refused_and_an_undrained_node_takes_replicas_again() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 3);
    nodes[0].ok(&["topic", "create", "acks", "--replication-factor", "3"]);
    nodes[0].ok(&[
        "topic",
        "create",
        "pairs",
        "--partitions",
        "3",
        "--replication-factor",
        "2",
    ]);
    let out = nodes[0].cli(&["cluster", "drain-node", "3"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no other live node can take"), "{err}");
    assert!(err.contains("add a node first"), "{err}");
    let s = status(&nodes[0]);
    assert!(
        nodes_of(&s).iter().all(|n| n["draining"] == false),
        "a refused drain marks nothing: {s}"
    );

    // Without the three-replica topic node 3 can be drained ...
    nodes[0].ok(&["topic", "delete", "acks"]);
    nodes[0].ok(&["cluster", "drain-node", "3"]);
    let holds = |s: &Value, id: u64| {
        nodes_of(s)
            .iter()
            .find(|n| n["id"] == id)
            .and_then(|n| n["replicas"].as_u64())
            .unwrap_or(0)
    };
    wait_for(&nodes[0], "node 3 drained", |s| {
        s["reassigning"] == 0 && holds(s, 3) == 0
    });
    // ... gets nothing new while draining ...
    nodes[0].ok(&["cluster", "rebalance"]);
    assert_eq!(holds(&status(&nodes[0]), 3), 0);
    // ... and takes replicas again once undrained.
    nodes[0].ok(&["cluster", "undrain-node", "3"]);
    nodes[0].ok(&["cluster", "rebalance"]);
    let s = wait_for(&nodes[0], "node 3 holding replicas again", |s| {
        s["reassigning"] == 0 && holds(s, 3) >= 1
    });
    assert!(nodes_of(&s).iter().all(|n| n["draining"] == false), "{s}");
}

#[test]
fn a_node_left_without_a_quorum_stops_promptly_and_quietly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 3);
    nodes[0].ok(&["topic", "create", "held", "--partitions", "3"]);
    // Keep the controller, which leads a partition of `held`.
    let s = status(&nodes[0]);
    let keep = nodes.remove(s["controller"].as_u64().unwrap() as usize - 1);
    for n in nodes {
        n.kill9();
    }
    wait_for(&keep, "the quorum lost", |s| s["quorum"] == false);
    let log = keep.log.clone();
    let asked = Instant::now();
    assert_eq!(keep.terminate(), Some(0));
    let took = asked.elapsed();
    println!("stopped {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let log = std::fs::read_to_string(log).unwrap();
    let (_, shutdown) = log.split_once("shutdown requested").unwrap();
    let errors: Vec<&str> = shutdown.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.len() <= 5, "{}", errors.join("\n"));
    let gave_up: Vec<&str> = shutdown
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("gave up"))
        .collect();
    assert_eq!(gave_up.len(), 1, "{shutdown}");
}
