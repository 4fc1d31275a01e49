//! `fjord user` against real servers: a single node (persistence across a
//! restart, bad input) and a three-node cluster (a user added through one
//! node is listed by every node, and deleted through another).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::cluster::{cluster, status};
use common::{Server, fails_with, names};
use fjord_proto::v1 as pb;
use fjord_proto::v1::user_service_client::UserServiceClient;
use serde_json::Value;

fn users(server: &Server) -> Value {
    serde_json::from_str(&server.ok(&["user", "list", "--output", "json"])).unwrap()
}

#[test]
fn users_are_added_listed_kept_across_a_restart_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let out = server.ok(&[
        "user",
        "add",
        "sensor-1",
        "--password",
        "s3cret-pw",
        "--acl",
        "allow:pub:devices/%c/#",
        "--acl",
        "deny:sub:admin/#",
    ]);
    assert_eq!(out, "saved user sensor-1\n");
    // `--password -` reads the first line of stdin.
    server.ok_with_input(
        &["user", "add", "ops", "--password", "-", "--superuser"],
        b"from-stdin\nignored\n",
    );
    let table = server.ok(&["user", "list"]);
    assert!(table.starts_with("USER"), "{table}");
    assert!(
        table.contains("allow:pub:devices/%c/# deny:sub:admin/#"),
        "{table}"
    );
    let list = users(&server);
    assert_eq!(names(&list), vec!["ops", "sensor-1"]);
    assert_eq!(list[0]["superuser"], true);
    assert_eq!(
        list[1]["acls"],
        serde_json::json!(["allow:pub:devices/%c/#", "deny:sub:admin/#"])
    );
    // No password and no hash reach a client.
    for text in [table.as_str(), &list.to_string()] {
        assert!(
            !text.contains("s3cret") && !text.contains("argon2") && !text.contains("hash"),
            "{text}"
        );
    }

    // Bad input: a clear message and a non-zero exit, nothing stored.
    let bad_acl = |rule| vec!["user", "add", "x", "--password", "x", "--acl", rule];
    for (args, words) in [
        (
            vec!["user", "add", "", "--password", "x"],
            "user name must not be empty",
        ),
        (bad_acl("allow:read:a"), "allow|deny:pub|sub|all:FILTER"),
        (
            bad_acl("allow:pub:a/#/b"),
            "'#' must be the whole last level",
        ),
        (
            vec!["user", "add", "x", "--password", ""],
            "password must not be empty",
        ),
        (
            vec!["user", "add", "x", "--password", "-"],
            "standard input holds no password",
        ),
        (vec!["user", "delete", "nobody"], "unknown user nobody"),
    ] {
        fails_with(&server.cli(&args), words);
    }
    assert_eq!(names(&users(&server)), vec!["ops", "sensor-1"]);

    // Users survive a restart, and so does their authentication data.
    assert_eq!(server.terminate(), Some(0));
    // Stored in the metadata quorum's log: the hash, never the password.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(data.join("raft")).unwrap() {
        stored.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        stored.contains("$argon2id$") && !stored.contains("s3cret-pw"),
        "{stored}"
    );
    let server = Server::start(&data);
    assert_eq!(users(&server), list);
    assert_eq!(
        server.ok(&["user", "delete", "sensor-1"]),
        "deleted user sensor-1\n"
    );
    assert_eq!(names(&users(&server)), vec!["ops"]);
    // Replacing keeps one user of the name.
    server.ok(&["user", "add", "ops", "--password", "other"]);
    let list = users(&server);
    assert_eq!(names(&list), vec!["ops"]);
    assert_eq!(list[0]["superuser"], false);
}

/// Polls `fjord user list` on `server` until `ok` holds (bounded).
fn wait_for_users(server: &Server, what: &str, ok: impl Fn(&[&str]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = users(server);
        if ok(&names(&list)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node at {} waited too long for {what}: {list}",
            server.grpc
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_user_added_through_one_node_is_listed_by_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 3);
    // Through a node that is not the controller (node 1 bootstrapped).
    nodes[2].ok(&[
        "user",
        "add",
        "fleet",
        "--password",
        "pw",
        "--acl",
        "allow:all:fleet/%u/#",
    ]);
    for node in &nodes {
        wait_for_users(node, "user fleet", |n| n == ["fleet"]);
        assert_eq!(users(node)[0]["acls"][0], "allow:all:fleet/%u/#");
    }
    // Straight to a follower over gRPC: it forwards the change to the
    // controller and answers once it lists the user itself.
    let controller = status(&nodes[0])["controller"].as_u64().unwrap();
    let follower = nodes
        .iter()
        .find(|n| status(n)["node_id"].as_u64() != Some(controller))
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = UserServiceClient::connect(format!("http://{}", follower.grpc))
            .await
            .unwrap();
        client
            .put_user(pb::PutUserRequest {
                name: "direct".into(),
                password: "pw".into(),
                acls: vec![],
                superuser: true,
            })
            .await
            .unwrap();
    });
    assert_eq!(names(&users(follower)), vec!["direct", "fleet"]);
    for node in &nodes {
        wait_for_users(node, "user direct", |n| n == ["direct", "fleet"]);
    }
    fails_with(
        &nodes[0].cli(&["user", "add", "", "--password", "pw"]),
        "must not be empty",
    );
    fails_with(
        &nodes[2].cli(&["user", "delete", "nobody"]),
        "unknown user nobody",
    );

    nodes[1].ok(&["user", "delete", "fleet"]);
    for node in &nodes {
        wait_for_users(node, "user fleet gone", |n| n == ["direct"]);
    }
}
