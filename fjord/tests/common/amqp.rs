//! AMQP clients (lapin) for the gateway tests: connect, declare, publish
//! with confirms, and read queues with bounded waits.

use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind, Queue,
};

use super::Server;

/// The failure bound of every wait.
pub const WAIT: Duration = Duration::from_secs(15);

/// A connection to the server's AMQP listener as guest, vhost `/`.
pub async fn connect(server: &Server) -> Connection {
    connect_vhost(server, "/").await.unwrap()
}

/// A connection to `vhost` as guest ("myvhost" is the URI path
/// `/myvhost`), or why the server refused it.
pub async fn connect_vhost(server: &Server, vhost: &str) -> lapin::Result<Connection> {
    let path = if vhost == "/" { "%2f" } else { vhost };
    let uri = format!("amqp://guest:guest@{}/{path}", server.amqp);
    tokio::time::timeout(
        WAIT,
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("connect in time")
}

/// A new channel on `conn`.
pub async fn channel(conn: &Connection) -> Channel {
    conn.create_channel().await.unwrap()
}

/// A new channel on `conn` whose consumers hold at most `prefetch`
/// unacknowledged deliveries each.
pub async fn prefetching(conn: &Connection, prefetch: u16) -> Channel {
    let ch = channel(conn).await;
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    ch
}

/// A new channel on `conn` in confirm mode.
pub async fn confirming(conn: &Connection) -> Channel {
    let ch = channel(conn).await;
    confirm(&ch).await;
    ch
}

/// Puts `ch` in confirm mode.
pub async fn confirm(ch: &Channel) {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
}

/// A connection to `addr` (a cluster node's AMQP listener), tried again
/// while the cluster elects the node that runs the gateway (bounded).
pub async fn connect_to(addr: &str) -> Connection {
    let uri = format!("amqp://guest:guest@{addr}/%2f");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = tokio::time::timeout(
            WAIT,
            Connection::connect(&uri, ConnectionProperties::default()),
        )
        .await;
        match attempt {
            Ok(Ok(c)) => return c,
            Ok(Err(e)) => assert!(
                tokio::time::Instant::now() < deadline,
                "no AMQP connection through {addr}: {e}"
            ),
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "no AMQP connection through {addr} in time"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A field table from pairs.
pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// A long-string field value.
pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Declares queue `name`.
pub async fn queue(ch: &Channel, name: &str, durable: bool, arguments: FieldTable) {
    let options = QueueDeclareOptions {
        durable,
        ..QueueDeclareOptions::default()
    };
    declare(ch, name, options, arguments).await.unwrap();
}

/// queue.declare with `options`: the queue, or the refusal.
pub async fn declare(
    ch: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> lapin::Result<Queue> {
    ch.queue_declare(name.into(), options, arguments).await
}

/// A passive queue.declare: the queue with its counts, or NOT_FOUND.
pub async fn passive(ch: &Channel, name: &str) -> lapin::Result<Queue> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    declare(ch, name, options, FieldTable::default()).await
}

/// Declares exchange `name` of `kind`.
pub async fn exchange(ch: &Channel, name: &str, kind: ExchangeKind, args: FieldTable) {
    ch.exchange_declare(name.into(), kind, ExchangeDeclareOptions::default(), args)
        .await
        .unwrap();
}

/// Declares durable exchange `name` of `kind`.
pub async fn durable_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
        .unwrap();
}

/// Binds `queue` to `exchange` with `key`.
pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        args,
    )
    .await
    .unwrap();
}

/// A consumer of `queue` tagged `tag`, with manual acks.
pub async fn consume(ch: &Channel, queue: &str, tag: &str) -> Consumer {
    try_consume(ch, queue, tag, BasicConsumeOptions::default())
        .await
        .unwrap()
}

/// A consumer of `queue` tagged `tag` with `options`, or the refusal.
pub async fn try_consume(
    ch: &Channel,
    queue: &str,
    tag: &str,
    options: BasicConsumeOptions,
) -> lapin::Result<Consumer> {
    ch.basic_consume(queue.into(), tag.into(), options, FieldTable::default())
        .await
}

/// The consumer's next delivery (bounded wait).
pub async fn delivery(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("delivery in time")
        .unwrap()
        .unwrap()
}

/// A delivery's body as text.
pub fn body(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

/// Publishes and waits for the confirm (the channel is in confirm mode);
/// true for an ack.
pub async fn publish(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &str,
    props: BasicProperties,
) -> bool {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap()
    .is_ack()
}

/// Takes every message of `queue` (no-ack), in order.
pub async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push(body(&m.delivery));
    }
    out
}

/// The next message of `queue` (no-ack), waiting for one (bounded).
pub async fn next(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing arrived in {queue}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Declares durable queue `name` with no arguments.
pub async fn durable_queue(ch: &Channel, name: &str) {
    queue(ch, name, true, FieldTable::default()).await;
}

/// Publishes persistent messages with confirms (the channel is in confirm
/// mode); each must be acked.
pub async fn publish_confirmed(ch: &Channel, exchange: &str, key: &str, bodies: &[String]) {
    for b in bodies {
        publish_persistent(ch, exchange, key, b).await;
    }
}

/// Publishes a persistent message with confirm (the channel is in confirm
/// mode); it must be acked.
pub async fn publish_persistent(ch: &Channel, exchange: &str, key: &str, body: &str) {
    let props = BasicProperties::default().with_delivery_mode(2);
    assert!(
        publish(ch, exchange, key, body, props).await,
        "confirmed: {body}"
    );
}

/// `prefix0`, `prefix1`, ...
pub fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Every message of `queue` through `basic.get`, acknowledged one by one:
/// (body, redelivered).
pub async fn take_all(ch: &Channel, queue: &str) -> Vec<(String, bool)> {
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        got.push((body(&m.delivery), m.delivery.redelivered));
        m.delivery
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .unwrap();
    }
    got
}

/// The bodies of every message of `queue`, taken as [`take_all`] does.
pub async fn take_bodies(ch: &Channel, queue: &str) -> Vec<String> {
    take_all(ch, queue)
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect()
}

/// Declares durable queue `queue`, puts the channel in confirm mode and
/// publishes `prefix0`..`prefix{n-1}` with confirms.
pub async fn confirmed_queue(ch: &Channel, queue: &str, prefix: &str, n: usize) {
    durable_queue(ch, queue).await;
    confirm(ch).await;
    publish_confirmed(ch, "", queue, &bodies(prefix, n)).await;
}

/// The next message of `queue` through `basic.get`, left unacknowledged.
pub async fn get_held(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    ch.basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("a message to get")
}
