//! Runs the real `fjord` binary: a server on ephemeral ports and the CLI.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod cluster;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_fjord");

/// Flags for a server without the MQTT gateway (tests that count topics).
pub const MQTT_OFF: &[&str] = &[
    "--mqtt-listen",
    "off",
    "--mqtt-tls-listen",
    "off",
    "--mqtt-ws-listen",
    "off",
];

pub struct Server {
    pub child: Child,
    pub data: PathBuf,
    pub grpc: String,
    pub http: String,
    /// MQTT listeners (empty when off).
    pub mqtt: String,
    pub mqtt_tls: String,
    pub mqtt_ws: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `fjord serve` on `data` and waits (bounded) for listeners.json.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension(format!("log-{}", std::process::id()));
        let log_file = std::fs::File::create(&log).unwrap();
        // A restart may ask for its old gRPC address back.
        let grpc = if extra.contains(&"--grpc-listen") {
            vec![]
        } else {
            vec!["--grpc-listen", "127.0.0.1:0"]
        };
        // MQTT listeners on free ports unless the caller says otherwise.
        let mqtt = if extra.contains(&"--mqtt-listen") {
            vec![]
        } else {
            vec![
                "--mqtt-listen",
                "127.0.0.1:0",
                "--mqtt-tls-listen",
                "127.0.0.1:0",
                "--mqtt-ws-listen",
                "127.0.0.1:0",
            ]
        };
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(grpc)
            .args(mqtt)
            .args(["--http-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(extra)
            .env_remove("FJORD_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let path = data.join("listeners.json");
        let pid = u64::from(child.id());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && v["pid"].as_u64() == Some(pid)
            {
                let grpc = v["grpc"].as_str().unwrap().to_string();
                let http = v["http"].as_str().unwrap().to_string();
                let addr = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                return Server {
                    child,
                    data: data.to_path_buf(),
                    grpc,
                    http,
                    mqtt: addr("mqtt"),
                    mqtt_tls: addr("mqtt_tls"),
                    mqtt_ws: addr("mqtt_ws"),
                    log,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "fjord serve exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "fjord serve did not become ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap().code()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a client subcommand against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_input(args, b"")
    }

    pub fn cli_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--server", &self.grpc])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Runs a client subcommand that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_input(args, b"")
    }

    pub fn ok_with_input(&self, args: &[&str], input: &[u8]) -> String {
        let out = self.cli_with_input(args, input);
        assert!(
            out.status.success(),
            "fjord {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
