//! The test kit (`fjord-testkit`) against the real binary: a node's
//! restarts, signals and data, and a cluster's members.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use fjord_testkit::{Cluster, Gateways, Node, fjord_binary};

const BIN: &str = env!("CARGO_BIN_EXE_fjord");

/// Runs a client subcommand against `node`; it must succeed.
fn ok(node: &Node, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .args(["--server", node.grpc()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fjord {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `GET /metrics` with a bounded read; `None` if nothing came back in time.
fn metrics(node: &Node, wait: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(node.http()).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        node.http()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn the_binary_is_found_beside_the_test_program() {
    if std::env::var_os("FJORD_BIN").is_some() {
        return; // the variable wins over the lookup
    }
    let found = fjord_binary(None).unwrap();
    assert_eq!(
        found.canonicalize().unwrap(),
        std::path::Path::new(BIN).canonicalize().unwrap()
    );
}

#[test]
fn a_node_restarts_on_its_address_with_its_data_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::builder(BIN)
        .data_dir(dir.path().join("data"))
        .log(dir.path().join("data.log"))
        .sticky_grpc()
        .start()
        .unwrap();
    assert_eq!(node.listeners().mqtt, None, "gateways are off by default");
    assert_eq!(node.listeners().amqp, None);
    assert!(node.rss_bytes().unwrap() > 1 << 20);
    ok(&node, &["topic", "create", "kept", "--partitions", "2"]);
    let grpc = node.grpc().to_string();
    let http = node.http().to_string();

    node.kill9();
    assert!(node.is_down());
    node.restart().unwrap();
    assert_eq!(node.grpc(), grpc, "the same gRPC address");
    assert_ne!(node.http(), http, "a new ephemeral HTTP port");
    assert!(ok(&node, &["topic", "list"]).contains("kept"));

    // A plain restart (no kill first) keeps them too.
    node.restart().unwrap();
    assert_eq!(node.grpc(), grpc);
    assert!(ok(&node, &["topic", "list"]).contains("kept"));
    assert_eq!(node.terminate().unwrap(), Some(0));
    assert!(
        !node.log().is_empty(),
        "the log file holds the node's output"
    );
}

#[test]
fn a_paused_node_answers_nothing_until_resumed() {
    let mut node = Node::builder(BIN).start().unwrap();
    assert!(metrics(&node, Duration::from_secs(30)).is_some());
    node.pause().unwrap();
    assert_eq!(metrics(&node, Duration::from_millis(300)), None);
    node.resume().unwrap();
    let page = metrics(&node, Duration::from_secs(30)).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
}

#[test]
fn gateways_listen_on_ephemeral_ports_when_asked() {
    let node = Node::builder(BIN).gateways(Gateways::ALL).start().unwrap();
    let l = node.listeners();
    let gateways = [&l.mqtt, &l.mqtt_tls, &l.mqtt_ws, &l.amqp, &l.amqp_tls];
    for addr in gateways {
        let addr = addr.as_deref().unwrap();
        assert!(
            addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
            "{addr}"
        );
    }
    let data = node.data_dir().to_path_buf();
    assert!(data.is_dir());
    drop(node);
    assert!(
        !data.exists(),
        "the kit's temporary data directory is removed"
    );
}

#[test]
fn a_cluster_member_comes_back_on_its_address_and_a_fourth_joins() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::builder(Node::builder(BIN), dir.path(), 3)
        .logs()
        .start()
        .unwrap();
    let cluster_id = cluster.nodes()[0].listeners().cluster_id.clone();
    assert!(!cluster_id.is_empty());
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.listeners().node_id as usize, i + 1);
        assert_eq!(node.listeners().cluster_id, cluster_id);
        assert_eq!(node.data_dir(), dir.path().join(format!("n{}", i + 1)));
    }
    assert_eq!(cluster.join_address(), cluster.nodes()[0].grpc());

    let third = &mut cluster.nodes_mut()[2];
    let grpc = third.grpc().to_string();
    third.kill9();
    third.restart().unwrap();
    assert_eq!(third.grpc(), grpc);

    cluster.join_one().unwrap();
    let status = cluster.nodes()[0]
        .wait_for_status("four nodes live", Duration::from_secs(60), |s| {
            s["nodes"]
                .as_array()
                .is_some_and(|x| x.len() == 4 && x.iter().all(|x| x["live"] == true))
        })
        .unwrap();
    assert_eq!(status["quorum"], true, "{status}");
    assert!(std::fs::read_to_string(dir.path().join("n4.log")).is_ok());
}
