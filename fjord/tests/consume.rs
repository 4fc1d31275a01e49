//! Where `fjord consume` starts: `--offset` checked against each
//! partition's log.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;

use common::Server;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
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
