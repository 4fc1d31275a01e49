//! Durability of the whole binary: produce → kill -9 → restart → consume.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, Write};
use std::process::Stdio;

use common::Server;

#[test]
fn a_hundred_thousand_lines_survive_kill_9_and_restart_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    server.ok(&["topic", "create", "lines", "--partitions", "1"]);
    let lines: Vec<String> = (0..100_000)
        .map(|i| format!("line {i} {}", "é∂ƒ-".repeat(i % 7)))
        .collect();
    let input = lines.join("\n") + "\n";
    let summary = server.ok_with_input(&["produce", "lines", "--output", "json"], input.as_bytes());
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(summary["acknowledged"], 100_000, "{summary}");
    server.kill9();

    let server = Server::start(&data);
    let out = server.consumed("lines");
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), lines.len());
    assert!(
        got.iter().zip(&lines).all(|(a, b)| a == b),
        "lines differ after restart"
    );
}

#[test]
fn everything_acknowledged_before_a_kill_9_mid_produce_is_there_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    server.ok(&["topic", "create", "stream", "--partitions", "1"]);
    let produce = [
        "produce",
        "stream",
        "--output",
        "json",
        "--batch-size",
        "100",
    ];
    let mut producer = server.spawn_cli(&produce, Stdio::null());
    let mut stdin = producer.stdin.take().unwrap();
    // Feed lines until the server has acknowledged some, then kill it while
    // the producer is still writing.
    let mut i = 0u64;
    loop {
        for _ in 0..1000 {
            writeln!(stdin, "record-{i:09}").unwrap();
            i += 1;
        }
        stdin.flush().unwrap();
        let out = server.ok(&["topic", "describe", "stream", "--output", "json"]);
        let d: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        if d["partitions"][0]["high_watermark"].as_i64().unwrap() > 5_000 {
            break;
        }
        assert!(i < 5_000_000, "nothing was acknowledged");
    }
    server.kill9();
    // The producer notices, reports what was acknowledged and fails.
    let mut more = 0;
    while writeln!(stdin, "record-{i:09}").is_ok() && more < 1_000_000 {
        i += 1;
        more += 1;
    }
    drop(stdin);
    let out = producer.wait_with_output().unwrap();
    assert!(!out.status.success());
    let summary: serde_json::Value =
        serde_json::from_slice(out.stdout.lines().next().unwrap().unwrap().as_bytes()).unwrap();
    let acknowledged = summary["acknowledged"].as_u64().unwrap();
    assert!(
        acknowledged > 0 && summary["error"].is_string(),
        "{summary}"
    );

    let server = Server::start(&data);
    let out = server.consumed("stream");
    let got: Vec<&str> = out.lines().collect();
    assert!(
        got.len() as u64 >= acknowledged,
        "{} stored, {acknowledged} acknowledged",
        got.len()
    );
    for (n, line) in got.iter().enumerate() {
        assert_eq!(
            *line,
            format!("record-{n:09}"),
            "the log is a prefix of what was sent"
        );
    }
}
