//! MQTT 3.1.1 sessions against a real `fjord serve`: persistent sessions
//! (also across a restart), wills, takeover, client identifiers,
//! keep-alive and the bound on an offline session's queue.
//!
//! Servers run with one partition per log topic, so every MQTT message is
//! dispatched in publish order: a message published last is a barrier that
//! proves nothing else is on its way.
#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use common::mqtt::{WAIT, assert_offline_queue, connect, metric, options, text, try_connect};
use rumqttc::{LastWill, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn start(dir: &tempfile::TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--mqtt-partitions", "1"];
    args.extend_from_slice(extra);
    Server::start_with(&dir.path().join("data"), &args)
}

fn numbered(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn a_persistent_session_gets_what_it_missed_also_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut c = connect(&server.mqtt, "keep", false).await;
    assert!(!c.connack.session_present);
    c.subscribe("s/#", QoS::AtLeastOnce).await;
    c.disconnect().await;

    let mut publisher = connect(&server.mqtt, "pub", true).await;
    for m in numbered("a", 0..20) {
        publisher.send("s/t", QoS::AtLeastOnce, false, &m).await;
    }
    let mut c = connect(&server.mqtt, "keep", false).await;
    assert!(c.connack.session_present);
    assert_eq!(c.payloads(20).await, numbered("a", 0..20));
    publisher
        .send("s/t", QoS::AtLeastOnce, false, "barrier")
        .await;
    assert_eq!(c.payloads(1).await, ["barrier"], "each message once");
    c.disconnect().await;

    // Missed before and after a restart.
    for m in numbered("b", 0..10) {
        publisher.send("s/t", QoS::AtLeastOnce, false, &m).await;
    }
    drop(publisher);
    assert_eq!(server.terminate(), Some(0));
    let server = start(&dir, &[]);
    let mut publisher = connect(&server.mqtt, "pub", true).await;
    for m in numbered("b", 10..20) {
        publisher.send("s/t", QoS::AtLeastOnce, false, &m).await;
    }
    let mut c = connect(&server.mqtt, "keep", false).await;
    assert!(c.connack.session_present);
    assert_eq!(c.payloads(20).await, numbered("b", 0..20));
    publisher
        .send("s/t", QoS::AtLeastOnce, false, "barrier")
        .await;
    assert_eq!(c.payloads(1).await, ["barrier"], "each message once");
    c.disconnect().await;

    // A clean session discards the stored one: no session, nothing missed.
    publisher
        .send("s/t", QoS::AtLeastOnce, false, "missed")
        .await;
    let mut c = connect(&server.mqtt, "keep", true).await;
    assert!(!c.connack.session_present);
    c.subscribe("barrier", QoS::AtLeastOnce).await;
    publisher.send("s/t", QoS::AtLeastOnce, false, "live").await;
    publisher
        .send("barrier", QoS::AtLeastOnce, false, "barrier")
        .await;
    assert_eq!(c.payloads(1).await, ["barrier"]);
    c.disconnect().await;
    let c = connect(&server.mqtt, "keep", false).await;
    assert!(
        !c.connack.session_present,
        "a clean session ends with its connection"
    );
}

#[tokio::test]
async fn a_will_is_sent_when_the_connection_dies_and_not_after_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut sub = connect(&server.mqtt, "sub", true).await;
    sub.subscribe("will/#", QoS::AtLeastOnce).await;
    let with_will = |id: &str| {
        let mut o = options(&server.mqtt, id, true);
        let topic = format!("will/{id}");
        o.set_last_will(LastWill::new(topic, "gone", QoS::AtLeastOnce, false));
        o
    };

    let w1 = try_connect(with_will("w1")).await.unwrap();
    w1.drop_connection().await;
    let p = sub.publish().await;
    assert_eq!(text(&p), ("will/w1".into(), "gone".into()));
    assert_eq!(p.qos, QoS::AtLeastOnce);

    // After DISCONNECT, no will. The server publishes wills from a task
    // once the connection is closed, so the barrier is a will too: w3's,
    // dropped after w2 left, follows the path w2's would have taken.
    let w2 = try_connect(with_will("w2")).await.unwrap();
    w2.disconnect().await;
    let w3 = try_connect(with_will("w3")).await.unwrap();
    w3.drop_connection().await;
    let p = sub.publish().await;
    assert_eq!(
        text(&p),
        ("will/w3".into(), "gone".into()),
        "no will for w2"
    );
}

#[tokio::test]
async fn a_second_connection_with_the_same_id_takes_the_session_over() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut first = connect(&server.mqtt, "dup", false).await;
    first.subscribe("tk/#", QoS::AtLeastOnce).await;
    let mut second = connect(&server.mqtt, "dup", false).await;
    assert!(second.connack.session_present);
    // 3.1.1 has no server DISCONNECT: the first connection is closed.
    first.closed().await;

    let mut publisher = connect(&server.mqtt, "pub", true).await;
    publisher
        .send("tk/1", QoS::AtLeastOnce, false, "to the second")
        .await;
    let p = second.publish().await;
    assert_eq!(text(&p), ("tk/1".into(), "to the second".into()));
}

/// Reads until the server closes the connection; returns what came first.
async fn read_to_close(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("the server did not close the connection");
        match read {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

#[tokio::test]
async fn an_empty_client_id_is_accepted_only_with_a_clean_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut c = connect(&server.mqtt, "", true).await;
    assert!(!c.connack.session_present);
    c.subscribe("anon/t", QoS::AtLeastOnce).await;
    c.send("anon/t", QoS::AtLeastOnce, false, "hi").await;
    assert_eq!(c.payloads(1).await, ["hi"]);

    // rumqttc will not send this CONNECT (it panics first), so: raw bytes.
    // 3.1.1, clean session 0, keep alive 60, empty client id.
    let connect = [
        0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x00, 0x00, 0x3c, 0x00, 0x00,
    ];
    let mut s = tokio::net::TcpStream::connect(&server.mqtt).await.unwrap();
    s.write_all(&connect).await.unwrap();
    assert_eq!(
        read_to_close(&mut s).await,
        [0x20, 0x02, 0x00, 0x02],
        "CONNACK 'identifier rejected', then closed"
    );
}

#[tokio::test]
async fn a_silent_client_is_closed_after_its_keep_alive_and_its_will_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut sub = connect(&server.mqtt, "sub", true).await;
    sub.subscribe("will/#", QoS::AtLeastOnce).await;

    // 3.1.1, clean session + will at QoS 1, keep alive 1 s, client id "ka",
    // will "will/ka" = "timeout".
    let mut connect = vec![
        0x10, 0x20, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x0e, 0x00, 0x01,
    ];
    for field in ["ka", "will/ka", "timeout"] {
        connect.extend_from_slice(&(field.len() as u16).to_be_bytes());
        connect.extend_from_slice(field.as_bytes());
    }
    assert_eq!(usize::from(connect[1]), connect.len() - 2);
    let mut s = tokio::net::TcpStream::connect(&server.mqtt).await.unwrap();
    s.write_all(&connect).await.unwrap();
    // Then silence: the server closes the connection (3.1.1 3.1.2.10:
    // after one and a half keep-alive periods).
    assert_eq!(read_to_close(&mut s).await, [0x20, 0x02, 0x00, 0x00]);
    let p = sub.publish().await;
    assert_eq!(text(&p), ("will/ka".into(), "timeout".into()));
}

#[tokio::test]
async fn an_offline_session_queues_at_most_the_configured_number_of_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &["--mqtt-max-queued-messages", "5"]);
    let mut c = connect(&server.mqtt, "q", false).await;
    c.subscribe("q/#", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publisher = connect(&server.mqtt, "pub", true).await;
    for i in 0..20 {
        publisher
            .send("q/t", QoS::AtLeastOnce, false, &i.to_string())
            .await;
    }

    let mut c = connect(&server.mqtt, "q", false).await;
    assert!(c.connack.session_present);
    publisher
        .send("q/t", QoS::AtLeastOnce, false, "barrier")
        .await;
    let got: Vec<u32> = c
        .until("barrier")
        .await
        .iter()
        .filter_map(|p| text(p).1.parse().ok())
        .collect();
    // Nothing was in flight when the client left, and 3.1.1 has no receive
    // maximum: the session holds at most the configured 5 for it.
    assert_offline_queue(&server, &got, 20, 5);
}

#[tokio::test]
async fn a_connected_subscriber_that_falls_behind_reads_the_rest_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // A queue of 10 is far smaller than the bursts the publisher sends.
    let server = start(&dir, &["--mqtt-max-queued-messages", "10"]);
    let mut sub = connect(&server.mqtt, "slow", true).await;
    sub.subscribe("burst/#", QoS::AtLeastOnce).await;
    let mut sub0 = connect(&server.mqtt, "slow-qos0", true).await;
    sub0.subscribe("burst/#", QoS::AtMostOnce).await;
    let publisher = connect(&server.mqtt, "fast", true).await;
    let n = 2_000;
    for i in 0..n {
        publisher
            .client
            .publish("burst/t", QoS::AtLeastOnce, false, i.to_string())
            .await
            .unwrap();
    }
    let got: Vec<u32> = sub
        .payloads(n)
        .await
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        got,
        (0..n as u32).collect::<Vec<_>>(),
        "all, once, in order"
    );
    let got0: Vec<u32> = sub0
        .payloads(n)
        .await
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(got0, (0..n as u32).collect::<Vec<_>>(), "QoS 0 too");
    let (_, body) = server.http_get("/metrics");
    let dropped = metric(
        &body,
        "fjord_mqtt_messages_dropped_total{reason=\"queue_full\"}",
    );
    assert_eq!(
        dropped,
        Some(0.0),
        "nothing dropped for a connected session"
    );
}
