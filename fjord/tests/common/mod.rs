//! Runs the real `fjord` binary: servers on ephemeral ports (launched by
//! `fjord-testkit`) and the CLI and HTTP requests against them.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod amqp;
pub mod amqp_raw;
pub mod cluster;
pub mod mqtt;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use fjord_testkit::{Gateways, Node};

pub const BIN: &str = env!("CARGO_BIN_EXE_fjord");

/// Flags for a server without the gateways (tests that count topics).
pub const GATEWAYS_OFF: &[&str] = fjord_testkit::GATEWAYS_OFF;

/// A node of the kit with its addresses as fields (empty when a listener
/// is off), and CLI and HTTP helpers that panic on failure.
pub struct Server {
    node: Node,
    pub data: PathBuf,
    pub grpc: String,
    pub http: String,
    /// MQTT listeners (empty when off).
    pub mqtt: String,
    pub mqtt_tls: String,
    pub mqtt_ws: String,
    /// The AMQP listeners (empty when off).
    pub amqp: String,
    pub amqp_tls: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `fjord serve` on `data` with every listener on a free port,
    /// logging to `<data>.log`, and waits (bounded) for listeners.json.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// As [`Server::start`], plus `extra` flags; a listener flag among them
    /// (`--grpc-listen`, `--mqtt-listen off`, …) replaces the free port.
    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        let node = Node::builder(BIN)
            .data_dir(data)
            .log(data.with_extension("log"))
            .gateways(Gateways::ALL)
            .flags(extra.iter().copied())
            .start()
            .unwrap_or_else(|e| panic!("{e:#}"));
        Server::from(node)
    }

    pub fn kill9(mut self) {
        self.node.kill9();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.node.terminate().unwrap()
    }

    pub fn logs(&self) -> String {
        self.node.log()
    }

    /// The last `lines` lines of the server's log (for a failure message).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.logs();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The kit's node behind this server.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Runs a client subcommand against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_input(args, b"")
    }

    pub fn cli_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self.spawn_cli(args, Stdio::piped());
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Starts a client subcommand against this server, its stdin and stdout
    /// piped.
    pub fn spawn_cli(&self, args: &[&str], stderr: Stdio) -> Child {
        Command::new(BIN)
            .args(args)
            .args(["--server", &self.grpc])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// What `fjord consume TOPIC --from-beginning` prints: every record.
    pub fn consumed(&self, topic: &str) -> String {
        self.ok(&["consume", topic, "--from-beginning"])
    }

    /// Runs a client subcommand that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_input(args, b"")
    }

    pub fn ok_with_input(&self, args: &[&str], input: &[u8]) -> String {
        let out = self.cli_with_input(args, input);
        assert!(
            out.status.success(),
            "fjord {args:?} failed: {}\nthe server's log ends:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(60)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(&self.http).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let code = response.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

/// Polls `done` every 20 ms until it holds; panics with `what` after 15 s.
pub async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The command failed with a message containing `words`.
pub fn fails_with(out: &Output, words: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(err.contains(words), "{err}");
}

/// The entry of a JSON list whose `name` field is `name`.
pub fn named<'a>(list: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    list.as_array().unwrap().iter().find(|v| v["name"] == name)
}

/// The `name` field of every entry of a JSON list.
pub fn names(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect()
}

impl From<Node> for Server {
    fn from(node: Node) -> Server {
        let l = node.listeners().clone();
        let addr = |a: Option<String>| a.unwrap_or_default();
        Server {
            data: node.data_dir().to_path_buf(),
            grpc: l.grpc,
            http: l.http,
            mqtt: addr(l.mqtt),
            mqtt_tls: addr(l.mqtt_tls),
            mqtt_ws: addr(l.mqtt_ws),
            amqp: addr(l.amqp),
            amqp_tls: addr(l.amqp_tls),
            log: node.log_path().map(Path::to_path_buf).unwrap_or_default(),
            node,
        }
    }
}
