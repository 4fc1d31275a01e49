//! `fjord amqp` against a real `fjord serve`, with the `lapin` client on
//! the other side: topology declared by the CLI routes what clients
//! publish, queue counts follow publishing and consuming, refusals print
//! the AMQP reply text, and vhosts survive a restart (deleted ones stay
//! deleted).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::amqp::{
    WAIT, confirming, connect_vhost, consume, delivery, prefetching, publish_persistent,
};
use common::{Server, fails_with, named, names};
use futures::StreamExt;
use lapin::options::BasicAckOptions;
use serde_json::{Value, json};

fn start(data: &std::path::Path) -> Server {
    Server::start_with(data, &[])
}

/// Runs `fjord ARGS --server <node>` without blocking the runtime (lapin's
/// connections run on it).
async fn fjord(server: &Server, args: &[&str]) -> Output {
    tokio::process::Command::new(common::BIN)
        .args(args)
        .args(["--server", &server.grpc])
        .env_remove("FJORD_SERVER")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

/// Runs a command that must succeed; returns its stdout.
async fn ok(server: &Server, args: &[&str]) -> String {
    let out = fjord(server, args).await;
    assert!(
        out.status.success(),
        "fjord {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command with `--output json`; returns what it printed.
async fn json_of(server: &Server, args: &[&str]) -> Value {
    let args: Vec<&str> = args.iter().copied().chain(["--output", "json"]).collect();
    serde_json::from_str(&ok(server, &args).await).unwrap()
}

/// Queue `name` of `vhost` as `queue list` shows it, once `settled` holds
/// (counts follow deliveries and acknowledgements asynchronously).
async fn queue_when(
    server: &Server,
    vhost: &str,
    name: &str,
    settled: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = json_of(server, &["amqp", "queue", "list", "--vhost", vhost]).await;
        let queue = named(&list, name).cloned().unwrap_or(Value::Null);
        if settled(&queue) {
            return queue;
        }
        assert!(
            Instant::now() < deadline,
            "queue {name} never settled: {queue}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn counts(ready: u64, unacked: u64, consumers: u64) -> impl Fn(&Value) -> bool {
    move |q| q["ready"] == ready && q["unacked"] == unacked && q["consumers"] == consumers
}

#[tokio::test]
async fn topology_declared_by_the_cli_routes_messages_and_shows_their_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let v = "myvhost";

    let out = ok(&server, &["amqp", "vhost", "declare", v]).await;
    assert_eq!(out, "declared vhost myvhost\n");
    let again = json_of(&server, &["amqp", "vhost", "declare", v]).await;
    assert_eq!(again, json!({"declared": v, "created": false}));
    let vhosts = json_of(&server, &["amqp", "vhost", "list"]).await;
    assert_eq!(names(&vhosts), ["/", v]);

    let declare = [
        "amqp",
        "exchange",
        "declare",
        "orders",
        "--type",
        "topic",
        "--durable",
        "--vhost",
        v,
    ];
    ok(&server, &declare).await;
    let exchanges = json_of(&server, &["amqp", "exchange", "list", "--vhost", v]).await;
    let orders = named(&exchanges, "orders").unwrap();
    assert_eq!(orders["type"], "topic");
    assert_eq!(orders["durable"], true);
    for predeclared in ["", "amq.direct", "amq.topic", "amq.fanout", "amq.headers"] {
        assert!(names(&exchanges).contains(&predeclared), "{exchanges}");
    }
    // The table shows the default exchange by RabbitMQ's name for it.
    let table = ok(&server, &["amqp", "exchange", "list", "--vhost", v]).await;
    assert!(table.starts_with("EXCHANGE"), "{table}");
    assert!(table.contains("(AMQP default)"), "{table}");

    let declare = [
        "amqp",
        "queue",
        "declare",
        "eu",
        "--durable",
        "--arg",
        "x-max-length=100",
        "--arg",
        "x-dead-letter-exchange=dlx",
        "--vhost",
        v,
    ];
    let declared = json_of(&server, &declare).await;
    assert_eq!(
        declared,
        json!({"declared": "eu", "messages": 0, "consumers": 0})
    );
    let bind = [
        "amqp",
        "binding",
        "declare",
        "--source",
        "orders",
        "--queue",
        "eu",
        "--routing-key",
        "eu.#",
        "--vhost",
        v,
    ];
    let out = ok(&server, &bind).await;
    assert_eq!(out, "bound queue eu to exchange orders with key \"eu.#\"\n");
    let bindings = json_of(&server, &["amqp", "binding", "list", "--vhost", v]).await;
    assert_eq!(
        bindings,
        json!([{"source": "orders", "destination_kind": "queue", "destination": "eu",
            "routing_key": "eu.#", "arguments": {}}])
    );
    // Nothing of it is in "/".
    let default = json_of(&server, &["amqp", "queue", "list"]).await;
    assert_eq!(default, json!([]));

    // A client of the vhost publishes through the exchange.
    let conn = connect_vhost(&server, v).await.unwrap();
    let ch = confirming(&conn).await;
    for i in 0..3 {
        publish_persistent(&ch, "orders", "eu.de", &format!("o{i}")).await;
    }
    publish_persistent(&ch, "orders", "us.ny", "unrouted").await;
    let queue = queue_when(&server, v, "eu", counts(3, 0, 0)).await;
    assert_eq!(queue["durable"], true);
    assert_eq!(queue["exclusive"], false);
    assert_eq!(
        queue["arguments"],
        json!({"x-max-length": "100", "x-dead-letter-exchange": "dlx"})
    );
    let table = ok(&server, &["amqp", "queue", "list", "--vhost", v]).await;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["QUEUE", "DURABLE", "READY", "UNACKED", "CONSUMERS"],
            vec!["eu", "yes", "3", "0", "0"]
        ]
    );

    // A consumer takes them without acknowledging, then acknowledges.
    let worker = prefetching(&conn, 10).await;
    let mut consumer = consume(&worker, "eu", "w").await;
    let mut deliveries = Vec::new();
    for _ in 0..3 {
        deliveries.push(delivery(&mut consumer).await);
    }
    queue_when(&server, v, "eu", counts(0, 3, 1)).await;
    for d in deliveries {
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    queue_when(&server, v, "eu", counts(0, 0, 1)).await;
    conn.close(200, "bye".into()).await.unwrap();
    queue_when(&server, v, "eu", counts(0, 0, 0)).await;

    // Deleting: the binding, the queue, the exchange.
    let unbind: Vec<&str> = bind
        .iter()
        .map(|a| if *a == "declare" { "delete" } else { a })
        .collect();
    let out = ok(&server, &unbind).await;
    assert!(out.starts_with("unbound queue eu"), "{out}");
    let bindings = json_of(&server, &["amqp", "binding", "list", "--vhost", v]).await;
    assert_eq!(bindings, json!([]));
    let deleted = json_of(&server, &["amqp", "queue", "delete", "eu", "--vhost", v]).await;
    assert_eq!(deleted, json!({"deleted": "eu", "messages": 0}));
    let out = ok(
        &server,
        &["amqp", "exchange", "delete", "orders", "--vhost", v],
    )
    .await;
    assert_eq!(out, "deleted exchange orders\n");
    let queues = json_of(&server, &["amqp", "queue", "list", "--vhost", v]).await;
    assert_eq!(queues, json!([]));
    let exchanges = json_of(&server, &["amqp", "exchange", "list", "--vhost", v]).await;
    assert!(!names(&exchanges).contains(&"orders"), "{exchanges}");
}

#[tokio::test]
async fn refusals_print_the_amqp_reply_text_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    ok(&server, &["amqp", "queue", "declare", "full", "--durable"]).await;
    let conn = connect_vhost(&server, "/").await.unwrap();
    let ch = confirming(&conn).await;
    publish_persistent(&ch, "", "full", "m").await;
    queue_when(&server, "/", "full", counts(1, 0, 0)).await;

    let out = fjord(&server, &["amqp", "queue", "delete", "full", "--if-empty"]).await;
    fails_with(
        &out,
        "PRECONDITION_FAILED - queue 'full' in vhost '/' is not empty",
    );
    queue_when(&server, "/", "full", counts(1, 0, 0)).await;

    let out = fjord(
        &server,
        &["amqp", "exchange", "declare", "x", "--type", "nonsense"],
    )
    .await;
    fails_with(&out, "unknown exchange type 'nonsense'");
    let out = fjord(&server, &["amqp", "exchange", "delete", "amq.direct"]).await;
    fails_with(&out, "ACCESS_REFUSED");
    // Redeclaring with other flags.
    let out = fjord(&server, &["amqp", "queue", "declare", "full"]).await;
    fails_with(&out, "PRECONDITION_FAILED - inequivalent arg 'durable'");
    let out = fjord(
        &server,
        &[
            "amqp",
            "queue",
            "declare",
            "ttl",
            "--arg",
            "x-message-ttl=soon",
        ],
    )
    .await;
    fails_with(&out, "PRECONDITION_FAILED - invalid arg 'x-message-ttl'");
    let out = fjord(
        &server,
        &[
            "amqp",
            "binding",
            "declare",
            "--source",
            "amq.direct",
            "--queue",
            "none",
        ],
    )
    .await;
    fails_with(&out, "NOT_FOUND - no queue 'none' in vhost '/'");
    let out = fjord(&server, &["amqp", "queue", "list", "--vhost", "nowhere"]).await;
    fails_with(&out, "vhost 'nowhere' not found");
    let out = fjord(&server, &["amqp", "vhost", "delete", "nowhere"]).await;
    fails_with(&out, "vhost 'nowhere' not found");
    // The command line itself: a destination is required, KEY=VALUE too.
    let out = fjord(&server, &["amqp", "binding", "declare", "--source", "x"]).await;
    fails_with(&out, "--queue");
    let out = fjord(&server, &["amqp", "queue", "declare", "q", "--arg", "x"]).await;
    fails_with(&out, "KEY=VALUE");

    // Without the if-empty condition the queue goes, with its message.
    let deleted = json_of(&server, &["amqp", "queue", "delete", "full"]).await;
    assert_eq!(deleted, json!({"deleted": "full", "messages": 1}));
}

#[tokio::test]
async fn vhosts_survive_a_restart_and_deleted_ones_stay_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data);
    for v in ["keep", "gone"] {
        ok(&server, &["amqp", "vhost", "declare", v]).await;
        let steps: [&[&str]; 3] = [
            &[
                "amqp",
                "exchange",
                "declare",
                "ev",
                "--type",
                "direct",
                "--durable",
            ],
            &["amqp", "queue", "declare", "q", "--durable"],
            &[
                "amqp",
                "binding",
                "declare",
                "--source",
                "ev",
                "--queue",
                "q",
                "--routing-key",
                "k",
            ],
        ];
        for step in steps {
            let args: Vec<&str> = step.iter().copied().chain(["--vhost", v]).collect();
            ok(&server, &args).await;
        }
        let conn = connect_vhost(&server, v).await.unwrap();
        let ch = confirming(&conn).await;
        publish_persistent(&ch, "ev", "k", v).await;
        conn.close(200, "bye".into()).await.unwrap();
        queue_when(&server, v, "q", counts(1, 0, 0)).await;
    }
    // A connection open on the vhost is closed with it (320).
    let held = connect_vhost(&server, "gone").await.unwrap();
    let mut events = held.events_listener();
    let deleted = json_of(&server, &["amqp", "vhost", "delete", "gone"]).await;
    assert_eq!(deleted, json!({"deleted": "gone", "queues_deleted": 1}));
    let why = tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => return e.to_string(),
                Some(_) => {}
                None => return String::from("no error event"),
            }
        }
    })
    .await
    .expect("the deleted vhost's connection is closed");
    assert!(why.contains("vhost 'gone' is deleted"), "{why}");
    assert!(!held.status().connected());
    assert!(connect_vhost(&server, "gone").await.is_err());
    assert_eq!(
        names(&json_of(&server, &["amqp", "vhost", "list"]).await),
        ["/", "keep"]
    );

    assert_eq!(server.terminate(), Some(0));
    let server = start(&data);
    let vhosts = json_of(&server, &["amqp", "vhost", "list"]).await;
    assert_eq!(
        vhosts,
        json!([{"name": "/", "exchanges": 6, "queues": 0},
            {"name": "keep", "exchanges": 7, "queues": 1}])
    );
    queue_when(&server, "keep", "q", counts(1, 0, 0)).await;
    let bindings = json_of(&server, &["amqp", "binding", "list", "--vhost", "keep"]).await;
    assert_eq!(bindings.as_array().unwrap().len(), 1, "{bindings}");
    let conn = connect_vhost(&server, "keep").await.unwrap();
    let ch = confirming(&conn).await;
    publish_persistent(&ch, "ev", "k", "after").await;
    queue_when(&server, "keep", "q", counts(2, 0, 0)).await;
    assert!(connect_vhost(&server, "gone").await.is_err());

    // A vhost of the deleted one's name starts empty: no exchange,
    // queue, binding or message of the old one comes back.
    ok(&server, &["amqp", "vhost", "declare", "gone"]).await;
    let exchanges = json_of(&server, &["amqp", "exchange", "list", "--vhost", "gone"]).await;
    assert!(!names(&exchanges).contains(&"ev"), "{exchanges}");
    let declare = [
        "amqp",
        "queue",
        "declare",
        "q",
        "--durable",
        "--vhost",
        "gone",
    ];
    let declared = json_of(&server, &declare).await;
    assert_eq!(declared["messages"], 0);
    let bindings = json_of(&server, &["amqp", "binding", "list", "--vhost", "gone"]).await;
    assert_eq!(bindings, json!([]));
}

#[tokio::test]
async fn without_the_gateway_the_commands_say_it_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--amqp-listen", "off", "--amqp-tls-listen", "off"],
    );
    let out = fjord(&server, &["amqp", "vhost", "list"]).await;
    fails_with(&out, "the AMQP gateway is off on this node");
}
