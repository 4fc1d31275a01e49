//! The MQTT gateway in a three-node cluster: every node serves MQTT
//! clients over the same log. A message published on one node reaches
//! subscribers on every node, retained messages and wills too; a
//! persistent session moves with its client to another node, and a
//! connection on another node takes a client id over.
//!
//! The cluster is formed by bootstrap and join, so the gateway's topics
//! are led by the first node: the others forward appends and fetches to
//! it.
#![allow(clippy::unwrap_used)]

mod common;

use common::cluster::cluster_with_mqtt;
use common::mqtt::{WAIT, connect, metric, options, text, try_connect};
use rumqttc::{LastWill, QoS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_retained_messages_and_wills_cross_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster_with_mqtt(dir.path(), 3, &["--mqtt-partitions", "2"]);

    let mut on2 = connect(&nodes[1].mqtt, "sub-2", true).await;
    on2.subscribe("plant/#", QoS::AtLeastOnce).await;
    let mut on3 = connect(&nodes[2].mqtt, "sub-3", true).await;
    on3.subscribe("plant/+/temp", QoS::AtLeastOnce).await;

    let mut publisher = connect(&nodes[0].mqtt, "pub-1", true).await;
    for i in 0..20 {
        publisher
            .send("plant/a/temp", QoS::AtLeastOnce, false, &format!("a{i}"))
            .await;
    }
    let want: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    assert_eq!(on2.payloads(20).await, want, "in publish order, on node 2");
    assert_eq!(on3.payloads(20).await, want, "in publish order, on node 3");

    // A publisher on node 3 reaches a subscriber on node 2.
    let mut p3 = connect(&nodes[2].mqtt, "pub-3", true).await;
    p3.send("plant/b/level", QoS::AtLeastOnce, false, "b").await;
    assert_eq!(
        text(&on2.publish().await),
        ("plant/b/level".into(), "b".into())
    );

    // A message retained through node 1 is delivered on subscribing at
    // node 3; deleted through node 2, it is gone everywhere.
    publisher
        .send("plant/a/state", QoS::AtLeastOnce, true, "running")
        .await;
    let mut late = connect(&nodes[2].mqtt, "late-3", true).await;
    late.subscribe("plant/a/state", QoS::AtLeastOnce).await;
    let p = late.publish().await;
    assert!(p.retain);
    assert_eq!(text(&p), ("plant/a/state".into(), "running".into()));
    let mut p2 = connect(&nodes[1].mqtt, "pub-2", true).await;
    p2.send("plant/a/state", QoS::AtLeastOnce, true, "").await;
    let mut later = connect(&nodes[2].mqtt, "later-3", true).await;
    later.subscribe("plant/#", QoS::AtLeastOnce).await;
    p2.send("plant/a/temp", QoS::AtLeastOnce, false, "after")
        .await;
    assert_eq!(
        text(&later.publish().await),
        ("plant/a/temp".into(), "after".into()),
        "no retained message left"
    );

    // A client dying on node 1 has its will delivered on node 2.
    let mut o = options(&nodes[0].mqtt, "dies-1", true);
    o.set_last_will(LastWill::new(
        "plant/dies/status",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let dying = try_connect(o).await.unwrap();
    dying.drop_connection().await;
    let p = on2.until("gone").await;
    assert_eq!(
        text(p.last().unwrap()),
        ("plant/dies/status".into(), "gone".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_with_its_client_to_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster_with_mqtt(dir.path(), 3, &["--mqtt-partitions", "1"]);

    // Subscribed on node 1, then away.
    let mut c = connect(&nodes[0].mqtt, "device", false).await;
    assert!(!c.connack.session_present);
    c.subscribe("cmd/device/#", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publisher = connect(&nodes[2].mqtt, "ctl", true).await;
    for i in 0..10 {
        publisher
            .send("cmd/device/x", QoS::AtLeastOnce, false, &format!("m{i}"))
            .await;
    }

    // Back on node 2: the session, and what it missed.
    let mut c = connect(&nodes[1].mqtt, "device", false).await;
    assert!(c.connack.session_present, "the session is found on node 2");
    publisher
        .send("cmd/device/x", QoS::AtLeastOnce, false, "barrier")
        .await;
    let got: Vec<String> = c.until("barrier").await.iter().map(|p| text(p).1).collect();
    let mut want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    want.push("barrier".into());
    assert_eq!(got, want, "missed messages, once each, in order");

    // The same client id connecting to node 3 takes the session over from
    // the connection on node 2, which the server closes.
    let mut again = connect(&nodes[2].mqtt, "device", false).await;
    assert!(again.connack.session_present);
    c.closed().await;
    publisher
        .send("cmd/device/x", QoS::AtLeastOnce, false, "after")
        .await;
    // A message whose PUBACK node 2 had not read when the session was
    // taken over comes again first, with DUP (QoS 1 allows it).
    loop {
        let p = again.publish().await;
        let body = text(&p).1;
        if body == "after" {
            break;
        }
        assert!(
            p.dup && want.contains(&body),
            "only a DUP of a message given before may come first, not {body:?}"
        );
    }

    // A clean start on node 1 ends the session everywhere.
    again.disconnect().await;
    let fresh = connect(&nodes[0].mqtt, "device", true).await;
    assert!(!fresh.connack.session_present);
    fresh.disconnect().await;
    let back = connect(&nodes[1].mqtt, "device", false).await;
    assert!(!back.connack.session_present, "nothing left of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_spread_over_nodes_gets_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster_with_mqtt(dir.path(), 3, &["--mqtt-partitions", "2"]);
    let mut w2 = connect(&nodes[1].mqtt, "worker-2", true).await;
    w2.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce)
        .await;
    let mut w3 = connect(&nodes[2].mqtt, "worker-3", true).await;
    w3.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce)
        .await;
    // Each node has heard of the other's member.
    for node in &nodes[1..] {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (_, body) = node.http_get("/metrics");
            if metric(&body, "fjord_mqtt_remote_shared_members") == Some(1.0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "members not known: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    let mut publisher = connect(&nodes[0].mqtt, "dispatcher", true).await;
    let n = 60;
    for i in 0..n {
        publisher
            .send(
                &format!("jobs/{}", i % 6),
                QoS::AtLeastOnce,
                false,
                &i.to_string(),
            )
            .await;
    }
    // Every job reaches exactly one worker (and both workers get some),
    // once per copy in the log: a QoS 1 batch whose append's outcome was
    // unknown (a leader moving while the cluster settles) is appended
    // again, and its second copy is a job of its own.
    let mut stored: Vec<u32> = nodes[0]
        .ok(&["consume", "mqtt", "--from-beginning"])
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    stored.sort_unstable();
    let mut jobs = stored.clone();
    jobs.dedup();
    assert_eq!(jobs, (0..n).collect::<Vec<_>>(), "every job stored");
    let mut got: Vec<u32> = Vec::new();
    let (mut from2, mut from3) = (0, 0);
    while got.len() < stored.len() {
        tokio::select! {
            p = w2.publish() => { from2 += 1; got.push(text(&p).1.parse().unwrap()); }
            p = w3.publish() => { from3 += 1; got.push(text(&p).1.parse().unwrap()); }
        }
    }
    got.sort_unstable();
    assert_eq!(got, stored, "each job once per copy in the log");
    assert!(from2 > 0 && from3 > 0, "spread: {from2} and {from3}");
    // Nothing more comes: a barrier to each worker's own topic.
    w2.subscribe("barrier/2", QoS::AtLeastOnce).await;
    w3.subscribe("barrier/3", QoS::AtLeastOnce).await;
    publisher
        .send("barrier/2", QoS::AtLeastOnce, false, "end")
        .await;
    publisher
        .send("barrier/3", QoS::AtLeastOnce, false, "end")
        .await;
    assert_eq!(w2.until("end").await.len(), 1, "no duplicate on node 2");
    assert_eq!(w3.until("end").await.len(), 1, "no duplicate on node 3");
}
