//! Where `fjord consume` starts: `--offset` checked against each
//! partition's log, and a group's committed offsets against
//! `--from-beginning` (Kafka's `auto.offset.reset`), each said on stderr.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::Server;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The log start of partition 0 of `topic`.
fn log_start(server: &Server, topic: &str) -> i64 {
    let d = server.ok(&["topic", "describe", topic, "--output", "json"]);
    let d: serde_json::Value = serde_json::from_str(d.trim()).unwrap();
    d["partitions"][0]["log_start_offset"].as_i64().unwrap()
}

/// The log start of partition 0 of `topic` once retention has moved it
/// and left it alone for a while (it checks every 50 ms here).
fn settled_log_start(server: &Server, topic: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = (log_start(server, topic), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = log_start(server, topic);
        if now != seen.0 {
            seen = (now, Instant::now());
        } else if now > 0 && seen.1.elapsed() > Duration::from_millis(500) {
            return now;
        }
        assert!(Instant::now() < deadline, "retention did not settle");
    }
}

#[test]
fn an_offset_past_a_partitions_end_is_an_error_naming_the_partition_with_or_without_follow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), common::GATEWAYS_OFF);
    server.ok(&["topic", "create", "short", "--partitions", "2"]);
    server.ok_with_input(&["produce", "short", "--partition", "0"], b"a\nb\nc\n");
    server.ok_with_input(&["produce", "short", "--partition", "1"], b"d\n");

    let past =
        "error: partition 0: offset 5 is past the end of the partition (log start 0, end 3)\n";
    for follow in [false, true] {
        let mut args = vec!["consume", "short", "--partition", "0", "--offset", "5"];
        if follow {
            args.push("--follow");
        }
        let out = server.cli(&args);
        assert!(!out.status.success(), "{args:?} must fail");
        assert_eq!(stderr(&out), past, "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
    }

    // Without --partition the offset applies to every partition: the one
    // it is past is named, and nothing is read from the other either.
    let out = server.cli(&["consume", "short", "--offset", "2"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "error: partition 1: offset 2 is past the end of the partition (log start 0, end 1)\n"
    );
    assert_eq!(stdout(&out), "");

    // An offset below the log start is refused alike.
    let out = server.cli(&["consume", "short", "--partition", "1", "--offset=-1"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "error: partition 1: offset -1 is below the log start (log start 0, end 1)\n"
    );

    // The end itself is where the next record goes: nothing to print yet.
    let at_end = ["consume", "short", "--partition", "0", "--offset", "3"];
    assert_eq!(server.ok(&at_end), "");
    let from_one = ["consume", "short", "--partition", "0", "--offset", "1"];
    assert_eq!(server.ok(&from_one), "b\nc\n");
}

#[test]
fn a_group_resumes_from_its_commits_whatever_from_beginning_says_and_tells_where_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), common::GATEWAYS_OFF);
    server.ok(&["topic", "create", "jobs", "--partitions", "2"]);
    server.ok_with_input(&["produce", "jobs", "--partition", "0"], b"a\nb\n");
    server.ok_with_input(&["produce", "jobs", "--partition", "1"], b"c\n");

    let group = ["consume", "jobs", "--group", "g", "--from-beginning"];
    let first = server.cli(&group);
    assert!(first.status.success(), "{}", stderr(&first));
    let mut read: Vec<String> = stdout(&first).lines().map(str::to_string).collect();
    read.sort();
    assert_eq!(read, ["a", "b", "c"]);
    let told = stderr(&first);
    for line in [
        "partition 0: no committed offset, starting at earliest (0)\n",
        "partition 1: no committed offset, starting at earliest (0)\n",
    ] {
        assert!(told.contains(line), "{told}");
    }

    // --from-beginning again: the committed offsets win.
    server.ok_with_input(&["produce", "jobs", "--partition", "1"], b"d\n");
    let again = server.cli(&group);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), "d\n");
    let told = stderr(&again);
    for line in [
        "partition 0: committed offset 2\n",
        "partition 1: committed offset 1\n",
    ] {
        assert!(told.contains(line), "{told}");
    }
    assert!(!told.contains("no committed offset"), "{told}");

    // A new group without --from-beginning starts at the latest offsets.
    let fresh = server.cli(&["consume", "jobs", "--group", "h"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    assert_eq!(stdout(&fresh), "");
    let told = stderr(&fresh);
    for line in [
        "partition 0: no committed offset, starting at latest (2)\n",
        "partition 1: no committed offset, starting at latest (2)\n",
    ] {
        assert!(told.contains(line), "{told}");
    }
}

#[test]
fn after_retention_an_old_offset_is_refused_and_a_group_behind_it_restarts_as_told() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        common::GATEWAYS_OFF,
        &["--retention-check-interval-ms", "50"],
    ]
    .concat();
    let server = Server::start_with(&dir.path().join("data"), &flags);
    let small = ["segment.bytes=2048", "retention.bytes=4096"];
    server.ok(&[
        "topic", "create", "old", "--config", small[0], "--config", small[1],
    ]);
    server.ok_with_input(&["produce", "old"], b"r0\nr1\nr2\nr3\nr4\n");
    let group = ["consume", "old", "--group", "slow", "--from-beginning"];
    assert_eq!(server.ok(&group).lines().count(), 5);

    // Enough small batches for retention to delete the first segments.
    let lines: String = (0..200).map(|i| format!("{i:0>100}\n")).collect();
    server.ok_with_input(&["produce", "old", "--batch-size", "10"], lines.as_bytes());
    let start = settled_log_start(&server, "old");
    assert!(start > 5, "retention kept offset 5: log start {start}");

    let out = server.cli(&["consume", "old", "--partition", "0", "--offset", "0"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        format!(
            "error: partition 0: offset 0 is below the log start (log start {start}, end 205): the records below it are gone (retention); --from-beginning starts at the log start\n"
        )
    );

    // The group's commit (5) is no longer in the log: it starts at the
    // earliest offset, as --from-beginning asks, and says so.
    let behind = server.cli(&group);
    assert!(behind.status.success(), "{}", stderr(&behind));
    let told = stderr(&behind);
    assert!(
        told.contains(&format!(
            "partition 0: committed offset 5 is outside the log (log start {start}, end 205), starting at earliest ({start})\n"
        )),
        "{told}"
    );
    let read = stdout(&behind);
    assert_eq!(read.lines().count() as i64, 205 - start, "{told}");
    assert_eq!(read.lines().last(), Some(format!("{:0>100}", 199).as_str()));
}
