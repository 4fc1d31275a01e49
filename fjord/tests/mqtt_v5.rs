//! The MQTT gateway with MQTT 5 clients (`rumqttc::v5`) against a real
//! `fjord serve`: topic aliases, message expiry, properties passed through,
//! subscription options, session expiry, assigned client identifiers, flow
//! control, maximum packet size, server DISCONNECT reasons and AUTH.
//!
//! Servers run with one partition per log topic, so every MQTT message is
//! dispatched in publish order: a message published last is a barrier that
//! proves nothing else is on its way.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use common::mqtt::{Inbox, WAIT, assert_offline_queue, metric};
use common::{Server, eventually};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectProperties, ConnectReturnCode, Filter, Packet, PubAckReason, Publish,
    PublishProperties, RetainForwardRule, SubscribeProperties, SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, ConnectionError, EventLoop, MqttOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn start(dir: &tempfile::TempDir) -> Server {
    Server::start_with(&dir.path().join("data"), &["--mqtt-partitions", "1"])
}

/// A connected MQTT 5 client.
struct V5 {
    client: AsyncClient,
    connack: ConnAck,
    inbox: Inbox<EventLoop>,
}

fn options(server: &Server, id: &str) -> MqttOptions {
    let (host, port) = server.mqtt.rsplit_once(':').unwrap();
    let mut o = MqttOptions::new(id, host, port.parse().unwrap());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Options for a session that outlives its connection by `expiry` seconds.
fn persistent(server: &Server, id: &str, expiry: u32) -> MqttOptions {
    let mut o = options(server, id);
    o.set_clean_start(false);
    let mut p = ConnectProperties::new();
    p.session_expiry_interval = Some(expiry);
    o.set_connect_properties(p);
    o
}

async fn try_connect(o: MqttOptions) -> Result<V5, ConnectionError> {
    let (client, events) = AsyncClient::new(o, 100);
    let (first, inbox) = Inbox::start(events).await?;
    let Packet::ConnAck(connack) = first else {
        panic!("expected CONNACK, got {first:?}");
    };
    Ok(V5 {
        client,
        connack,
        inbox,
    })
}

async fn connect(o: MqttOptions) -> V5 {
    try_connect(o).await.unwrap()
}

fn text(p: &Publish) -> (String, String) {
    (
        String::from_utf8(p.topic.to_vec()).unwrap(),
        String::from_utf8(p.payload.to_vec()).unwrap(),
    )
}

impl V5 {
    async fn publish(&mut self) -> Publish {
        self.inbox.publish().await
    }

    /// PUBLISHes received up to and including the one with `payload`.
    async fn until(&mut self, payload: &str) -> Vec<Publish> {
        self.inbox.until(payload).await
    }

    async fn subscribe(&mut self, filter: Filter, id: Option<usize>) {
        let qos = filter.qos;
        let props = SubscribeProperties {
            id,
            user_properties: Vec::new(),
        };
        self.client
            .subscribe_many_with_properties([filter], props)
            .await
            .unwrap();
        let codes = self
            .inbox
            .next_of(|p| match p {
                Packet::SubAck(s) => Some(s.return_codes.clone()),
                _ => None,
            })
            .await;
        assert_eq!(codes, [SubscribeReasonCode::Success(qos)]);
    }

    /// Publishes at QoS 0 or 1 with `props`; at QoS 1 waits for a
    /// successful PUBACK.
    async fn send(&mut self, topic: &str, qos: QoS, payload: &[u8], props: PublishProperties) {
        self.client
            .publish_with_properties(topic, qos, false, payload.to_vec(), props)
            .await
            .unwrap();
        if qos == QoS::AtLeastOnce {
            self.acked().await;
        }
    }

    /// Publishes at QoS 1 without properties and waits for the PUBACK.
    async fn send_plain(&mut self, topic: &str, retain: bool, payload: &str) {
        let qos = QoS::AtLeastOnce;
        let payload = payload.as_bytes().to_vec();
        self.client
            .publish(topic, qos, retain, payload)
            .await
            .unwrap();
        self.acked().await;
    }

    async fn acked(&mut self) {
        let reason = self
            .inbox
            .next_of(|p| match p {
                Packet::PubAck(a) => Some(a.reason),
                _ => None,
            })
            .await;
        assert_eq!(reason, PubAckReason::Success);
    }

    /// Sends DISCONNECT and waits for the server to close the connection.
    async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        self.inbox.closed().await;
    }
}

fn q1(filter: &str) -> Filter {
    Filter::new(filter, QoS::AtLeastOnce)
}

#[tokio::test]
async fn topic_aliases_work_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut plain = connect(options(&server, "plain")).await;
    plain.subscribe(q1("al/#"), None).await;
    let mut o = options(&server, "aliased");
    o.set_topic_alias_max(Some(10));
    let mut aliased = connect(o).await;
    aliased.subscribe(q1("al/#"), None).await;

    // Client to server: the alias set with a topic, then the alias alone.
    let mut publisher = connect(options(&server, "pub")).await;
    let alias = |a| PublishProperties {
        topic_alias: Some(a),
        ..PublishProperties::default()
    };
    publisher
        .send("al/t", QoS::AtLeastOnce, b"one", alias(1))
        .await;
    publisher.send("", QoS::AtLeastOnce, b"two", alias(1)).await;
    publisher
        .send(
            "al/u",
            QoS::AtLeastOnce,
            b"three",
            PublishProperties::default(),
        )
        .await;

    let want = [("al/t", "one"), ("al/t", "two"), ("al/u", "three")]
        .map(|(t, p)| (t.to_string(), p.to_string()));
    let got = plain.until("three").await;
    assert_eq!(got.iter().map(text).collect::<Vec<_>>(), want);
    let aliases = |got: &[Publish]| -> Vec<Option<u16>> {
        got.iter()
            .map(|p| p.properties.as_ref().and_then(|p| p.topic_alias))
            .collect()
    };
    assert_eq!(aliases(&got), [None, None, None], "not asked for aliases");

    // Server to client (rumqttc resolves an alias-only PUBLISH's topic).
    let got = aliased.until("three").await;
    assert_eq!(got.iter().map(text).collect::<Vec<_>>(), want);
    let a = aliases(&got);
    assert!(
        a.iter().all(|a| a.is_some_and(|a| (1..=10).contains(&a))),
        "{a:?}"
    );
    assert_eq!(a[0], a[1]);
    assert_ne!(a[0], a[2]);
}

#[tokio::test]
async fn expired_messages_are_not_delivered_and_others_carry_the_time_left() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut c = connect(persistent(&server, "exp", 300)).await;
    c.subscribe(q1("ex/#"), None).await;
    c.disconnect().await;

    let mut publisher = connect(options(&server, "pub")).await;
    let expiry = |secs| PublishProperties {
        message_expiry_interval: Some(secs),
        ..PublishProperties::default()
    };
    publisher
        .send("ex/a", QoS::AtLeastOnce, b"short", expiry(1))
        .await;
    publisher
        .send("ex/b", QoS::AtLeastOnce, b"long", expiry(300))
        .await;
    // Let the 1 s expiry pass: there is no event to wait for.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut c = connect(persistent(&server, "exp", 300)).await;
    assert!(c.connack.session_present);
    let p = c.publish().await;
    assert_eq!(
        text(&p),
        ("ex/b".into(), "long".into()),
        "the expired one is dropped"
    );
    let left = p.properties.unwrap().message_expiry_interval.unwrap();
    assert!((1..300).contains(&left), "expiry {left} counts down");
}

#[tokio::test]
async fn publish_properties_reach_subscribers_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut sub = connect(options(&server, "sub")).await;
    sub.subscribe(q1("props/#"), None).await;
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/1".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01id")),
        user_properties: [("a", "1"), ("b", "2"), ("a", "3"), ("mqtt.x", "y")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec(),
        ..PublishProperties::default()
    };
    let mut publisher = connect(options(&server, "pub")).await;
    publisher
        .send("props/t", QoS::AtLeastOnce, br#"{"x":1}"#, props.clone())
        .await;
    let p = sub.publish().await;
    assert_eq!(text(&p), ("props/t".into(), r#"{"x":1}"#.into()));
    assert_eq!(p.properties, Some(props));
}

#[tokio::test]
async fn subscription_identifiers_and_no_local() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut c = connect(options(&server, "ids")).await;
    c.subscribe(q1("si/a"), Some(7)).await;
    c.subscribe(q1("si/+"), Some(9)).await;
    let mut publisher = connect(options(&server, "pub")).await;
    publisher.send_plain("si/a", false, "both").await;
    publisher.send_plain("si/b", false, "one").await;
    let got = c.until("one").await;
    let ids = |p: &Publish| -> BTreeSet<usize> {
        let props = p.properties.clone().unwrap_or_default();
        props.subscription_identifiers.into_iter().collect()
    };
    // One copy with both identifiers, or a copy per subscription.
    let (one, both): (Vec<_>, Vec<_>) = got.iter().partition(|p| p.payload == "one");
    assert_eq!(
        one.iter().map(|p| ids(p)).collect::<Vec<_>>(),
        [BTreeSet::from([9])]
    );
    assert!(both.iter().all(|p| !ids(p).is_empty()));
    let union: BTreeSet<usize> = both.iter().flat_map(|p| ids(p)).collect();
    assert_eq!(union, BTreeSet::from([7, 9]));

    // No Local: a client's own messages do not come back to it...
    let mut quiet = connect(options(&server, "quiet")).await;
    quiet
        .subscribe(
            Filter {
                nolocal: true,
                ..q1("nl/t")
            },
            None,
        )
        .await;
    quiet.send_plain("nl/t", false, "own").await;
    // ...unless it asks for them.
    let mut echo = connect(options(&server, "echo")).await;
    echo.subscribe(q1("nl/t"), None).await;
    echo.send_plain("nl/t", false, "mine").await;
    publisher.send_plain("nl/t", false, "other").await;
    let got: Vec<_> = quiet
        .until("other")
        .await
        .iter()
        .map(|p| text(p).1)
        .collect();
    assert_eq!(got, ["mine", "other"], "everything but its own");
    let got: Vec<_> = echo
        .until("other")
        .await
        .iter()
        .map(|p| text(p).1)
        .collect();
    assert_eq!(got, ["mine", "other"]);
}

#[tokio::test]
async fn retain_as_published_and_retain_handling() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut publisher = connect(options(&server, "pub")).await;
    publisher.send_plain("rap/t", true, "v1").await;
    let mut kept = connect(options(&server, "kept")).await;
    kept.subscribe(
        Filter {
            preserve_retain: true,
            ..q1("rap/#")
        },
        None,
    )
    .await;
    let mut cleared = connect(options(&server, "cleared")).await;
    cleared.subscribe(q1("rap/#"), None).await;
    for c in [&mut kept, &mut cleared] {
        let p = c.publish().await;
        assert_eq!((text(&p).1, p.retain), ("v1".into(), true), "on subscribe");
    }
    publisher.send_plain("rap/t", true, "v2").await;
    let p = kept.publish().await;
    assert_eq!((text(&p).1, p.retain), ("v2".into(), true), "as published");
    let p = cleared.publish().await;
    assert_eq!(
        (text(&p).1, p.retain),
        ("v2".into(), false),
        "live: RETAIN 0"
    );

    // Retain Handling 0: every subscribe; 1: a new subscription; 2: never.
    publisher.send_plain("rh/t", true, "kept").await;
    let rules = [
        RetainForwardRule::OnEverySubscribe,
        RetainForwardRule::OnNewSubscribe,
        RetainForwardRule::Never,
    ];
    let mut clients = Vec::new();
    for (i, rule) in rules.into_iter().enumerate() {
        let mut c = connect(options(&server, &format!("rh{i}"))).await;
        for _ in 0..2 {
            let filter = Filter {
                retain_forward_rule: rule.clone(),
                ..q1("rh/#")
            };
            c.subscribe(filter, None).await;
        }
        clients.push((rule, c));
    }
    publisher.send_plain("rh/b", false, "barrier").await;
    for (rule, mut c) in clients {
        let got: Vec<_> = c.until("barrier").await.iter().map(|p| text(p).1).collect();
        let want: &[&str] = match rule {
            RetainForwardRule::OnEverySubscribe => &["kept", "kept", "barrier"],
            RetainForwardRule::OnNewSubscribe => &["kept", "barrier"],
            RetainForwardRule::Never => &["barrier"],
        };
        assert_eq!(got, want, "{rule:?}");
    }
}

#[tokio::test]
async fn a_session_ends_after_its_expiry_interval() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    for (id, expiry) in [("short", 1), ("long", 60)] {
        let mut c = connect(persistent(&server, id, expiry)).await;
        c.subscribe(q1("se/#"), None).await;
        c.disconnect().await;
    }
    let mut publisher = connect(options(&server, "pub")).await;
    publisher.send_plain("se/t", false, "while away").await;
    // Let the 1 s session expiry pass: there is no event to wait for.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let c = connect(persistent(&server, "short", 1)).await;
    assert!(!c.connack.session_present, "expired after 1 s");
    let mut c = connect(persistent(&server, "long", 60)).await;
    assert!(c.connack.session_present, "60 s not over");
    assert_eq!(text(&c.publish().await).1, "while away");
}

#[tokio::test]
async fn an_empty_client_id_gets_an_assigned_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut ids = BTreeSet::new();
    for _ in 0..2 {
        let c = connect(options(&server, "")).await;
        assert_eq!(c.connack.code, ConnectReturnCode::Success);
        assert!(!c.connack.session_present);
        let props = c.connack.properties.clone().unwrap();
        let id = props.assigned_client_identifier.unwrap();
        assert!(!id.is_empty());
        ids.insert(id);
    }
    assert_eq!(ids.len(), 2, "each connection its own: {ids:?}");
}

#[tokio::test]
async fn the_server_respects_the_clients_receive_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut o = options(&server, "slow");
    o.set_receive_maximum(Some(2));
    o.set_manual_acks(true);
    let mut slow = connect(o).await;
    slow.subscribe(q1("rm/t"), None).await;
    let mut publisher = connect(options(&server, "pub")).await;
    for i in 0..10 {
        publisher.send_plain("rm/t", false, &i.to_string()).await;
    }
    // QoS 0 is outside flow control (MQTT 5 4.9): it passes the queue and
    // shows what was sent before it.
    publisher
        .send(
            "rm/t",
            QoS::AtMostOnce,
            b"barrier",
            PublishProperties::default(),
        )
        .await;
    let got = slow.until("barrier").await;
    let seen: Vec<_> = got.iter().map(|p| (text(p).1, p.qos)).collect();
    assert_eq!(
        seen,
        [
            ("0".into(), QoS::AtLeastOnce),
            ("1".into(), QoS::AtLeastOnce),
            ("barrier".into(), QoS::AtMostOnce)
        ],
        "no more than 2 unacknowledged"
    );
    // Each PUBACK lets exactly the next one through, in order.
    let mut unacked: VecDeque<Publish> = got.into_iter().take(2).collect();
    let mut delivered = vec!["0".to_string(), "1".to_string()];
    while let Some(oldest) = unacked.pop_front() {
        slow.client.ack(&oldest).await.unwrap();
        if delivered.len() < 10 {
            let p = slow.publish().await;
            delivered.push(text(&p).1);
            unacked.push_back(p);
        }
    }
    let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(delivered, want);
}

#[tokio::test]
async fn an_offline_session_holds_at_most_the_queue_bound_plus_the_receive_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--mqtt-partitions", "1", "--mqtt-max-queued-messages", "5"],
    );
    let away = || {
        let mut o = persistent(&server, "away", 300);
        o.set_receive_maximum(Some(2));
        o
    };
    let mut c = connect(away()).await;
    c.subscribe(q1("q/#"), None).await;
    c.disconnect().await;
    let mut publisher = connect(options(&server, "pub")).await;
    for i in 0..20 {
        publisher.send_plain("q/t", false, &i.to_string()).await;
    }
    let mut c = connect(away()).await;
    assert!(c.connack.session_present);
    publisher.send_plain("q/t", false, "barrier").await;
    let got: Vec<u32> = c
        .until("barrier")
        .await
        .iter()
        .filter_map(|p| text(p).1.parse().ok())
        .collect();
    // 5 queued and 2 in flight (the receive maximum).
    assert_offline_queue(&server, &got, 20, 7);
}

#[tokio::test]
async fn messages_larger_than_the_clients_maximum_packet_size_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut o = options(&server, "small");
    o.set_max_packet_size(Some(100));
    let mut small = connect(o).await;
    small.subscribe(q1("mp/#"), None).await;
    let mut publisher = connect(options(&server, "pub")).await;
    let big = vec![b'x'; 500];
    let none = PublishProperties::default();
    publisher
        .send("mp/big", QoS::AtLeastOnce, &big, none.clone())
        .await;
    publisher
        .send("mp/big", QoS::AtMostOnce, &big, none.clone())
        .await;
    publisher
        .send("mp/small", QoS::AtLeastOnce, b"fits", none)
        .await;
    let p = small.publish().await;
    assert_eq!(text(&p), ("mp/small".into(), "fits".into()));
    let (_, body) = server.http_get("/metrics");
    let name = "fjord_mqtt_messages_dropped_total{reason=\"too_large\"}";
    assert_eq!(metric(&body, name), Some(2.0));
}

#[tokio::test]
async fn a_taken_over_session_gets_disconnect_0x8e() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    // The first connection is raw bytes: rumqttc 0.24 cannot decode a
    // DISCONNECT whose Remaining Length is 1 (reason code, no properties;
    // MQTT 5 3.14.2.2.1 allows it) and reports a plain EOF instead.
    // CONNECT, MQTT 5, clean start 0, keep alive 60, session expiry 60 s,
    // client id "twice".
    let hello = [
        0x10, 0x17, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x00, 0x00, 0x3c, 0x05, 0x11, 0x00,
        0x00, 0x00, 0x3c, 0x00, 0x05, b't', b'w', b'i', b'c', b'e',
    ];
    assert_eq!(usize::from(hello[1]), hello.len() - 2);
    let mut first = tokio::net::TcpStream::connect(&server.mqtt).await.unwrap();
    first.write_all(&hello).await.unwrap();
    let mut head = [0u8; 2];
    first.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x20, "CONNACK");
    let mut connack = vec![0u8; usize::from(head[1])];
    first.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack[..2], [0x00, 0x00], "no session, success");

    let second = connect(persistent(&server, "twice", 60)).await;
    assert!(second.connack.session_present);
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, first.read_to_end(&mut bytes))
        .await
        .expect("the first connection was not closed")
        .unwrap();
    assert!(
        bytes.len() >= 3 && bytes[0] == 0xe0 && bytes[2] == 0x8e,
        "DISCONNECT 0x8E (Session taken over), then closed: {bytes:02x?}"
    );
}

#[tokio::test]
async fn an_authentication_method_is_refused_with_0x8c() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut o = options(&server, "scram");
    o.set_authentication_method(Some("SCRAM-SHA-256".into()));
    match try_connect(o).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::BadAuthenticationMethod);
        }
        Err(e) => panic!("expected CONNACK 0x8C, got {e:?}"),
        Ok(_) => panic!("expected CONNACK 0x8C, got a session"),
    }
}

/// Waits (bounded) until the server counts `n` open MQTT connections.
async fn connections_settle(server: &Server, n: f64) {
    eventually(&format!("connections never reached {n}"), async || {
        let (_, body) = server.http_get("/metrics");
        metric(&body, "fjord_mqtt_connections") == Some(n)
    })
    .await;
}

#[tokio::test]
async fn a_delayed_will_waits_and_a_returning_client_cancels_it() {
    use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties};
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let mut watcher = connect(options(&server, "watcher")).await;
    watcher.subscribe(q1("wills/#"), None).await;
    let with_will = |id: &str, payload: &str| {
        let mut o = persistent(&server, id, 60);
        let props = LastWillProperties {
            delay_interval: Some(1),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        };
        o.set_last_will(LastWill::new(
            "wills/x",
            payload,
            QoS::AtLeastOnce,
            false,
            Some(props),
        ));
        o
    };
    // A client that dies and comes back within its will delay: no will.
    drop(connect(with_will("returns", "returned")).await);
    connections_settle(&server, 1.0).await;
    let back = connect(with_will("returns", "returned")).await;
    assert!(back.connack.session_present);
    // A client that dies and stays away: its will comes after the delay.
    // Its will was due after the first one's, and one partition keeps
    // the order: had the first been sent, it would come before this one.
    drop(connect(with_will("gone", "gone")).await);
    let got = watcher.until("gone").await;
    let payloads: Vec<String> = got.iter().map(|p| text(p).1).collect();
    assert_eq!(payloads, ["gone"]);
    back.disconnect().await;
}
