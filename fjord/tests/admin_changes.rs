//! An operator's changes to what exists, through the CLI as Kafka users
//! know them: a topic's configs (`topic alter-config`) and partition count
//! (`topic add-partitions`), on a node alone and on every replica of a
//! cluster, and a group's offsets (`group reset-offsets`, dry run first)
//! and the group itself (`group delete`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::cluster_with_flags;
use common::{BIN, GATEWAYS_OFF, Server};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn describe(server: &Server, topic: &str) -> Value {
    json(&server.ok(&["topic", "describe", topic, "--output", "json"]))
}

/// The stderr of a command that must fail.
fn refused(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    assert!(!out.status.success(), "fjord {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn lines(n: std::ops::Range<u32>) -> Vec<u8> {
    n.map(|i| format!("record-{i:05}-{}\n", "x".repeat(40)))
        .collect::<String>()
        .into_bytes()
}

/// Segment files of a replica's directory.
fn segments(data: &Path, topic: &str, partition: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join(format!("{topic}-{partition}")))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Polls `ok` (bounded) until it holds.
fn eventually(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_single_nodes_topic_gets_new_configs_and_partitions_and_bad_changes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut flags = GATEWAYS_OFF.to_vec();
    flags.extend(["--retention-check-interval-ms", "200"]);
    let server = Server::start_with(&dir.path().join("data"), &flags);
    server.ok(&["topic", "create", "logs", "--partitions", "2"]);
    let out = server.ok(&[
        "topic",
        "alter-config",
        "logs",
        "--set",
        "segment.bytes=2048",
        "--set",
        "retention.ms=3600000",
    ]);
    assert!(out.contains("configs altered"), "{out}");
    let d = describe(&server, "logs");
    assert_eq!(d["configs"]["segment.bytes"], "2048", "{d}");
    // The open log rolls at the new size.
    server.ok_with_input(
        &["produce", "logs", "--partition", "0", "--batch-size", "10"],
        &lines(0..200),
    );
    assert!(segments(&server.data, "logs", 0).len() > 3);
    server.ok(&["topic", "alter-config", "logs", "--delete", "retention.ms"]);
    let d = describe(&server, "logs");
    assert!(d["configs"].get("retention.ms").is_none(), "{d}");

    for (args, words) in [
        (vec!["--set", "no.such.key=1"], "unknown topic config"),
        (vec!["--delete", "no.such.key"], "unknown topic config"),
        (vec!["--set", "segment.bytes=10"], "at least 1024"),
        (vec!["--set", "retention.ms=soon"], "not an integer"),
        (
            vec!["--set", "min.insync.replicas=2"],
            "exceeds the replication factor",
        ),
        (vec!["--set", "segment.bytes"], "not key=value"),
        (vec![], "nothing to change"),
    ] {
        let mut command = vec!["topic", "alter-config", "logs"];
        command.extend(args);
        let err = refused(&server, &command);
        assert!(err.contains(words), "{command:?}: {err}");
    }
    let err = refused(
        &server,
        &["topic", "alter-config", "nope", "--set", "retention.ms=1"],
    );
    assert!(err.contains("unknown topic"), "{err}");

    // Two more partitions; keyed records spread over all four.
    let out = server.ok(&["topic", "add-partitions", "logs", "--partitions", "4"]);
    assert!(out.contains("partitions added"), "{out}");
    assert_eq!(
        describe(&server, "logs")["partitions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let keyed: String = (0..200).map(|i| format!("key{i}:v\n")).collect();
    server.ok_with_input(
        &["produce", "logs", "--key-separator", ":"],
        keyed.as_bytes(),
    );
    let d = describe(&server, "logs");
    for p in 2..4 {
        assert!(
            d["partitions"][p]["log_end_offset"].as_i64().unwrap() > 0,
            "{d}"
        );
    }
    for (count, words) in [
        ("4", "only grows"),
        ("3", "only grows"),
        ("20000", "at most"),
    ] {
        let err = refused(
            &server,
            &["topic", "add-partitions", "logs", "--partitions", count],
        );
        assert!(err.contains(words), "{count}: {err}");
    }
    let err = refused(
        &server,
        &["topic", "add-partitions", "nope", "--partitions", "2"],
    );
    assert!(err.contains("unknown topic"), "{err}");
    server.ok(&["consume", "logs", "--group", "g", "--from-beginning"]);
    let err = refused(
        &server,
        &[
            "topic",
            "add-partitions",
            "__consumer_offsets",
            "--partitions",
            "64",
        ],
    );
    assert!(err.contains("keeps its partition count"), "{err}");
}

#[test]
fn altered_configs_and_added_partitions_reach_every_replica_of_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster_with_flags(dir.path(), 3, &["--retention-check-interval-ms", "200"]);
    nodes[0].ok(&["topic", "create", "metrics", "--replication-factor", "3"]);
    nodes[0].ok_with_input(&["produce", "metrics", "--acks", "all"], &lines(0..20));
    // Altered through a node that may not lead the partition.
    nodes[1].ok(&[
        "topic",
        "alter-config",
        "metrics",
        "--set",
        "segment.bytes=1024",
    ]);
    for n in &nodes {
        assert_eq!(describe(n, "metrics")["configs"]["segment.bytes"], "1024");
    }
    nodes[2].ok_with_input(
        &["produce", "metrics", "--acks", "all", "--batch-size", "10"],
        &lines(20..220),
    );
    // Every replica's log rolls at the new size.
    for n in &nodes {
        eventually("a replica rolling small segments", || {
            segments(&n.data, "metrics", 0).len() > 5
        });
    }
    // Retention reaches every replica: the first segment goes everywhere.
    nodes[2].ok(&[
        "topic",
        "alter-config",
        "metrics",
        "--set",
        "retention.ms=1",
    ]);
    for n in &nodes {
        eventually("retention on a replica", || {
            let s = segments(&n.data, "metrics", 0);
            !s.is_empty() && s[0] != format!("{:020}.log", 0)
        });
    }
    assert!(describe(&nodes[0], "metrics")["partitions"][0]["log_start_offset"].as_i64() > Some(0));

    // Two more partitions: every node opens its replicas, all in sync.
    nodes[1].ok(&["topic", "add-partitions", "metrics", "--partitions", "3"]);
    eventually("the new partitions in sync on every node", || {
        let d = describe(&nodes[0], "metrics");
        let p = d["partitions"].as_array().unwrap();
        p.len() == 3
            && p.iter()
                .all(|p| p["isr"].as_array().map(Vec::len) == Some(3))
    });
    for n in &nodes {
        for p in 1..3 {
            assert!(n.data.join(format!("metrics-{p}")).is_dir());
        }
    }
    nodes[0].ok_with_input(
        &["produce", "metrics", "--partition", "2", "--acks", "all"],
        b"late\n",
    );
    let out = nodes[1].ok(&["consume", "metrics", "--partition", "2", "--from-beginning"]);
    assert_eq!(out.trim(), "late");
}

/// A consumer that stays in group `group` until killed.
fn member(server: &Server, group: &str, topic: &str) -> Child {
    Command::new(BIN)
        .args(["consume", topic, "--group", group, "--follow"])
        .args(["--server", &server.grpc])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn committed(server: &Server, group: &str) -> Vec<i64> {
    let d = json(&server.ok(&["group", "describe", group, "--output", "json"]));
    let mut offsets: Vec<(u64, i64)> = d["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["partition"].as_u64().unwrap(),
                o["committed"].as_i64().unwrap(),
            )
        })
        .collect();
    offsets.sort_unstable();
    offsets.into_iter().map(|(_, o)| o).collect()
}

fn reset(server: &Server, to: &[&str]) -> Value {
    let mut args = vec![
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "jobs",
        "--output",
        "json",
    ];
    args.extend(to);
    json(&server.ok(&args))
}

#[test]
fn a_groups_offsets_are_reset_as_planned_and_the_group_deleted_once_it_has_no_members() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), GATEWAYS_OFF);
    server.ok(&["topic", "create", "jobs", "--partitions", "2"]);
    server.ok_with_input(&["produce", "jobs", "--partition", "0"], &lines(0..100));
    server.ok_with_input(&["produce", "jobs", "--partition", "1"], &lines(0..50));
    server.ok(&["consume", "jobs", "--group", "g", "--from-beginning"]);
    assert_eq!(committed(&server, "g"), vec![100, 50]);

    // A dry run by default: the plan, nothing committed.
    let plan = server.ok(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "jobs",
        "--to-earliest",
    ]);
    assert!(plan.contains("dry run"), "{plan}");
    assert!(plan.contains("NEW-OFFSET"), "{plan}");
    assert_eq!(committed(&server, "g"), vec![100, 50]);
    let r = reset(&server, &["--to-offset", "10", "--execute"]);
    assert_eq!(r["executed"], true, "{r}");
    assert_eq!(r["partitions"][0]["current"], 100, "{r}");
    assert_eq!(committed(&server, "g"), vec![10, 10]);
    reset(&server, &["--shift-by", "-5", "--execute"]);
    assert_eq!(committed(&server, "g"), vec![5, 5]);
    // Out of the log's range: clamped to it, and said so.
    let r = reset(&server, &["--to-offset", "1000", "--execute"]);
    assert_eq!(r["partitions"][0]["clamped"], true, "{r}");
    assert_eq!(committed(&server, "g"), vec![100, 50]);
    let table = server.ok(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "jobs",
        "--shift-by",
        "-500",
    ]);
    assert!(table.contains("clamped to the log's range"), "{table}");
    reset(&server, &["--to-earliest", "--execute"]);
    assert_eq!(committed(&server, "g"), vec![0, 0]);
    reset(&server, &["--to-timestamp", "32503680000000", "--execute"]);
    assert_eq!(committed(&server, "g"), vec![100, 50]);
    reset(&server, &["--to-timestamp", "0", "--execute"]);
    assert_eq!(committed(&server, "g"), vec![0, 0]);
    reset(&server, &["--to-latest", "--execute"]);
    assert_eq!(committed(&server, "g"), vec![100, 50]);
    // The group resumes where it was reset to.
    reset(&server, &["--to-offset", "95", "--execute"]);
    let out = server.ok(&["consume", "jobs", "--group", "g"]);
    assert_eq!(out.lines().count(), 5, "{out}");
    let err = refused(
        &server,
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "nope",
            "--to-latest",
        ],
    );
    assert!(err.contains("unknown topic"), "{err}");
    let err = refused(&server, &["group", "reset-offsets", "g", "--topic", "jobs"]);
    assert!(err.contains("--to-earliest"), "a target is required: {err}");

    // Refused while the group has members.
    let mut consumer = member(&server, "g", "jobs");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = json(&server.ok(&["group", "describe", "g", "--output", "json"]));
        if d["members"].as_array().is_some_and(|m| !m.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the consumer never joined: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = refused(
        &server,
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "jobs",
            "--to-earliest",
        ],
    );
    assert!(err.contains("active members"), "{err}");
    let err = refused(&server, &["group", "delete", "g"]);
    assert!(err.contains("active members"), "{err}");
    consumer.kill().unwrap();
    consumer.wait().unwrap();

    // Once its member's session lapsed the group can go, offsets and all.
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        let out = server.cli(&["group", "delete", "g"]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        out.contains("deleted group g (2 committed offsets removed)"),
        "{out}"
    );
    let list = json(&server.ok(&["group", "list", "--output", "json"]));
    assert!(
        list.as_array().unwrap().iter().all(|g| g["group"] != "g"),
        "{list}"
    );
    let err = refused(&server, &["group", "describe", "g"]);
    assert!(err.contains("unknown group"), "{err}");
    let err = refused(&server, &["group", "delete", "g"]);
    assert!(err.contains("unknown group"), "{err}");
    // Deleted for good: a restart reloads the tombstones, not the offsets.
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start_with(&dir.path().join("data"), GATEWAYS_OFF);
    let err = refused(&server, &["group", "describe", "g"]);
    assert!(err.contains("unknown group"), "{err}");
}
