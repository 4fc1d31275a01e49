//! The CLI and the server as a user meets them.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{BIN, Server};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap()
}

/// The total lag of `group` over its partitions, as `group describe` says.
fn lag(server: &Server, group: &str) -> i64 {
    let g = json(&server.ok(&["group", "describe", group, "--output", "json"]));
    g["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["lag"].as_i64().unwrap())
        .sum()
}

#[test]
fn topic_commands_produce_and_consume_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    // Counts topics: no gateway topics.
    let server = Server::start_with(&dir.path().join("data"), common::GATEWAYS_OFF);
    let created = server.ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--config",
        "retention.ms=3600000",
    ]);
    assert!(
        created.contains("created topic orders with 3 partitions"),
        "{created}"
    );
    let list = server.ok(&["topic", "list"]);
    assert!(
        list.starts_with("TOPIC") && list.contains("orders"),
        "{list}"
    );
    assert!(!list.contains("__consumer_offsets"));
    // The consumer offsets' topic is made on a group's first use.
    let all = json(&server.ok(&["topic", "list", "--internal", "--output", "json"]));
    assert_eq!(all.as_array().unwrap().len(), 1);

    let input = "alice,1\nbob,2\ncarol,3\nalice,4\n";
    server.ok_with_input(
        &[
            "produce",
            "orders",
            "--key-separator",
            ",",
            "--compression",
            "zstd",
        ],
        input.as_bytes(),
    );
    let out = server.ok(&[
        "consume",
        "orders",
        "--from-beginning",
        "--print-key",
        "--output",
        "json",
    ]);
    let records: Vec<serde_json::Value> = out.lines().map(json).collect();
    assert_eq!(records.len(), 4);
    // The same key always lands on the same partition, in order.
    let alice: Vec<_> = records.iter().filter(|r| r["key"] == "alice").collect();
    assert_eq!(alice.len(), 2);
    assert_eq!(alice[0]["partition"], alice[1]["partition"]);
    assert_eq!(
        (alice[0]["value"].as_str(), alice[1]["value"].as_str()),
        (Some("1"), Some("4"))
    );

    let d = json(&server.ok(&["topic", "describe", "orders", "--output", "json"]));
    let ends: i64 = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .sum();
    assert_eq!(ends, 4);
    assert_eq!(d["configs"]["retention.ms"], "3600000");
    let table = server.ok(&["topic", "describe", "orders"]);
    assert!(table.contains("HIGH-WATERMARK"), "{table}");

    // --partition and --offset; without --from-beginning a consume starts at the end.
    let p = alice[0]["partition"].as_u64().unwrap().to_string();
    let out = server.ok(&[
        "consume",
        "orders",
        "--partition",
        &p,
        "--offset",
        "1",
        "--print-offset",
    ]);
    assert!(out.lines().any(|l| l.ends_with("\t4")), "{out}");
    assert_eq!(server.ok(&["consume", "orders"]), "");

    // --timestamp: only records at or after it.
    let mark = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 1;
    std::thread::sleep(std::time::Duration::from_millis(5));
    server.ok_with_input(&["produce", "orders", "--partition", "0"], b"late\n");
    let out = server.ok(&[
        "consume",
        "orders",
        "--partition",
        "0",
        "--timestamp",
        &mark.to_string(),
    ]);
    assert_eq!(out, "late\n");

    // A group reads everything once, then only what is new.
    let first = server.ok(&["consume", "orders", "--group", "g1", "--from-beginning"]);
    assert_eq!(first.lines().count(), 5);
    assert_eq!(server.ok(&["consume", "orders", "--group", "g1"]), "");
    let internal = server.ok(&["topic", "list", "--internal"]);
    assert!(internal.contains("__consumer_offsets"), "{internal}");
    assert!(!server.ok(&["topic", "list"]).contains("__consumer_offsets"));
    server.ok_with_input(&["produce", "orders"], b"new-1\nnew-2\n");
    let next = server.ok(&["consume", "orders", "--group", "g1"]);
    let mut next: Vec<&str> = next.lines().collect();
    next.sort();
    assert_eq!(next, vec!["new-1", "new-2"]);
    let groups = server.ok(&["group", "list"]);
    assert!(groups.contains("g1"), "{groups}");
    assert_eq!(lag(&server, "g1"), 0);
    server.ok_with_input(&["produce", "orders", "--partition", "1"], b"unread\n");
    assert_eq!(lag(&server, "g1"), 1);
    let max = server.ok(&[
        "consume",
        "orders",
        "--from-beginning",
        "--max-messages",
        "2",
    ]);
    assert_eq!(max.lines().count(), 2);

    server.ok(&["topic", "delete", "orders"]);
    let out = server.cli(&["topic", "describe", "orders"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: unknown topic orders"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn errors_are_clear_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    for (args, words) in [
        (vec!["topic", "create", "bad name"], "only ASCII"),
        (
            vec!["topic", "create", "x", "--replication-factor", "3"],
            "single-node",
        ),
        (
            vec!["topic", "create", "x", "--config", "retention.ms"],
            "not key=value",
        ),
        (vec!["consume", "missing"], "unknown topic missing"),
        (vec!["produce", "missing"], "unknown topic missing"),
        (vec!["group", "describe", "nobody"], "unknown group"),
    ] {
        let out = server.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(words), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let out = Command::new(BIN)
        .args(["topic", "list", "--server", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach a fjord node"));
}

#[test]
fn http_endpoints_report_health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    // Counts topics: no gateway topics.
    let server = Server::start_with(&dir.path().join("data"), common::GATEWAYS_OFF);
    assert_eq!(server.http_get("/health").0, 200);
    assert_eq!(server.http_get("/ready"), (200, "ready\n".to_string()));
    let (code, before) = server.http_get("/metrics");
    assert_eq!(code, 200);
    for name in [
        "fjord_produce_records_total 0",
        "# TYPE fjord_fetch_requests_total counter",
        "fjord_topics 0",
        "process_resident_memory_bytes",
    ] {
        assert!(before.contains(name), "missing {name}:\n{before}");
    }
    server.ok(&["topic", "create", "m"]);
    server.ok_with_input(&["produce", "m"], b"a\nb\nc\n");
    let (_, after) = server.http_get("/metrics");
    assert!(after.contains("fjord_produce_records_total 3"), "{after}");
    assert!(after.contains("fjord_topics 1"), "{after}");
    assert_eq!(server.http_get("/nope").0, 404);
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_sees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--flush-policy", "os"]);
    server.ok(&["topic", "create", "t"]);
    server.ok_with_input(&["produce", "t"], b"one\ntwo\n");
    assert_eq!(server.terminate(), Some(0));
    assert!(!data.join("listeners.json").exists());
    let server = Server::start(&data);
    assert_eq!(server.consumed("t"), "one\ntwo\n");
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fjord.toml");
    std::fs::write(&config, "data_dri = \"typo\"\n").unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for (args, words) in [
        (
            vec![
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--data-dir",
                data,
            ],
            "unknown field `data_dri`",
        ),
        (
            vec!["serve", "--grpc-listen", "not-an-address"],
            "invalid socket address",
        ),
        (
            vec!["serve", "--data-dir", data, "--peers", "2=127.0.0.1:9401"],
            "does not list this node",
        ),
        (
            vec!["serve", "--data-dir", data, "--peers", "1=nohost"],
            "needs a port",
        ),
        (
            vec![
                "serve",
                "--data-dir",
                data,
                "--bootstrap",
                "--join",
                "127.0.0.1:1",
            ],
            "only one of",
        ),
        (
            vec!["serve", "--data-dir", data, "--flush-policy", "sometimes"],
            "flush policy",
        ),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
    // The same data directory cannot be served twice.
    let first = Server::start(&dir.path().join("shared"));
    let out = Command::new(BIN)
        .args([
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&first.data)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another fjord process"));
}

#[test]
fn garbage_segment_and_index_files_are_reported_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    server.ok(&["topic", "create", "g"]);
    server.ok_with_input(&["produce", "g"], b"kept-1\nkept-2\n");
    server.kill9();
    let part = data.join("g-0");
    let log = part.join("00000000000000000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"\x00\x00\x00\x00\x00\x00\x00\x09torn tail garbage");
    std::fs::write(&log, bytes).unwrap();
    std::fs::write(part.join("00000000000000000000.index"), b"garbage index").unwrap();
    std::fs::write(part.join("00000000000000000000.timeindex"), b"xx").unwrap();
    std::fs::write(part.join("stray-file.bin"), b"?").unwrap();
    let server = Server::start(&data);
    assert_eq!(server.consumed("g"), "kept-1\nkept-2\n");
    let logs = server.logs();
    assert!(logs.contains("00000000000000000000.log"), "{logs}");
    assert!(logs.contains("stray-file.bin"), "{logs}");
    server.ok_with_input(&["produce", "g"], b"after\n");
    assert_eq!(server.consumed("g"), "kept-1\nkept-2\nafter\n");
}

#[test]
fn follow_waits_for_new_records_and_produce_options_work() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    server.ok(&["topic", "create", "live", "--partitions", "2"]);
    // From the beginning: whenever the follower gets going, it sees every
    // record (starting at the end would race the producer below).
    let follow = [
        "consume",
        "live",
        "--from-beginning",
        "--follow",
        "--print-key",
    ];
    let mut follower = server.spawn_cli(&follow, Stdio::null());
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    // Records produced after the follower started reach it; it keeps running.
    server.ok_with_input(
        &["produce", "live", "--key", "k1", "--compression", "lz4"],
        b"first\nsecond\n",
    );
    assert_eq!(lines.next().unwrap().unwrap(), "k1\tfirst");
    assert_eq!(lines.next().unwrap().unwrap(), "k1\tsecond");
    server.ok_with_input(
        &["produce", "live", "--key", "k1", "--acks", "0"],
        b"third\n",
    );
    assert_eq!(lines.next().unwrap().unwrap(), "k1\tthird");
    assert!(
        follower.try_wait().unwrap().is_none(),
        "--follow must keep running"
    );
    follower.kill().unwrap();
    follower.wait().unwrap();
    // A fixed key sends every record to one partition.
    let d = json(&server.ok(&["topic", "describe", "live", "--output", "json"]));
    let ends: Vec<i64> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .collect();
    assert!(ends.contains(&3) && ends.contains(&0), "{ends:?}");
}
