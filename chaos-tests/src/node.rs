//! A `fjord serve` process the nemesis can kill, pause and restart.
//!
//! Every start uses ephemeral ports and waits (bounded) for the node's
//! `listeners.json` with its own pid; signals go through `kill(1)`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where the `fjord` binary is: `FJORD_BIN`, else next to the running
/// program (or its parent directory, for test binaries in `deps/`).
pub fn fjord_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("FJORD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locate the running program")?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("fjord");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no fjord binary next to {} (build it, or set FJORD_BIN)",
        exe.display()
    )
}

/// One node and its data directory.
pub struct Node {
    binary: PathBuf,
    data: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    /// The current gRPC address (changes on every restart, unless sticky).
    pub grpc: String,
    /// Restart on the same gRPC address (cluster members keep theirs).
    pub sticky: bool,
    paused: bool,
}

impl Node {
    /// Starts a node on `data` with extra `serve` flags.
    ///
    /// # Errors
    /// The process cannot start or is not ready within 60 s.
    pub fn start(binary: &Path, data: &Path, extra: &[&str]) -> Result<Node> {
        let mut node = Node {
            binary: binary.to_path_buf(),
            data: data.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            grpc: String::new(),
            sticky: false,
            paused: false,
        };
        node.restart()?;
        Ok(node)
    }

    /// Starts a node whose gRPC listener is `grpc` now and after every
    /// restart (a cluster member behind a proxy).
    ///
    /// # Errors
    /// As [`Node::start`].
    pub fn start_at(binary: &Path, data: &Path, extra: &[&str], grpc: &str) -> Result<Node> {
        let mut node = Node {
            binary: binary.to_path_buf(),
            data: data.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            grpc: grpc.to_string(),
            sticky: true,
            paused: false,
        };
        node.restart()?;
        Ok(node)
    }

    /// (Re)starts the process and waits for it to announce its listeners.
    ///
    /// # Errors
    /// As [`Node::start`].
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        std::fs::create_dir_all(&self.data)?;
        let grpc = if self.sticky && !self.grpc.is_empty() {
            self.grpc.clone()
        } else {
            "127.0.0.1:0".to_string()
        };
        let child = Command::new(&self.binary)
            .args(["serve", "--grpc-listen", &grpc])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--log-level",
                "warn",
                "--mqtt-listen",
                "off",
                "--mqtt-tls-listen",
                "off",
                "--mqtt-ws-listen",
                "off",
                "--amqp-listen",
                "off",
                "--amqp-tls-listen",
                "off",
                "--data-dir",
            ])
            .arg(&self.data)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", self.binary.display()))?;
        let pid = u64::from(child.id());
        self.child = Some(child);
        let path = self.data.join("listeners.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && v["pid"].as_u64() == Some(pid)
                && let Some(grpc) = v["grpc"].as_str()
            {
                self.grpc = grpc.to_string();
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!("fjord serve exited during start: {status}");
            }
            if Instant::now() > deadline {
                bail!("fjord serve did not become ready in 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Whether the process is down (killed and not restarted yet).
    pub fn is_down(&self) -> bool {
        self.child.is_none()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP: the process stops answering but keeps its sockets.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    /// SIGCONT after a pause.
    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
        self.kill9();
    }
}
