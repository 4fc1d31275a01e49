//! AMQP clients (lapin) for the gateway tests: connect, declare, publish
//! with confirms, and read queues with bounded waits.

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use super::Server;

/// The failure bound of every wait.
pub const WAIT: Duration = Duration::from_secs(15);

/// A connection to the server's AMQP listener as guest, vhost `/`.
pub async fn connect(server: &Server) -> Connection {
    let uri = format!("amqp://guest:guest@{}/%2f", server.amqp);
    tokio::time::timeout(
        WAIT,
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("connect in time")
    .unwrap()
}

/// A connection to `addr` (a cluster node's AMQP listener), tried again
/// while the cluster elects the node that runs the gateway (bounded).
#[allow(dead_code)]
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
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable,
            ..QueueDeclareOptions::default()
        },
        arguments,
    )
    .await
    .unwrap();
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
        out.push(String::from_utf8(m.delivery.data.clone()).unwrap());
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
#[allow(dead_code)]
pub async fn durable_queue(ch: &Channel, name: &str) {
    queue(ch, name, true, FieldTable::default()).await;
}

/// Publishes persistent messages with confirms (the channel is in confirm
/// mode); each must be acked.
#[allow(dead_code)]
pub async fn publish_confirmed(ch: &Channel, exchange: &str, key: &str, bodies: &[String]) {
    for b in bodies {
        let props = BasicProperties::default().with_delivery_mode(2);
        assert!(publish(ch, exchange, key, b, props).await, "confirmed: {b}");
    }
}

/// `prefix0`, `prefix1`, ...
#[allow(dead_code)]
pub fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Every message of `queue` through `basic.get`, acknowledged one by one:
/// (body, redelivered).
#[allow(dead_code)]
pub async fn take_all(ch: &Channel, queue: &str) -> Vec<(String, bool)> {
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        got.push((
            String::from_utf8(m.delivery.data.clone()).unwrap(),
            m.delivery.redelivered,
        ));
        m.delivery
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .unwrap();
    }
    got
}

/// Declares durable queue `queue`, puts the channel in confirm mode and
/// publishes `prefix0`..`prefix{n-1}` with confirms.
#[allow(dead_code)]
pub async fn confirmed_queue(ch: &Channel, queue: &str, prefix: &str, n: usize) {
    durable_queue(ch, queue).await;
    ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_confirmed(ch, "", queue, &bodies(prefix, n)).await;
}

/// The next message of `queue` through `basic.get`, left unacknowledged.
#[allow(dead_code)]
pub async fn get_held(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    ch.basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("a message to get")
}
