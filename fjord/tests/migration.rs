//! A data directory written by the previous release (a single node whose
//! topics and users were in `topics.json` and `users.json`; see
//! `fixtures/previous-release/make.py`) opens with this one: everything
//! moves into the node's one-voter metadata quorum and stays there.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::Server;
use common::mqtt::{connect, options, try_connect};
use rumqttc::QoS;
use serde_json::Value;

/// Copies the fixture (a directory tree of plain files).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// What the fixture holds, as this release must show it.
async fn holds_everything_the_previous_release_wrote(server: &Server) {
    // Topics, their configs and every record.
    let topics = server.ok(&["topic", "list"]);
    assert!(
        topics.contains("orders") && topics.contains("events"),
        "{topics}"
    );
    let orders = json(&server.ok(&["topic", "describe", "orders", "--output", "json"]));
    assert_eq!(
        orders["partitions"].as_array().unwrap().len(),
        3,
        "{orders}"
    );
    assert_eq!(orders["configs"]["retention.ms"], "86400000", "{orders}");
    let mut values: Vec<String> = server
        .consumed("orders")
        .lines()
        .map(str::to_string)
        .collect();
    values.sort_unstable();
    let mut want: Vec<String> = (0..30).map(|i| format!("order-{i}")).collect();
    want.sort_unstable();
    assert_eq!(values, want);
    let events = json(&server.ok(&["topic", "describe", "events", "--output", "json"]));
    assert_eq!(events["configs"]["cleanup.policy"], "compact", "{events}");
    assert_eq!(server.consumed("events"), "1\n2\n3\n");

    // The group's commits: it read everything.
    let group = json(&server.ok(&["group", "describe", "billing", "--output", "json"]));
    let offsets = group["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 3, "{group}");
    let committed: i64 = offsets
        .iter()
        .map(|o| o["committed"].as_i64().unwrap())
        .sum();
    assert_eq!(committed, 30, "{group}");
    assert!(offsets.iter().all(|o| o["lag"] == 0), "{group}");

    // Users, and their passwords.
    let users = server.ok(&["user", "list"]);
    assert!(users.contains("alice") && users.contains("ops"), "{users}");
    let mut login = options(&server.mqtt, "d7", true);
    login.set_credentials("alice", "alice-pw");
    try_connect(login).await.unwrap();
    let mut wrong = options(&server.mqtt, "d8", true);
    wrong.set_credentials("alice", "bob-pw");
    assert!(
        try_connect(wrong).await.is_err(),
        "a wrong password logs in"
    );

    // The retained message.
    let mut watcher = connect(&server.mqtt, "watcher", true).await;
    watcher.subscribe("devices/+/state", QoS::AtLeastOnce).await;
    assert_eq!(watcher.payloads(1).await, vec!["on"]);

    // The AMQP queue's three messages left.
    let conn = common::amqp::connect(server).await;
    let ch = conn.create_channel().await.unwrap();
    let mut left = common::amqp::drain(&ch, "jobs").await;
    left.sort_unstable();
    assert_eq!(left, vec!["job-2", "job-3", "job-4"]);
}

#[tokio::test]
async fn a_single_nodes_data_directory_from_the_previous_release_opens_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/previous-release/data");
    copy_tree(&fixture, &data);
    assert!(data.join("topics.json").exists() && data.join("users.json").exists());

    let server = Server::start(&data);
    // The old stores are gone: the metadata quorum holds everything.
    assert!(!data.join("topics.json").exists());
    assert!(!data.join("users.json").exists());
    let status = json(&server.ok(&["cluster", "status", "--output", "json"]));
    assert_eq!(status["quorum"], true, "{status}");
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{status}");
    assert_eq!(nodes[0]["role"], "voter", "{status}");

    // The persistent session gets what it missed while it was away.
    let mut keeper = connect(&server.mqtt, "keeper", false).await;
    assert!(keeper.connack.session_present, "the session was lost");
    let mut missed = keeper.payloads(2).await;
    missed.sort_unstable();
    assert_eq!(missed, vec!["fire", "flood"]);
    keeper.disconnect().await;

    holds_everything_the_previous_release_wrote(&server).await;
    // And again after a restart: nothing was left half-moved.
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(&data);
    let orders = server.consumed("orders");
    assert_eq!(orders.lines().count(), 30);
    let group = json(&server.ok(&["group", "describe", "billing", "--output", "json"]));
    assert!(
        group["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["lag"] == 0),
        "{group}"
    );
    assert!(server.ok(&["user", "list"]).contains("alice"));
}
