//! One `fjord serve` process and its data directory: started on ephemeral
//! loopback ports, ready once its `listeners.json` names its pid, and
//! killed, stopped, resumed or restarted on request.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::flags::{EPHEMERAL, Gateways, merge};
use crate::listeners::Listeners;
use crate::process::{self, Signal};

/// How long a start may take by default.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a node may take to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start a node; [`NodeBuilder::start`] starts it.
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    binary: PathBuf,
    /// `None`: a temporary directory the node owns (inside `temp_parent`,
    /// or the system's).
    data_dir: Option<PathBuf>,
    temp_parent: Option<PathBuf>,
    gateways: Gateways,
    flags: Vec<String>,
    sticky_grpc: bool,
    log: Option<PathBuf>,
    log_level: Option<String>,
    ready_timeout: Duration,
}

impl NodeBuilder {
    /// The node's data directory (made if missing, kept on drop). Without
    /// one the node makes a temporary directory and removes it on drop.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> NodeBuilder {
        self.data_dir = Some(dir.into());
        self
    }

    /// Make the temporary data directory inside `parent` (a real disk for
    /// a benchmark) rather than the system's temporary directory.
    pub fn temp_data_in(mut self, parent: impl Into<PathBuf>) -> NodeBuilder {
        self.temp_parent = Some(parent.into());
        self
    }

    /// The gateway listeners to open, on ephemeral ports (default: none).
    pub fn gateways(mut self, gateways: Gateways) -> NodeBuilder {
        self.gateways = gateways;
        self
    }

    /// More `fjord serve` flags, after those given before. A flag the kit
    /// also writes (a listener address) replaces the kit's value.
    pub fn flags<I, S>(mut self, flags: I) -> NodeBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.flags.extend(flags.into_iter().map(Into::into));
        self
    }

    /// Restarts listen on the gRPC address of the previous start (a cluster
    /// member's peers know it by that address).
    pub fn sticky_grpc(mut self) -> NodeBuilder {
        self.sticky_grpc = true;
        self
    }

    /// Write the node's stdout and stderr to `path` (emptied on the first
    /// start, appended to on restarts). Without it they are discarded.
    pub fn log(mut self, path: impl Into<PathBuf>) -> NodeBuilder {
        self.log = Some(path.into());
        self
    }

    /// The node's log level (`FJORD_LOG_LEVEL`, so a `--log-level` flag
    /// still wins).
    pub fn log_level(mut self, level: &str) -> NodeBuilder {
        self.log_level = Some(level.to_string());
        self
    }

    /// How long a start may take before it fails (default 60 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> NodeBuilder {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the node and waits until it is ready.
    ///
    /// # Errors
    /// The data directory or log cannot be made, the binary cannot start,
    /// exits, or does not announce its listeners in time (it is killed).
    pub fn start(self) -> Result<Node> {
        let (data, temp) = match &self.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = match &self.temp_parent {
                    Some(parent) => {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("make {}", parent.display()))?;
                        tempfile::Builder::new().prefix("fjord-").tempdir_in(parent)
                    }
                    None => tempfile::Builder::new().prefix("fjord-").tempdir(),
                }
                .context("make a temporary data directory")?;
                (temp.path().join("data"), Some(temp))
            }
        };
        std::fs::create_dir_all(&data).with_context(|| format!("make {}", data.display()))?;
        if let Some(log) = &self.log {
            if let Some(parent) = log.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("make {}", parent.display()))?;
            }
            File::create(log).with_context(|| format!("create {}", log.display()))?;
        }
        let mut node = Node {
            spec: self,
            data,
            child: None,
            listeners: Listeners::default(),
            paused: false,
            _temp: temp,
        };
        node.restart()?;
        Ok(node)
    }
}

/// A `fjord serve` process; on drop it is killed and a temporary data
/// directory removed.
#[derive(Debug)]
pub struct Node {
    spec: NodeBuilder,
    data: PathBuf,
    child: Option<Child>,
    /// As announced by the latest start.
    listeners: Listeners,
    paused: bool,
    /// Dropped after the process is killed (fields drop after `drop`).
    _temp: Option<TempDir>,
}

impl Node {
    /// How to start a node of `binary` (see [`crate::fjord_binary`]).
    pub fn builder(binary: impl Into<PathBuf>) -> NodeBuilder {
        NodeBuilder {
            binary: binary.into(),
            data_dir: None,
            temp_parent: None,
            gateways: Gateways::NONE,
            flags: Vec::new(),
            sticky_grpc: false,
            log: None,
            log_level: None,
            ready_timeout: READY_TIMEOUT,
        }
    }

    /// Every address the latest start announced.
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// The gRPC address (`host:port`) of the latest start.
    pub fn grpc(&self) -> &str {
        &self.listeners.grpc
    }

    /// The HTTP address (`host:port`) of the latest start.
    pub fn http(&self) -> &str {
        &self.listeners.http
    }

    pub fn binary(&self) -> &Path {
        &self.spec.binary
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Where stdout and stderr go, if anywhere.
    pub fn log_path(&self) -> Option<&Path> {
        self.spec.log.as_deref()
    }

    /// The log so far (empty without a log file).
    pub fn log(&self) -> String {
        self.log_path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// The process id, unless the node is down.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the node was killed (or stopped by SIGTERM) and not
    /// restarted since.
    pub fn is_down(&self) -> bool {
        self.child.is_none()
    }

    /// How the process ended, if it exited by itself while up.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Resident set size in bytes, from `/proc`.
    pub fn rss_bytes(&self) -> Option<u64> {
        process::rss_bytes(self.pid()?)
    }

    /// (Re)starts the process with the same flags, killing it first if it
    /// runs, and waits until it is ready. The data directory is kept.
    ///
    /// # Errors
    /// As [`NodeBuilder::start`]; the node is down afterwards.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        std::fs::create_dir_all(&self.data)
            .with_context(|| format!("make {}", self.data.display()))?;
        let grpc = if self.spec.sticky_grpc && !self.listeners.grpc.is_empty() {
            self.listeners.grpc.clone()
        } else {
            EPHEMERAL.to_string()
        };
        let mut defaults = vec![
            ("--grpc-listen", grpc.as_str()),
            ("--http-listen", EPHEMERAL),
        ];
        defaults.extend(self.spec.gateways.flags());
        let mut command = Command::new(&self.spec.binary);
        command
            .arg("serve")
            .args(merge(&defaults, &self.spec.flags))
            .arg("--data-dir")
            .arg(&self.data)
            .stdin(Stdio::null());
        if let Some(level) = &self.spec.log_level {
            command.env("FJORD_LOG_LEVEL", level);
        }
        match &self.spec.log {
            Some(path) => {
                let out = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("open {}", path.display()))?;
                command.stdout(out.try_clone()?).stderr(out);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("start {}", self.spec.binary.display()))?;
        let pid = child.id();
        self.child = Some(child);
        match self.wait_ready(pid) {
            Ok(listeners) => {
                self.listeners = listeners;
                Ok(())
            }
            Err(e) => {
                self.kill9();
                Err(e)
            }
        }
    }

    /// Polls `listeners.json` until process `pid` has written it.
    fn wait_ready(&mut self, pid: u32) -> Result<Listeners> {
        let deadline = Instant::now() + self.spec.ready_timeout;
        loop {
            if let Some(listeners) = Listeners::read_if_from(&self.data, pid) {
                return Ok(listeners);
            }
            if let Some(status) = self.exited() {
                bail!(
                    "fjord serve on {} exited during start ({status}){}",
                    self.data.display(),
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "fjord serve on {} announced no listeners within {:?}{}",
                    self.data.display(),
                    self.spec.ready_timeout,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The log's last lines, for an error message.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("; its log ends:\n{tail}")
    }

    /// SIGKILL, and reap: the node is down until [`Node::restart`].
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGTERM (after SIGCONT if paused) and wait for the exit; returns
    /// the exit code (`None` if a signal ended it). The node is down
    /// afterwards.
    ///
    /// # Errors
    /// The node is down, the signal cannot be sent, or the process has not
    /// exited after 60 s (it is then killed).
    pub fn terminate(&mut self) -> Result<Option<i32>> {
        let Some(pid) = self.pid() else {
            bail!("the node on {} is down", self.data.display());
        };
        if self.paused {
            self.resume()?;
        }
        process::send(pid, Signal::Term)?;
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!("fjord serve (pid {pid}) did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGSTOP: returns once the process is stopped; it keeps its sockets
    /// but answers nothing.
    ///
    /// # Errors
    /// The signal cannot be sent or does not take effect in 10 s.
    pub fn pause(&mut self) -> Result<()> {
        if let Some(pid) = self.pid() {
            process::send(pid, Signal::Stop)?;
            self.paused = true;
            process::wait_stopped(pid, true)?;
        }
        Ok(())
    }

    /// SIGCONT after [`Node::pause`]: returns once the process runs again.
    ///
    /// # Errors
    /// As [`Node::pause`].
    pub fn resume(&mut self) -> Result<()> {
        if let Some(pid) = self.pid() {
            process::send(pid, Signal::Cont)?;
            self.paused = false;
            process::wait_stopped(pid, false)?;
        }
        Ok(())
    }

    /// Whether the node is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.paused
            && let Some(pid) = self.pid()
        {
            let _ = process::send(pid, Signal::Cont);
        }
        self.kill9();
    }
}
