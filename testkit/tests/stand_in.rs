//! The kit's node against a stand-in for `fjord serve`: a shell script that
//! announces its listeners the way the real one does, so the launching,
//! the readiness wait, the signals and the cleanup are checked without a
//! built `fjord` (`fjord/tests/testkit.rs` runs the real binary).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use fjord_testkit::{Gateways, Node, NodeBuilder};

const SCRIPT: &str = r#"#!/bin/sh
# Prints its arguments, announces its listeners (the gRPC address it was
# given, or one made up for port 0) and sleeps until a signal ends it.
data= grpc= prev=
for arg in "$@"; do
    case "$prev" in
        --data-dir) data=$arg ;;
        --grpc-listen) grpc=$arg ;;
    esac
    prev=$arg
done
echo "stand-in $*"
case " $* " in *" --fail "*) echo "refusing to start" >&2; exit 3 ;; esac
case " $* " in *" --never-ready "*) exec sleep 600 ;; esac
[ "$grpc" = 127.0.0.1:0 ] && grpc="127.0.0.1:$$"
printf '{"pid": %s, "node_id": 1, "cluster_id": "", "grpc": "%s", "http": "127.0.0.1:1", "mqtt": "127.0.0.1:2"}\n' \
    $$ "$grpc" > "$data/listeners.json.tmp"
mv "$data/listeners.json.tmp" "$data/listeners.json"
exec sleep 600
"#;

/// The script, written once before any test starts a process (a file open
/// for writing while another thread forks could not be executed).
fn stand_in() -> &'static Path {
    static PATH: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = PATH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjord");
        std::fs::write(&path, SCRIPT).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, path)
    });
    path
}

fn stand_in_node() -> NodeBuilder {
    Node::builder(stand_in())
}

/// The one-letter state of process `pid`, from `/proc`.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The command lines the stand-in printed.
fn starts(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.starts_with("stand-in")).collect()
}

#[test]
fn a_node_is_ready_with_its_own_announcement_and_cleans_up_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let node = stand_in_node().log(&log).start().unwrap();
    let pid = node.pid().unwrap();
    assert_eq!(node.listeners().pid, pid);
    assert_eq!(node.grpc(), format!("127.0.0.1:{pid}"));
    assert_eq!(node.http(), "127.0.0.1:1");
    assert_eq!(node.listeners().mqtt.as_deref(), Some("127.0.0.1:2"));
    assert_eq!(node.listeners().amqp, None);
    assert!(node.rss_bytes().unwrap() > 0);
    let line = starts(&node.log())[0].to_string();
    assert!(
        line.starts_with(
            "stand-in serve --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
             --mqtt-listen off --mqtt-tls-listen off --mqtt-ws-listen off \
             --amqp-listen off --amqp-tls-listen off --data-dir "
        ),
        "{line}"
    );
    let data = node.data_dir().to_path_buf();
    assert!(data.join("listeners.json").is_file());
    drop(node);
    assert!(!data.exists(), "the temporary data directory is removed");
    assert_eq!(state(pid), None, "the process is gone");
    assert!(log.exists(), "a log the caller named stays");
}

#[test]
fn restarts_keep_the_data_and_the_grpc_address_only_when_sticky() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = stand_in_node()
        .data_dir(dir.path().join("a"))
        .start()
        .unwrap();
    std::fs::write(node.data_dir().join("segment"), b"kept").unwrap();
    let first = node.grpc().to_string();
    node.kill9();
    assert!(node.is_down());
    assert_eq!(node.pid(), None);
    node.restart().unwrap();
    assert_ne!(node.grpc(), first, "a new ephemeral port");
    assert_eq!(
        std::fs::read(node.data_dir().join("segment")).unwrap(),
        b"kept"
    );

    let log = dir.path().join("b.log");
    let mut sticky = stand_in_node()
        .data_dir(dir.path().join("b"))
        .log(&log)
        .sticky_grpc()
        .start()
        .unwrap();
    let first = sticky.grpc().to_string();
    let old_pid = sticky.pid().unwrap();
    sticky.restart().unwrap();
    assert_ne!(sticky.pid(), Some(old_pid));
    assert_eq!(sticky.grpc(), first);
    let text = sticky.log();
    let lines = starts(&text);
    assert_eq!(lines.len(), 2, "restarts append to the log: {text}");
    assert!(
        lines[1].contains(&format!("--grpc-listen {first} ")),
        "{text}"
    );
}

#[test]
fn a_flag_of_the_caller_replaces_the_kits_and_gateways_listen_on_port_0() {
    let dir = tempfile::tempdir().unwrap();
    // A free port, chosen by the system and released for the flag.
    let mqtt = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let node = stand_in_node()
        .gateways(Gateways::MQTT)
        .flags(["--mqtt-listen", mqtt.as_str()])
        .flags(vec!["--flush-policy".to_string(), "os".to_string()])
        .log_level("warn")
        .log(dir.path().join("mqtt.log"))
        .start()
        .unwrap();
    let text = node.log();
    let line = starts(&text)[0];
    assert_eq!(line.matches("--mqtt-listen").count(), 1, "{line}");
    assert!(line.contains(&format!("--mqtt-listen {mqtt}")), "{line}");
    assert!(line.contains("--mqtt-tls-listen off"), "{line}");
    assert!(line.contains(" --flush-policy os "), "{line}");

    let all = stand_in_node()
        .gateways(Gateways::ALL)
        .log(dir.path().join("all.log"))
        .start()
        .unwrap();
    let text = all.log();
    assert_eq!(starts(&text)[0].matches("127.0.0.1:0").count(), 7, "{text}");
}

#[test]
fn pause_resume_and_terminate_signal_the_process() {
    let mut node = stand_in_node().start().unwrap();
    let pid = node.pid().unwrap();
    node.pause().unwrap();
    assert!(node.is_paused());
    assert_eq!(state(pid), Some('T'));
    node.resume().unwrap();
    assert_ne!(state(pid), Some('T'));
    node.pause().unwrap();
    // SIGTERM reaches a paused node too; the stand-in dies of it.
    assert_eq!(node.terminate().unwrap(), None);
    assert!(node.is_down());
    assert!(
        node.terminate().is_err(),
        "a down node cannot be terminated"
    );
    assert_eq!(state(pid), None);
}

#[test]
fn a_node_that_exits_during_start_fails_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let err = stand_in_node()
        .data_dir(dir.path().join("data"))
        .log(dir.path().join("data.log"))
        .flags(["--fail"])
        .start()
        .unwrap_err()
        .to_string();
    assert!(err.contains("exited during start"), "{err}");
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
}

#[test]
fn a_stale_announcement_does_not_count_and_the_wait_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("listeners.json"),
        r#"{"pid": 1, "grpc": "127.0.0.1:9", "http": "127.0.0.1:9"}"#,
    )
    .unwrap();
    let err = stand_in_node()
        .data_dir(&data)
        .flags(["--never-ready"])
        .ready_timeout(Duration::from_millis(300))
        .start()
        .unwrap_err()
        .to_string();
    assert!(err.contains("announced no listeners within 300ms"), "{err}");
}

#[test]
fn a_temporary_data_directory_goes_where_asked() {
    let parent = tempfile::tempdir().unwrap();
    let node = stand_in_node()
        .temp_data_in(parent.path().join("disk"))
        .start()
        .unwrap();
    assert!(node.data_dir().starts_with(parent.path().join("disk")));
}
