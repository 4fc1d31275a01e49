//! AMQP 0-9-1 against a real `fjord serve`, with the `lapin` client:
//! work queues with confirms and acknowledgements, fair dispatch,
//! redelivery, exchanges, `basic.get`, returns, restarts, and the errors a
//! client gets in AMQP's terms.
#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use common::amqp::{
    WAIT, bind, bodies, body, channel, confirm, confirmed_queue, confirming, connect, consume,
    declare, delivery, drain, durable_queue, exchange, get_held, passive, prefetching,
    publish_confirmed, queue, take_all,
};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};

fn start(dir: &tempfile::TempDir) -> Server {
    Server::start_with(&dir.path().join("data"), &[])
}

#[tokio::test]
async fn a_work_queue_delivers_confirmed_messages_in_order_and_acks_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    durable_queue(&ch, "tasks").await;
    confirm(&ch).await;
    let sent = bodies("t", 50);
    publish_confirmed(&ch, "", "tasks", &sent).await;

    let worker = prefetching(&conn, 10).await;
    let mut consumer = consume(&worker, "tasks", "w1").await;
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let d = delivery(&mut consumer).await;
        assert!(!d.redelivered);
        got.push(body(&d));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(got, sent);
    // Everything was acknowledged: a passive declare counts nothing left.
    let q = passive(&ch, "tasks").await.unwrap();
    assert_eq!(q.message_count(), 0);
    assert_eq!(q.consumer_count(), 1);
    // The queue's counters (whose rates are its publish, deliver and ack
    // rates) count each message once; acks settle in the background.
    let sample = |body: &str, name: &str| {
        common::mqtt::metric(body, &format!("{name}{{vhost=\"/\",queue=\"tasks\"}}"))
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = server.http_get("/metrics");
        let counts = [
            "fjord_amqp_queue_published_total",
            "fjord_amqp_queue_delivered_total",
            "fjord_amqp_queue_acked_total",
        ]
        .map(|n| sample(&body, n));
        if counts == [Some(50.0); 3] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{counts:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn prefetch_one_dispatches_fairly_and_a_dead_workers_messages_go_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    durable_queue(&ch, "jobs").await;
    confirm(&ch).await;

    // Worker A takes one job and dies without acknowledging it.
    let dying = connect(&server).await;
    let a = prefetching(&dying, 1).await;
    let mut ca = consume(&a, "jobs", "a").await;
    // Worker B, prefetch 1 too.
    let other = connect(&server).await;
    let b = prefetching(&other, 1).await;
    let mut cb = consume(&b, "jobs", "b").await;
    publish_confirmed(&ch, "", "jobs", &bodies("j", 4)).await;

    let held = body(&delivery(&mut ca).await);
    // Fair dispatch: A holds one unacknowledged job, so B gets the others
    // one at a time, acknowledging each.
    let mut b_got = Vec::new();
    for _ in 0..3 {
        let d = delivery(&mut cb).await;
        b_got.push(body(&d));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert!(!b_got.contains(&held));
    // A's connection dies: its job comes to B, marked redelivered.
    dying.close(200, "bye".into()).await.unwrap();
    let d = delivery(&mut cb).await;
    assert_eq!(body(&d), held);
    assert!(d.redelivered, "marked redelivered");
    d.ack(BasicAckOptions::default()).await.unwrap();
}

#[tokio::test]
async fn a_topic_exchange_routes_by_pattern_and_unroutable_mandatory_messages_return() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    exchange(&ch, "logs", ExchangeKind::Topic, FieldTable::default()).await;
    // The tutorial's table.
    for (name, keys) in [
        ("q1", vec!["*.orange.*"]),
        ("q2", vec!["*.*.rabbit", "lazy.#"]),
    ] {
        queue(&ch, name, false, FieldTable::default()).await;
        for k in keys {
            bind(&ch, name, "logs", k, FieldTable::default()).await;
        }
    }
    confirm(&ch).await;
    let routes = [
        ("quick.orange.rabbit", vec!["q1", "q2"]),
        ("lazy.orange.elephant", vec!["q1", "q2"]),
        ("quick.orange.fox", vec!["q1"]),
        ("lazy.brown.fox", vec!["q2"]),
        ("lazy.pink.rabbit", vec!["q2"]),
        ("quick.brown.fox", vec![]),
        ("lazy", vec!["q2"]),
    ];
    for (key, _) in &routes {
        let confirm = ch
            .basic_publish(
                "logs".into(),
                (*key).into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                key.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
        let returned = confirm.take_message();
        assert_eq!(
            returned.is_some(),
            *key == "quick.brown.fox",
            "{key}: returned only when no queue took it"
        );
        if let Some(r) = returned {
            assert_eq!(r.reply_code, 312);
        }
    }
    for queue in ["q1", "q2"] {
        let got = drain(&ch, queue).await;
        let want: Vec<&str> = routes
            .iter()
            .filter(|(_, qs)| qs.contains(&queue))
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(got, want, "{queue}");
    }
}

#[tokio::test]
async fn get_nack_and_reject_requeue_or_drop() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    durable_queue(&ch, "g").await;
    confirm(&ch).await;
    assert!(
        ch.basic_get("g".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .is_none(),
        "get-empty"
    );
    publish_confirmed(&ch, "", "g", &bodies("m", 2)).await;
    let m = get_held(&ch, "g").await;
    assert_eq!(&m.delivery.data[..], b"m0");
    assert_eq!(m.message_count, 1);
    m.delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
        .unwrap();
    let again = get_held(&ch, "g").await;
    assert_eq!(&again.delivery.data[..], b"m0");
    assert!(again.delivery.redelivered);
    again
        .delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let next = get_held(&ch, "g").await;
    assert_eq!(&next.delivery.data[..], b"m1", "the rejected one is gone");
    next.delivery.ack(BasicAckOptions::default()).await.unwrap();
}

#[tokio::test]
async fn confirmed_messages_survive_a_restart_and_acknowledged_ones_stay_gone() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    {
        let conn = connect(&server).await;
        let ch = channel(&conn).await;
        confirmed_queue(&ch, "keep", "k", 10).await;
        // Acknowledge the first three.
        for _ in 0..3 {
            let m = get_held(&ch, "keep").await;
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        // Take a fourth and leave it unacknowledged.
        get_held(&ch, "keep").await;
        // Acknowledgements have no reply: a round trip on the queue
        // settles them before the restart.
        passive(&ch, "keep").await.unwrap();
        conn.close(200, "bye".into()).await.unwrap();
    }
    assert_eq!(server.terminate(), Some(0));
    let server = start(&dir);
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    let got = take_all(&ch, "keep").await;
    let want: Vec<(String, bool)> = (3..10).map(|i| (format!("k{i}"), i == 3)).collect();
    assert_eq!(got, want, "the unacknowledged one comes back redelivered");
}

#[tokio::test]
async fn after_a_crash_a_message_that_was_delivered_comes_back_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    confirmed_queue(&ch, "crash", "c", 5).await;
    // Taken, not acknowledged, and the server is killed at once: whether
    // or not their deliveries were recorded, the mark stored before them
    // was.
    for i in 0..5 {
        let m = get_held(&ch, "crash").await;
        assert_eq!(m.delivery.data, format!("c{i}").as_bytes());
    }
    server.kill9();
    let server = start(&dir);
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    let got = take_all(&ch, "crash").await;
    let names: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    assert!(got.iter().all(|(_, redelivered)| *redelivered), "{got:?}");
}

#[tokio::test]
async fn channel_errors_close_the_channel_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let conn = connect(&server).await;

    // Redeclaring with other arguments: 406.
    let ch = channel(&conn).await;
    durable_queue(&ch, "args").await;
    let mut other = FieldTable::default();
    other.insert("x-max-length".into(), AMQPValue::LongInt(10));
    let e = declare(&ch, "args", QueueDeclareOptions::durable(), other)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("PRECONDITION_FAILED"), "{e}");

    // Publishing to a missing exchange: 404, on a confirm channel.
    let ch = confirming(&conn).await;
    let published = ch
        .basic_publish(
            "nowhere".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await;
    let outcome = match published {
        Ok(confirm) => confirm.await.map(|_| ()),
        Err(e) => Err(e),
    };
    let e = outcome.unwrap_err();
    assert!(e.to_string().contains("NOT_FOUND"), "{e}");

    // Acknowledging an unknown delivery tag: 406.
    let ch = channel(&conn).await;
    ch.basic_ack(99, BasicAckOptions::default()).await.unwrap();
    let e = declare(
        &ch,
        "after",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("PRECONDITION_FAILED"), "{e}");

    // The connection is fine: a new channel works.
    let ch = channel(&conn).await;
    durable_queue(&ch, "still-fine").await;
}

#[tokio::test]
async fn the_tls_listener_speaks_amqp_with_the_development_certificate() {
    use common::amqp_raw::Raw;
    use fjord_gateway_amqp::codec::{self, Method};

    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let pem = std::fs::read(server.data.join("amqp").join("amqp-dev-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&server.amqp_tls)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let mut c = Raw::over(tls);
    c.send_bytes(&codec::PROTOCOL_HEADER).await;
    let m = c.method(0).await;
    let Method::ConnectionStart(start) = &m else {
        panic!("expected connection.start, got {m:?}");
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(&start.mechanisms[..], b"PLAIN AMQPLAIN");
}
