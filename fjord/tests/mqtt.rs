//! The MQTT gateway with MQTT 3.1.1 clients (rumqttc) against a real
//! `fjord serve`: QoS 0/1/2 and what reaches the log, wildcards, retained
//! messages, shared subscriptions, users and ACLs, the TLS and WebSocket
//! listeners, metrics and the topic mapping.
//!
//! Servers run with one partition per log topic, so every MQTT message is
//! dispatched in publish order: a message published last is a barrier that
//! proves nothing else is on its way.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::Server;
use common::mqtt::{Client, WAIT, connect, metric, options, text, try_connect};
use futures::{SinkExt, StreamExt};
use rumqttc::{ConnectReturnCode, ConnectionError, QoS, SubscribeReasonCode, TlsConfiguration};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn start(dir: &tempfile::TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--mqtt-partitions", "1"];
    args.extend_from_slice(extra);
    Server::start_with(&dir.path().join("data"), &args)
}

#[tokio::test]
async fn qos_0_1_2_are_delivered_once_at_the_granted_qos_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut sub2 = connect(&server.mqtt, "sub2", true).await;
    let mut sub0 = connect(&server.mqtt, "sub0", true).await;
    let granted = sub2.subscribe("a/+", QoS::ExactlyOnce).await;
    assert_eq!(granted, [SubscribeReasonCode::Success(QoS::ExactlyOnce)]);
    let granted = sub0.subscribe("a/+", QoS::AtMostOnce).await;
    assert_eq!(granted, [SubscribeReasonCode::Success(QoS::AtMostOnce)]);

    // `send` waits for PUBACK (QoS 1) and PUBCOMP (QoS 2).
    let mut publisher = connect(&server.mqtt, "pub", true).await;
    publisher.send("a/b", QoS::AtMostOnce, false, "q0").await;
    publisher.send("a/b", QoS::AtLeastOnce, false, "q1").await;
    publisher.send("a/b", QoS::ExactlyOnce, false, "q2").await;
    publisher.send("a/b", QoS::AtLeastOnce, false, "end").await;

    let got: Vec<_> = sub2.until("end").await;
    let seen: Vec<_> = got.iter().map(|p| (text(p).1, p.qos)).collect();
    assert_eq!(
        seen,
        [
            ("q0".to_string(), QoS::AtMostOnce),
            ("q1".to_string(), QoS::AtLeastOnce),
            ("q2".to_string(), QoS::ExactlyOnce),
            ("end".to_string(), QoS::AtLeastOnce),
        ],
        "each once, at min(published, granted)"
    );
    assert!(got.iter().all(|p| p.topic == "a/b" && !p.retain));
    let got = sub0.until("end").await;
    let seen: Vec<_> = got.iter().map(|p| (text(p).1, p.qos)).collect();
    assert_eq!(
        seen,
        ["q0", "q1", "q2", "end"]
            .map(|s| (s.to_string(), QoS::AtMostOnce))
            .to_vec()
    );

    // The log: key = MQTT topic, value = payload.
    let out = server.ok(&["consume", "mqtt", "--from-beginning", "--print-key"]);
    assert_eq!(out, "a/b\tq0\na/b\tq1\na/b\tq2\na/b\tend\n");
}

#[tokio::test]
async fn wildcards_match_levels_and_dollar_topics_only_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut subs = Vec::new();
    for (id, filter) in [
        ("hash", "#"),
        ("plus", "+/x"),
        ("sys", "$SYS/#"),
        ("mid", "a/+/c"),
        ("tail", "a/#"),
    ] {
        let mut c = connect(&server.mqtt, id, true).await;
        c.subscribe(filter, QoS::AtLeastOnce).await;
        if filter != "#" {
            c.subscribe("done", QoS::AtLeastOnce).await;
        }
        subs.push((filter, c));
    }
    let mut publisher = connect(&server.mqtt, "pub", true).await;
    for topic in ["$SYS/x", "a/x", "a/b/c", "a/b/c/d", "a", "$SYS/a/x", "done"] {
        publisher.send(topic, QoS::AtLeastOnce, false, topic).await;
    }
    for (filter, mut c) in subs {
        let got: Vec<_> = c.until("done").await.iter().map(|p| text(p).0).collect();
        let want: &[&str] = match filter {
            "#" => &["a/x", "a/b/c", "a/b/c/d", "a", "done"],
            "+/x" => &["a/x", "done"],
            "$SYS/#" => &["$SYS/x", "$SYS/a/x", "done"],
            "a/+/c" => &["a/b/c", "done"],
            _ => &["a/x", "a/b/c", "a/b/c/d", "a", "done"],
        };
        assert_eq!(got, want, "filter {filter}");
    }
}

#[tokio::test]
async fn retained_messages_are_set_replaced_deleted_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut publisher = connect(&server.mqtt, "pub", true).await;
    publisher.send("r/1", QoS::AtLeastOnce, true, "v1").await;

    let mut s1 = connect(&server.mqtt, "s1", true).await;
    s1.subscribe("r/#", QoS::AtLeastOnce).await;
    let p = s1.publish().await;
    assert_eq!((text(&p), p.retain), (("r/1".into(), "v1".into()), true));

    // Replaced: a live subscriber gets it with RETAIN 0 (3.1.1 3.3.1-9).
    publisher.send("r/1", QoS::AtLeastOnce, true, "v2").await;
    let p = s1.publish().await;
    assert_eq!((text(&p), p.retain), (("r/1".into(), "v2".into()), false));
    let mut s2 = connect(&server.mqtt, "s2", true).await;
    s2.subscribe("r/#", QoS::AtLeastOnce).await;
    publisher
        .send("r/b", QoS::AtLeastOnce, false, "barrier")
        .await;
    let got: Vec<_> = s2.until("barrier").await;
    let got: Vec<_> = got.iter().map(|p| (text(p).1, p.retain)).collect();
    assert_eq!(got, [("v2".into(), true), ("barrier".into(), false)]);

    // Deleted by an empty retained payload: a new subscriber gets nothing.
    publisher.send("r/1", QoS::AtLeastOnce, true, "").await;
    publisher.send("r/2", QoS::AtLeastOnce, true, "kept").await;
    let mut s3 = connect(&server.mqtt, "s3", true).await;
    s3.subscribe("r/1", QoS::AtLeastOnce).await;
    publisher
        .send("r/1", QoS::AtLeastOnce, false, "barrier")
        .await;
    let got: Vec<_> = s3.until("barrier").await.iter().map(text).collect();
    assert_eq!(got, [("r/1".into(), "barrier".into())]);
    drop((publisher, s1, s2, s3));

    assert_eq!(server.terminate(), Some(0));
    let server = start(&dir, &[]);
    let mut s4 = connect(&server.mqtt, "s4", true).await;
    s4.subscribe("r/#", QoS::AtLeastOnce).await;
    let mut publisher = connect(&server.mqtt, "pub", true).await;
    publisher
        .send("r/b", QoS::AtLeastOnce, false, "barrier")
        .await;
    let got: Vec<_> = s4.until("barrier").await;
    let got: Vec<_> = got.iter().map(|p| (text(p), p.retain)).collect();
    assert_eq!(
        got,
        [
            (("r/2".into(), "kept".into()), true),
            (("r/b".into(), "barrier".into()), false)
        ]
    );
}

#[tokio::test]
async fn a_shared_subscription_splits_messages_between_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut members = Vec::new();
    for id in ["m1", "m2"] {
        let mut c = connect(&server.mqtt, id, true).await;
        let granted = c.subscribe("$share/g/jobs/#", QoS::AtLeastOnce).await;
        assert_eq!(granted, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
        c.subscribe("done", QoS::AtLeastOnce).await;
        members.push(c);
    }
    let mut publisher = connect(&server.mqtt, "pub", true).await;
    for i in 0..100 {
        let topic = format!("jobs/{}", i % 7);
        publisher
            .send(&topic, QoS::AtLeastOnce, false, &i.to_string())
            .await;
    }
    publisher
        .send("done", QoS::AtLeastOnce, false, "done")
        .await;

    let mut all = Vec::new();
    for c in &mut members {
        let got: Vec<String> = c
            .until("done")
            .await
            .iter()
            .map(text)
            .filter(|(t, _)| t != "done")
            .map(|(_, p)| p)
            .collect();
        assert!(!got.is_empty(), "every member gets some: {got:?}");
        all.extend(got);
    }
    assert_eq!(all.len(), 100, "no duplicates: {all:?}");
    let unique: BTreeSet<u32> = all.iter().map(|p| p.parse().unwrap()).collect();
    assert_eq!(unique, (0..100).collect());
}

#[tokio::test]
async fn users_passwords_and_acls_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &["--mqtt-allow-anonymous", "false"]);
    server.ok(&["user", "add", "admin", "--password", "pw-a", "--superuser"]);
    server.ok(&[
        "user",
        "add",
        "dev",
        "--password",
        "pw-d",
        "--acl",
        "allow:pub:devices/%c/#",
        "--acl",
        "allow:sub:devices/%c/#",
    ]);
    let refused = |r: Result<Client, ConnectionError>| match r {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        Err(e) => panic!("expected a refusal, got {e:?}"),
        Ok(_) => panic!("expected a refusal, got a session"),
    };
    let anonymous = try_connect(options(&server.mqtt, "anon", true)).await;
    assert_eq!(refused(anonymous), ConnectReturnCode::NotAuthorized);
    let mut o = options(&server.mqtt, "d1", true);
    o.set_credentials("dev", "wrong");
    assert_eq!(
        refused(try_connect(o).await),
        ConnectReturnCode::BadUserNamePassword
    );

    let mut o = options(&server.mqtt, "admin", true);
    o.set_credentials("admin", "pw-a");
    let mut admin = try_connect(o).await.unwrap();
    admin.subscribe("#", QoS::AtLeastOnce).await;
    let mut o = options(&server.mqtt, "d1", true);
    o.set_credentials("dev", "pw-d");
    let mut dev = try_connect(o).await.unwrap();

    let codes = dev.subscribe("other/#", QoS::AtLeastOnce).await;
    assert_eq!(codes, [SubscribeReasonCode::Failure]);
    let codes = dev.subscribe("devices/d1/#", QoS::AtLeastOnce).await;
    assert_eq!(codes, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    dev.send("devices/d1/t", QoS::AtLeastOnce, false, "allowed")
        .await;
    dev.send("other/t", QoS::AtLeastOnce, false, "denied").await;
    dev.send("devices/d2/t", QoS::AtLeastOnce, false, "not-mine")
        .await;
    dev.send("devices/d1/t", QoS::AtLeastOnce, false, "after")
        .await;
    let got: Vec<_> = admin.until("after").await.iter().map(text).collect();
    assert_eq!(
        got,
        [
            ("devices/d1/t".into(), "allowed".into()),
            ("devices/d1/t".into(), "after".into())
        ]
    );
}

#[tokio::test]
async fn the_tls_listener_serves_mqtt_with_the_development_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let ca = std::fs::read(server.data.join("mqtt").join("mqtt-dev-cert.pem")).unwrap();
    let (_, port) = server.mqtt_tls.rsplit_once(':').unwrap();
    let mut o = options(&format!("localhost:{port}"), "tls", true);
    o.set_transport(rumqttc::Transport::tls_with_config(
        TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth: None,
        },
    ));
    let mut c = try_connect(o).await.unwrap();
    c.subscribe("secure/#", QoS::AtLeastOnce).await;
    c.send("secure/t", QoS::AtLeastOnce, false, "over tls")
        .await;
    let p = c.publish().await;
    assert_eq!(text(&p), ("secure/t".into(), "over tls".into()));
}

/// A raw MQTT byte stream over a WebSocket.
struct WsMqtt {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    buf: Vec<u8>,
}

impl WsMqtt {
    /// Sends `bytes` in one binary frame, then reads the next whole packet:
    /// (first byte, body).
    async fn exchange(&mut self, bytes: &[u8]) -> (u8, Vec<u8>) {
        self.ws
            .send(WsMessage::Binary(bytes.to_vec().into()))
            .await
            .unwrap();
        loop {
            if let Some(p) = self.take_packet() {
                return p;
            }
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("nothing over the WebSocket in time")
                .unwrap()
                .unwrap();
            if let WsMessage::Binary(data) = msg {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    fn take_packet(&mut self) -> Option<(u8, Vec<u8>)> {
        let (mut len, mut used) = (0usize, 1usize);
        loop {
            let b = *self.buf.get(used)?;
            len |= usize::from(b & 0x7f) << (7 * (used - 1));
            used += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if self.buf.len() < used + len {
            return None;
        }
        let packet = (self.buf[0], self.buf[used..used + len].to_vec());
        self.buf.drain(..used + len);
        Some(packet)
    }
}

#[tokio::test]
async fn the_websocket_listener_carries_mqtt_in_binary_frames() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut request = format!("ws://{}/mqtt", server.mqtt_ws)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "mqtt"
    );
    let mut c = WsMqtt {
        ws,
        buf: Vec::new(),
    };
    // CONNECT, 3.1.1, clean session, keep alive 60, client id "ws".
    let connect = [
        0x10, 0x0e, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x02, b'w',
        b's',
    ];
    assert_eq!(c.exchange(&connect).await, (0x20, vec![0x00, 0x00]));
    // SUBSCRIBE id 1 to "w/t" at QoS 0.
    let subscribe = [0x82, 0x08, 0x00, 0x01, 0x00, 0x03, b'w', b'/', b't', 0x00];
    assert_eq!(c.exchange(&subscribe).await, (0x90, vec![0x00, 0x01, 0x00]));
    // PUBLISH QoS 0 "w/t" "hi", back to itself.
    let publish = [0x30, 0x07, 0x00, 0x03, b'w', b'/', b't', b'h', b'i'];
    assert_eq!(c.exchange(&publish).await, (0x30, publish[2..].to_vec()));
}

#[tokio::test]
async fn metrics_count_connections_messages_retained_and_drops() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut sub = connect(&server.mqtt, "sub", true).await;
    sub.subscribe("m/#", QoS::AtLeastOnce).await;
    let mut publisher = connect(&server.mqtt, "pub", true).await;
    for i in 0..3 {
        publisher
            .send("m/t", QoS::AtLeastOnce, false, &i.to_string())
            .await;
    }
    publisher.send("m/r", QoS::AtLeastOnce, true, "kept").await;
    publisher.send("m/t", QoS::AtMostOnce, false, "zero").await;
    sub.until("zero").await;

    let (code, body) = server.http_get("/metrics");
    assert_eq!(code, 200);
    assert_eq!(metric(&body, "fjord_mqtt_connections"), Some(2.0), "{body}");
    assert_eq!(
        metric(&body, "fjord_mqtt_messages_in_total{qos=\"1\"}"),
        Some(4.0)
    );
    assert_eq!(
        metric(&body, "fjord_mqtt_messages_in_total{qos=\"0\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&body, "fjord_mqtt_messages_out_total{qos=\"1\"}"),
        Some(4.0)
    );
    assert_eq!(metric(&body, "fjord_mqtt_retained_messages"), Some(1.0));
    for reason in ["queue_full", "expired", "too_large", "not_authorized"] {
        let name = format!("fjord_mqtt_messages_dropped_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&body, &name), Some(0.0), "{name}");
    }
}

#[tokio::test]
async fn mapped_topics_land_in_their_log_topic_and_groups_replay_mqtt_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &["--mqtt-map", "sensors/#=sensors"]);
    let mut sub = connect(&server.mqtt, "sub", true).await;
    sub.subscribe("#", QoS::AtLeastOnce).await;
    let mut publisher = connect(&server.mqtt, "pub", true).await;
    publisher
        .send("sensors/t1", QoS::AtLeastOnce, false, "21.5")
        .await;
    publisher
        .send("other/t", QoS::AtLeastOnce, false, "x")
        .await;
    // Subscribers get messages from every mapped log topic.
    let mut got: Vec<_> = sub.payloads(2).await;
    got.sort();
    assert_eq!(got, ["21.5", "x"]);

    let print = ["--from-beginning", "--print-key"];
    let sensors = server.ok(&[&["consume", "sensors"][..], &print].concat());
    assert_eq!(sensors, "sensors/t1\t21.5\n");
    let rest = server.ok(&[&["consume", "mqtt"][..], &print].concat());
    assert_eq!(rest, "other/t\tx\n");

    // A consumer group reads MQTT traffic and resumes where it stopped.
    let group = ["consume", "mqtt", "--group", "g", "--from-beginning"];
    assert_eq!(server.ok(&group), "x\n");
    publisher
        .send("other/t", QoS::AtLeastOnce, false, "y")
        .await;
    publisher.send("more/t", QoS::AtLeastOnce, false, "z").await;
    let out = server.ok(&group);
    let lines: BTreeSet<&str> = out.lines().collect();
    assert_eq!(lines, BTreeSet::from(["y", "z"]), "{out}");
}
