//! AMQP queue arguments against a real `fjord serve` (lapin): message TTL
//! and per-message expiration, dead-lettering with `x-death`, length
//! limits with both overflow behaviours, priorities, single active
//! consumer and queue expiry.
#![allow(clippy::unwrap_used)]

mod common;

use common::amqp::{
    bind, body, channel, confirming, connect, consume, delivery, drain, exchange, get_held, next,
    passive, publish, queue, table, text,
};
use common::{Server, eventually};
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

async fn setup() -> (tempfile::TempDir, Server, Connection, Channel) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &[]);
    let conn = connect(&server).await;
    let ch = confirming(&conn).await;
    (dir, server, conn, ch)
}

/// A fanout dead-letter exchange `dlx` feeding queue `dead`.
async fn dead_letter_queue(ch: &Channel) {
    exchange(ch, "dlx", ExchangeKind::Fanout, FieldTable::default()).await;
    queue(ch, "dead", true, FieldTable::default()).await;
    bind(ch, "dead", "dlx", "", FieldTable::default()).await;
}

fn x_death(m: &lapin::message::BasicGetMessage) -> (String, i64) {
    let headers = m.delivery.properties.headers().as_ref().unwrap();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first() else {
        panic!("x-death: {deaths:?}");
    };
    let reason = match first.inner().get("reason") {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("reason: {other:?}"),
    };
    let count = match first.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("count: {other:?}"),
    };
    (reason, count)
}

#[tokio::test]
async fn expired_messages_go_to_the_dead_letter_exchange() {
    let (_dir, _server, _conn, ch) = setup().await;
    dead_letter_queue(&ch).await;
    queue(
        &ch,
        "short",
        true,
        table(&[
            ("x-message-ttl", AMQPValue::LongInt(100)),
            ("x-dead-letter-exchange", text("dlx")),
        ]),
    )
    .await;
    assert!(publish(&ch, "", "short", "stale", BasicProperties::default()).await);
    // Nobody consumes: after the TTL it is dead-lettered.
    let m = next(&ch, "dead").await;
    assert_eq!(&m.delivery.data[..], b"stale");
    assert_eq!(x_death(&m), ("expired".into(), 1));
    assert!(drain(&ch, "short").await.is_empty());

    // A per-message expiration shorter than the queue's TTL wins.
    queue(
        &ch,
        "long",
        true,
        table(&[("x-dead-letter-exchange", text("dlx"))]),
    )
    .await;
    assert!(
        publish(
            &ch,
            "",
            "long",
            "quick",
            BasicProperties::default().with_expiration("50".into())
        )
        .await
    );
    assert!(publish(&ch, "", "long", "keeps", BasicProperties::default()).await);
    let m = next(&ch, "dead").await;
    assert_eq!(&m.delivery.data[..], b"quick");
    assert_eq!(drain(&ch, "long").await, ["keeps"]);
}

#[tokio::test]
async fn rejected_messages_are_dead_lettered_with_a_routing_key_and_x_death() {
    let (_dir, _server, _conn, ch) = setup().await;
    exchange(
        &ch,
        "dlx-direct",
        ExchangeKind::Direct,
        FieldTable::default(),
    )
    .await;
    queue(&ch, "retry", true, FieldTable::default()).await;
    bind(&ch, "retry", "dlx-direct", "again", FieldTable::default()).await;
    queue(
        &ch,
        "work",
        true,
        table(&[
            ("x-dead-letter-exchange", text("dlx-direct")),
            ("x-dead-letter-routing-key", text("again")),
        ]),
    )
    .await;
    assert!(publish(&ch, "", "work", "job", BasicProperties::default()).await);
    let m = get_held(&ch, "work").await;
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let d = next(&ch, "retry").await;
    assert_eq!(&d.delivery.data[..], b"job");
    assert_eq!(x_death(&d), ("rejected".into(), 1));
}

#[tokio::test]
async fn a_full_queue_drops_its_head_or_refuses_the_publish() {
    let (_dir, _server, _conn, ch) = setup().await;
    dead_letter_queue(&ch).await;
    queue(
        &ch,
        "bounded",
        true,
        table(&[
            ("x-max-length", AMQPValue::LongInt(2)),
            ("x-dead-letter-exchange", text("dlx")),
        ]),
    )
    .await;
    for b in ["a", "b", "c"] {
        assert!(publish(&ch, "", "bounded", b, BasicProperties::default()).await);
    }
    let m = next(&ch, "dead").await;
    assert_eq!(&m.delivery.data[..], b"a", "the head was dropped");
    assert_eq!(x_death(&m), ("maxlen".into(), 1));
    assert_eq!(drain(&ch, "bounded").await, ["b", "c"]);

    queue(
        &ch,
        "strict",
        true,
        table(&[
            ("x-max-length", AMQPValue::LongInt(2)),
            ("x-overflow", text("reject-publish")),
        ]),
    )
    .await;
    assert!(publish(&ch, "", "strict", "1", BasicProperties::default()).await);
    assert!(publish(&ch, "", "strict", "2", BasicProperties::default()).await);
    // The queue's count follows its reads: wait until it holds both.
    eventually("the queue holds both", async || {
        passive(&ch, "strict").await.unwrap().message_count() == 2
    })
    .await;
    assert!(
        !publish(&ch, "", "strict", "3", BasicProperties::default()).await,
        "nacked when full"
    );
    assert_eq!(drain(&ch, "strict").await, ["1", "2"]);
}

#[tokio::test]
async fn a_priority_queue_delivers_higher_priorities_first() {
    let (_dir, _server, _conn, ch) = setup().await;
    queue(
        &ch,
        "prio",
        true,
        table(&[("x-max-priority", AMQPValue::ShortShortUInt(10))]),
    )
    .await;
    for (body, p) in [("low", 1u8), ("none", 0), ("high", 9), ("mid", 5)] {
        let props = if p == 0 {
            BasicProperties::default()
        } else {
            BasicProperties::default().with_priority(p)
        };
        assert!(publish(&ch, "", "prio", body, props).await);
    }
    assert_eq!(drain(&ch, "prio").await, ["high", "mid", "low", "none"]);
}

#[tokio::test]
async fn a_single_active_consumer_gets_everything_until_it_goes() {
    let (_dir, server, _conn, ch) = setup().await;
    queue(
        &ch,
        "sac",
        true,
        table(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let c1 = connect(&server).await;
    let ch1 = channel(&c1).await;
    let mut first = consume(&ch1, "sac", "first").await;
    let ch2 = channel(&c1).await;
    let mut second = consume(&ch2, "sac", "second").await;
    for i in 0..4 {
        assert!(publish(&ch, "", "sac", &i.to_string(), BasicProperties::default()).await);
    }
    for i in 0..4 {
        let d = delivery(&mut first).await;
        assert_eq!(body(&d), i.to_string());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    // The active consumer goes: the other takes over.
    ch1.close(200, "bye".into()).await.unwrap();
    assert!(publish(&ch, "", "sac", "after", BasicProperties::default()).await);
    let d = delivery(&mut second).await;
    assert_eq!(&d.data[..], b"after");
}

#[tokio::test]
async fn an_unused_queue_expires() {
    let (_dir, server, _conn, ch) = setup().await;
    queue(
        &ch,
        "temp",
        true,
        table(&[("x-expires", AMQPValue::LongInt(100))]),
    )
    .await;
    // Watched from the metrics (a declare, even passive, would renew it).
    eventually("the queue stayed", async || {
        let (_, body) = server.http_get("/metrics");
        !body.contains("queue=\"temp\"")
    })
    .await;
    let e = passive(&ch, "temp").await.unwrap_err();
    assert!(e.to_string().contains("NOT_FOUND"), "{e}");
}

/// With `flags` turning a resource alarm on from the start: a publisher
/// is blocked once it has published, and a consumer on another connection
/// still gets what was stored.
async fn an_alarm_blocks_publishers_and_consumers_go_on(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), flags);
    let publisher = connect(&server).await;
    let ch = confirming(&publisher).await;
    queue(&ch, "alarmed", true, FieldTable::default()).await;
    assert!(publish(&ch, "", "alarmed", "before", BasicProperties::default()).await);
    eventually("connection.blocked not received", async || {
        publisher.status().blocked()
    })
    .await;
    // A consumer on another connection still gets what was stored.
    let consumer = connect(&server).await;
    let c = channel(&consumer).await;
    let m = next(&c, "alarmed").await;
    assert_eq!(&m.delivery.data[..], b"before");
}

#[tokio::test]
async fn a_disk_alarm_blocks_publishers_and_consumers_go_on() {
    // No file system has this much free: the alarm is on from the start.
    an_alarm_blocks_publishers_and_consumers_go_on(&[
        "--amqp-disk-free-limit",
        "18446744073709551615",
    ])
    .await;
}

#[tokio::test]
async fn a_memory_alarm_blocks_publishers_and_consumers_go_on() {
    // Every process holds more than a byte: the alarm is on from the start.
    an_alarm_blocks_publishers_and_consumers_go_on(&["--amqp-memory-high-watermark", "1"]).await;
}
