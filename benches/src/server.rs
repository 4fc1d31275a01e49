//! Starts a real `fjord serve` child process on ephemeral ports for a
//! benchmark and reads its addresses back from `<data-dir>/listeners.json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running `fjord serve`; killed and its data removed on drop.
pub struct ServerProcess {
    child: Child,
    /// `host:port` of the gRPC listener.
    pub grpc: String,
    _data: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `binary serve` with a fresh data directory under `parent` and
    /// waits (bounded) until it has written `listeners.json`.
    ///
    /// # Errors
    /// The binary cannot start, exits early, or is not ready in 60 s.
    pub fn start(binary: &Path, parent: &Path, extra: &[&str]) -> Result<ServerProcess> {
        std::fs::create_dir_all(parent)?;
        let data = tempfile::tempdir_in(parent).context("make data directory")?;
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "off",
                "--mqtt-tls-listen",
                "off",
                "--mqtt-ws-listen",
                "off",
            ])
            // The AMQP listener only where a benchmark asks for it.
            .args(if extra.contains(&"--amqp-listen") {
                &["--amqp-tls-listen", "off"][..]
            } else {
                &["--amqp-listen", "off", "--amqp-tls-listen", "off"][..]
            })
            .args(extra)
            .env("FJORD_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let listeners = data.path().join("listeners.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        let grpc = loop {
            if let Ok(text) = std::fs::read_to_string(&listeners) {
                let value: serde_json::Value = serde_json::from_str(&text)?;
                if let Some(addr) = value.get("grpc").and_then(|v| v.as_str()) {
                    break addr.to_string();
                }
            }
            if let Some(status) = child.try_wait()? {
                bail!("fjord serve exited early: {status}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("fjord serve did not write {} in time", listeners.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(ServerProcess {
            child,
            grpc,
            _data: data,
        })
    }

    /// The gRPC endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Process id, for reading its memory use.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `fjord` binary next to the running benchmark (same target profile).
pub fn sibling_fjord() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("fjord")))
        .unwrap_or_else(|| PathBuf::from("fjord"))
}

/// Resident set size of a process in bytes, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
