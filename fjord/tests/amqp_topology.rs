//! AMQP exchanges and queues against a real `fjord serve` (lapin): headers
//! exchanges, exchange-to-exchange bindings, alternate exchanges,
//! exclusive, auto-delete and server-named queues, purge and conditional
//! delete, a consumer cancelled by the server when its queue goes,
//! transactions, `basic.recover` and no-ack consumers.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::amqp::{
    WAIT, bind, channel, confirming, connect, consume, declare, delivery, drain, durable_exchange,
    exchange, passive, publish, queue, table, text, try_consume,
};
use common::{Server, eventually};
use futures::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    BasicRecoverOptions, ExchangeBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};

fn headers(pairs: &[(&str, AMQPValue)]) -> BasicProperties {
    BasicProperties::default().with_headers(table(pairs))
}

#[tokio::test]
async fn headers_exchanges_e2e_bindings_and_alternate_exchanges_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &[]);
    let conn = connect(&server).await;
    let ch = confirming(&conn).await;

    // Headers: all (default) and any.
    exchange(&ch, "h", ExchangeKind::Headers, FieldTable::default()).await;
    queue(&ch, "all", false, FieldTable::default()).await;
    queue(&ch, "any", false, FieldTable::default()).await;
    bind(
        &ch,
        "all",
        "h",
        "",
        table(&[("format", text("pdf")), ("type", text("report"))]),
    )
    .await;
    bind(
        &ch,
        "any",
        "h",
        "",
        table(&[
            ("x-match", text("any")),
            ("format", text("zip")),
            ("type", text("report")),
        ]),
    )
    .await;
    assert!(
        publish(
            &ch,
            "h",
            "",
            "both",
            headers(&[("format", text("pdf")), ("type", text("report"))]),
        )
        .await
    );
    assert!(publish(&ch, "h", "", "zip", headers(&[("format", text("zip"))])).await);
    assert!(publish(&ch, "h", "", "none", headers(&[("format", text("doc"))])).await);
    assert_eq!(drain(&ch, "all").await, ["both"]);
    assert_eq!(drain(&ch, "any").await, ["both", "zip"]);

    // Exchange to exchange: a fanout feeding a direct one.
    exchange(&ch, "front", ExchangeKind::Fanout, FieldTable::default()).await;
    exchange(&ch, "back", ExchangeKind::Direct, FieldTable::default()).await;
    ch.exchange_bind(
        "back".into(),
        "front".into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    queue(&ch, "red", false, FieldTable::default()).await;
    bind(&ch, "red", "back", "red", FieldTable::default()).await;
    assert!(publish(&ch, "front", "red", "via-front", BasicProperties::default()).await);
    assert!(publish(&ch, "front", "blue", "lost", BasicProperties::default()).await);
    assert_eq!(drain(&ch, "red").await, ["via-front"]);

    // Alternate exchange: what "main" cannot route goes to "ae".
    exchange(&ch, "ae", ExchangeKind::Fanout, FieldTable::default()).await;
    queue(&ch, "unrouted", false, FieldTable::default()).await;
    bind(&ch, "unrouted", "ae", "", FieldTable::default()).await;
    exchange(
        &ch,
        "main",
        ExchangeKind::Direct,
        table(&[("alternate-exchange", text("ae"))]),
    )
    .await;
    queue(&ch, "known", false, FieldTable::default()).await;
    bind(&ch, "known", "main", "k", FieldTable::default()).await;
    assert!(publish(&ch, "main", "k", "routed", BasicProperties::default()).await);
    assert!(
        publish(
            &ch,
            "main",
            "other",
            "alternate",
            BasicProperties::default(),
        )
        .await
    );
    assert_eq!(drain(&ch, "known").await, ["routed"]);
    assert_eq!(drain(&ch, "unrouted").await, ["alternate"]);
}

#[tokio::test]
async fn exclusive_auto_delete_and_server_named_queues() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &[]);
    let owner = connect(&server).await;
    let ch = channel(&owner).await;
    // Server-named and exclusive: another connection may not use it.
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    let q = declare(&ch, "", exclusive, FieldTable::default())
        .await
        .unwrap();
    let name = q.name().to_string();
    assert!(name.starts_with("amq.gen-"), "{name}");
    let other = connect(&server).await;
    let och = channel(&other).await;
    let e = try_consume(&och, &name, "", BasicConsumeOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("RESOURCE_LOCKED"), "{e}");
    // Gone with its connection.
    owner.close(200, "bye".into()).await.unwrap();
    let och = channel(&other).await;
    let mut gone = None;
    eventually("exclusive queue stayed", async || {
        gone = passive(&och, &name).await.err();
        gone.is_some()
    })
    .await;
    let e = gone.unwrap();
    assert!(e.to_string().contains("NOT_FOUND"), "{e}");

    // Auto-delete: gone when its last consumer cancels.
    let ch = channel(&other).await;
    let auto_delete = QueueDeclareOptions {
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    declare(&ch, "auto", auto_delete, FieldTable::default())
        .await
        .unwrap();
    consume(&ch, "auto", "c").await;
    ch.basic_cancel("c".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    eventually("auto-delete queue stayed", async || {
        let probe = channel(&other).await;
        passive(&probe, "auto").await.is_err()
    })
    .await;
}

#[tokio::test]
async fn purge_conditional_delete_and_server_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &[]);
    let conn = connect(&server).await;
    let ch = confirming(&conn).await;
    queue(&ch, "p", false, FieldTable::default()).await;
    for i in 0..3 {
        assert!(publish(&ch, "", "p", &i.to_string(), BasicProperties::default()).await);
    }
    // Not empty: refused.
    let e = ch
        .queue_delete(
            "p".into(),
            QueueDeleteOptions {
                if_empty: true,
                ..QueueDeleteOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("PRECONDITION_FAILED"), "{e}");
    let ch = channel(&conn).await;
    assert_eq!(
        ch.queue_purge("p".into(), QueuePurgeOptions::default())
            .await
            .unwrap(),
        3
    );
    assert!(drain(&ch, "p").await.is_empty());

    // In use: refused with if-unused; deleted without, and its consumer
    // is told (basic.cancel from the server).
    let c = channel(&conn).await;
    let mut consumer = consume(&c, "p", "watcher").await;
    let e = ch
        .queue_delete(
            "p".into(),
            QueueDeleteOptions {
                if_unused: true,
                ..QueueDeleteOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("PRECONDITION_FAILED"), "{e}");
    let ch = channel(&conn).await;
    ch.queue_delete("p".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let end = tokio::time::timeout(WAIT, consumer.next()).await.unwrap();
    assert!(end.is_none(), "the consumer stream ends: {end:?}");
}

#[tokio::test]
async fn transactions_recover_and_no_ack_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &[]);
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    queue(&ch, "tx", false, FieldTable::default()).await;
    ch.tx_select().await.unwrap();
    for b in ["rolled", "back"] {
        ch.basic_publish(
            "".into(),
            "tx".into(),
            BasicPublishOptions::default(),
            b.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    ch.tx_rollback().await.unwrap();
    ch.basic_publish(
        "".into(),
        "tx".into(),
        BasicPublishOptions::default(),
        b"committed",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    ch.tx_commit().await.unwrap();
    let reader = channel(&conn).await;
    assert_eq!(drain(&reader, "tx").await, ["committed"]);

    // basic.recover: what a channel holds unacknowledged comes again.
    let pch = confirming(&conn).await;
    assert!(publish(&pch, "", "tx", "again", BasicProperties::default()).await);
    let rc = channel(&conn).await;
    let first = rc
        .basic_get("tx".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(!first.delivery.redelivered);
    rc.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let second = rc
        .basic_get("tx".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&second.delivery.data[..], b"again");
    assert!(second.delivery.redelivered);

    // A no-ack consumer settles on delivery: nothing comes back when its
    // channel closes.
    assert!(publish(&pch, "", "tx", "once", BasicProperties::default()).await);
    let nc = channel(&conn).await;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let mut c = try_consume(&nc, "tx", "n", no_ack).await.unwrap();
    let d = delivery(&mut c).await;
    assert_eq!(&d.data[..], b"once");
    nc.close(200, "bye".into()).await.unwrap();
    assert!(drain(&reader, "tx").await.is_empty());
}

/// The sum of a per-queue gauge over `queues`, from `/metrics`.
fn gauge(server: &Server, name: &str, queues: &[&str]) -> u64 {
    let (_, body) = server.http_get("/metrics");
    queues
        .iter()
        .map(|q| {
            let prefix = format!("{name}{{vhost=\"/\",queue=\"{q}\"}} ");
            body.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test]
async fn a_global_prefetch_is_shared_by_the_channels_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &[]);
    let conn = connect(&server).await;
    let ch = confirming(&conn).await;
    for q in ["g1", "g2"] {
        queue(&ch, q, false, FieldTable::default()).await;
        for i in 0..3 {
            assert!(publish(&ch, "", q, &format!("{q}-{i}"), BasicProperties::default()).await);
        }
    }
    let c = channel(&conn).await;
    c.basic_qos(2, lapin::options::BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut s1 = consume(&c, "g1", "c1").await;
    let mut s2 = consume(&c, "g2", "c2").await;
    let settled = |unacked: u64, ready: u64| {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let u = gauge(&server, "fjord_amqp_queue_messages_unacked", &["g1", "g2"]);
            let r = gauge(&server, "fjord_amqp_queue_messages_ready", &["g1", "g2"]);
            if u + r == unacked + ready && u >= unacked {
                assert_eq!((u, r), (unacked, ready), "two held by the channel at most");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "unacked {u}, ready {r}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    settled(2, 4);
    // Acknowledging one lets exactly one more through, from either queue.
    let first = tokio::select! {
        d = s1.next() => d.unwrap().unwrap(),
        d = s2.next() => d.unwrap().unwrap(),
    };
    first
        .ack(lapin::options::BasicAckOptions::default())
        .await
        .unwrap();
    settled(2, 3);
}

#[tokio::test]
async fn a_deleted_queues_bindings_do_not_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &[]);
    {
        let conn = connect(&server).await;
        let ch = channel(&conn).await;
        durable_exchange(&ch, "events", ExchangeKind::Direct).await;
        queue(&ch, "sink", true, FieldTable::default()).await;
        bind(&ch, "sink", "events", "k", FieldTable::default()).await;
        ch.queue_delete("sink".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        queue(&ch, "sink", true, FieldTable::default()).await;
        conn.close(200, "bye".into()).await.unwrap();
    }
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start_with(&dir.path().join("data"), &[]);
    let conn = connect(&server).await;
    let ch = confirming(&conn).await;
    assert!(publish(&ch, "events", "k", "x", BasicProperties::default()).await);
    assert!(
        drain(&ch, "sink").await.is_empty(),
        "the old binding is gone"
    );
}

/// The queue topics `fjord topic list --internal` shows.
fn queue_topics(server: &Server) -> Vec<String> {
    server
        .ok(&["topic", "list", "--internal"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|t| t.starts_with("__amqp_q."))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn deleted_and_transient_queues_leave_no_topic_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &[]);
    {
        let conn = connect(&server).await;
        let ch = confirming(&conn).await;
        queue(&ch, "kept", true, FieldTable::default()).await;
        queue(&ch, "dropped", true, FieldTable::default()).await;
        queue(&ch, "transient", false, FieldTable::default()).await;
        for q in ["kept", "dropped", "transient"] {
            assert!(publish(&ch, "", q, "m", BasicProperties::default()).await);
        }
        assert_eq!(queue_topics(&server).len(), 3);
        ch.queue_delete("dropped".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        assert_eq!(
            queue_topics(&server).len(),
            2,
            "the deleted queue's topic goes"
        );
        conn.close(200, "bye".into()).await.unwrap();
    }
    assert_eq!(server.terminate(), Some(0));

    // After a restart only the durable queue has a topic; the transient
    // one, declared again, starts empty.
    let server = Server::start_with(&data, &[]);
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    let topics = queue_topics(&server);
    assert_eq!(topics.len(), 1, "{topics:?}");
    assert!(topics[0].starts_with("__amqp_q.kept."), "{topics:?}");
    queue(&ch, "transient", false, FieldTable::default()).await;
    assert_eq!(drain(&ch, "transient").await, Vec::<String>::new());
    assert_eq!(drain(&ch, "kept").await, ["m"]);
}
