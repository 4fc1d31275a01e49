//! A persistent MQTT session loses nothing acknowledged to a publisher
//! when the node its client is connected to dies (SIGKILL): the client
//! comes back on another node (subscribing again, as most clients do on
//! every connect) and gets every message, whether it was queued behind its
//! Receive Maximum, in flight, or published while the session moved.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Server;
use common::cluster::cluster_with_mqtt;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Filter, Packet};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

const WAIT: Duration = Duration::from_secs(60);

/// A persistent session's options: `receive_maximum` messages in flight.
fn keeper(server: &Server, receive_maximum: u16, manual_acks: bool) -> MqttOptions {
    let (host, port) = server.mqtt.rsplit_once(':').unwrap();
    let mut o = MqttOptions::new("keeper", host, port.parse().unwrap());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_start(false);
    o.set_receive_maximum(Some(receive_maximum));
    o.set_manual_acks(manual_acks);
    let mut p = ConnectProperties::new();
    p.session_expiry_interval = Some(600);
    o.set_connect_properties(p);
    o
}

/// Connects, trying again while the cluster fails over (a bounded time);
/// the client, its event loop and whether the session was present.
async fn connect(o: MqttOptions) -> (AsyncClient, EventLoop, bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (client, mut events) = AsyncClient::new(o.clone(), 1000);
        if let Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) =
            tokio::time::timeout(Duration::from_secs(15), events.poll()).await
            && ack.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
        {
            return (client, events, ack.session_present);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connection in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Subscribes to `dur/#` at QoS 1 and waits for the SUBACK (PUBLISHes
/// that come first are returned); `None` if the connection ends first.
async fn subscribe(client: &AsyncClient, events: &mut EventLoop) -> Option<Vec<String>> {
    client
        .subscribe_many([Filter::new("dur/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut early = Vec::new();
    loop {
        match events.poll().await.ok()? {
            Event::Incoming(Packet::SubAck(_)) => return Some(early),
            Event::Incoming(Packet::Publish(p)) => {
                early.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            _ => {}
        }
    }
}

/// Connects and subscribes, as a client does on every connect, again until
/// both succeed (a connection attempt given up on may still take the
/// session over once): the event loop, whether the session was present
/// every time, and the PUBLISHes that came before the SUBACK.
async fn connect_and_subscribe(o: MqttOptions) -> (AsyncClient, EventLoop, bool, Vec<String>) {
    let mut present = true;
    let mut got = Vec::new();
    for _ in 0..10 {
        let (client, mut events, p) = connect(o.clone()).await;
        present &= p;
        if let Some(early) = subscribe(&client, &mut events).await {
            got.extend(early);
            return (client, events, present, got);
        }
    }
    panic!("the client could not stay connected");
}

/// The next PUBLISH's payload, if one comes within `wait`. A connection
/// that ends (taken over by an attempt given up on) is made again, to the
/// same node and session, as clients do.
async fn next_publish(events: &mut EventLoop, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, events.poll())
            .await
            .ok()?
        {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                return Some(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Reads PUBLISHes into `got` until it holds `want` (or none comes for a
/// while).
async fn collect(events: &mut EventLoop, got: &mut BTreeSet<String>, want: &BTreeSet<String>) {
    while !want.is_subset(got) {
        match next_publish(events, Duration::from_secs(20)).await {
            Some(p) => got.insert(p),
            None => return,
        };
    }
}

fn numbered(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

/// Publishes `m0`..`m<n>` at QoS 1 with up to 100 in flight (as a busy
/// publisher does), reconnecting when the server closes the connection;
/// returns those the server acknowledged.
async fn publish_pipelined(addr: String, n: usize) -> BTreeSet<String> {
    use rumqttc::{Event, Outgoing, Packet};
    // A persistent session: on a reconnect the client sends what was not
    // acknowledged again (the server closes a 3.1.1 connection whose
    // publish it could not store).
    let o = common::mqtt::options(&addr, "publisher", false);
    let (client, mut events) = rumqttc::AsyncClient::new(o, n);
    for i in 0..n {
        client
            .publish("dur/t", rumqttc::QoS::AtLeastOnce, false, format!("m{i}"))
            .await
            .unwrap();
    }
    // Packet ids are given in publish order; an id is reused only after
    // its PUBACK.
    let (mut sent, mut acked) = (0, BTreeSet::new());
    let mut by_id = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while acked.len() < n && tokio::time::Instant::now() < deadline {
        let event = match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(event)) => event,
            Ok(Err(_)) => {
                // The event loop connects again on the next poll.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => break,
        };
        match event {
            // An id still waiting for its PUBACK is a retransmission.
            Event::Outgoing(Outgoing::Publish(id)) if !by_id.contains_key(&id) => {
                by_id.insert(id, format!("m{sent}"));
                sent += 1;
            }
            Event::Incoming(Packet::PubAck(a)) => {
                acked.extend(by_id.remove(&a.pkid));
            }
            _ => {}
        }
    }
    acked
}

/// The node (1-based) that leads the `mqtt` log topic's one partition.
fn mqtt_leader(node: &Server) -> usize {
    let out = node.ok(&["topic", "describe", "mqtt", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["partitions"][0]["leader"].as_u64().unwrap() as usize
}

#[tokio::test]
async fn queued_messages_of_a_resumed_session_survive_a_kill_of_its_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster_with_mqtt(dir.path(), 3, &["--mqtt-partitions", "1"]);
    let n = 50;

    // A persistent session on node 2, subscribed, then away.
    let (client, mut events, _) = connect(keeper(&nodes[1], 1, true)).await;
    subscribe(&client, &mut events).await.unwrap();
    client.disconnect().await.unwrap();
    while events.poll().await.is_ok() {}

    // What it misses while away, acknowledged to the publisher.
    let mut publisher = common::mqtt::connect(&nodes[0].mqtt, "publisher", true).await;
    for i in 0..n {
        publisher
            .send("dur/t", rumqttc::QoS::AtLeastOnce, false, &format!("m{i}"))
            .await;
    }

    // Back on node 2 with room for one message in flight: the rest of what
    // it missed waits in the session's queue. It acknowledges nothing.
    let (_held, mut events, present) = connect(keeper(&nodes[1], 1, true)).await;
    assert!(present, "the session is there");
    assert_eq!(next_publish(&mut events, WAIT).await.as_deref(), Some("m0"));

    // Node 2 dies; the client comes back on node 3.
    nodes.remove(1).kill9();
    let (_client, mut events, present) = connect(keeper(&nodes[1], 100, false)).await;
    assert!(present, "the session moved to node 3");
    let mut got = BTreeSet::new();
    collect(&mut events, &mut got, &numbered(n)).await;
    assert_eq!(got, numbered(n), "every acknowledged message reaches it");
}

#[tokio::test]
async fn a_subscriber_whose_node_dies_mid_stream_gets_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster_with_mqtt(dir.path(), 3, &["--mqtt-partitions", "1"]);
    // The client is on the node that leads the log partition, so the node
    // it moves to is behind the log while the partition fails over.
    let home = mqtt_leader(&nodes[0]) - 1;
    let (away, publishing) = ((home + 1) % 3, (home + 2) % 3);
    let n = 4000;

    let (_client, mut events, _, early) =
        connect_and_subscribe(keeper(&nodes[home], 100, false)).await;
    let mut got: BTreeSet<String> = early.into_iter().collect();
    let published = tokio::spawn(publish_pipelined(nodes[publishing].mqtt.clone(), n));
    while got.len() < n / 10 {
        let p = next_publish(&mut events, WAIT)
            .await
            .expect("messages flow");
        got.insert(p);
    }

    // Its node dies mid-stream; it comes back on another and subscribes
    // again, as clients do on every connect.
    let mut nodes: Vec<Option<Server>> = nodes.into_iter().map(Some).collect();
    nodes[home].take().unwrap().kill9();
    let (_client, mut events, present, early) =
        connect_and_subscribe(keeper(nodes[away].as_ref().unwrap(), 100, false)).await;
    assert!(present, "the session moved");
    got.extend(early);
    let want = published.await.unwrap();
    assert!(want.len() > n / 2, "most were acknowledged: {}", want.len());
    collect(&mut events, &mut got, &want).await;
    let missing: Vec<&String> = want.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );
}
