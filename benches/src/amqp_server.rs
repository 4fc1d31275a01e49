//! An AMQP 0-9-1 broker child process for the AMQP benchmark: `fjord serve`
//! with its AMQP listener on, or a private RabbitMQ node, both on loopback
//! only and both ready when returned (an AMQP handshake with guest/guest
//! succeeded).
//!
//! # RabbitMQ
//! The node is Debian's `rabbitmq-server`, started from its real scripts in
//! `/usr/lib/rabbitmq/bin` (the `/usr/sbin` wrappers switch to the
//! `rabbitmq` user) as the current user, with everything private to one
//! directory: node name `fjordbench-<pid>-<n>@localhost`, `HOME` (so its own
//! Erlang cookie), data (`RABBITMQ_MNESIA_BASE`), logs, pid file, an empty
//! plugin list (no management listener) and an empty `rabbitmq-env.conf`
//! (the system one is not read). Its ports are chosen free at start: AMQP
//! (`listeners.tcp.1` in its `rabbitmq.conf`, loopback only), Erlang
//! distribution (`RABBITMQ_DIST_PORT`, loopback only), the distribution
//! port of `rabbitmqctl` (`RABBITMQ_CTL_DIST_PORT_MIN`/`MAX`) and a private
//! `epmd` (`ERL_EPMD_PORT`, loopback only) that this module starts and
//! stops. Durability is RabbitMQ's default: a queue declared durable is a
//! classic queue, a persistent message is written to its message store, and
//! a publisher confirm waits until it is there.
//!
//! # Processes
//! Each broker writes its stdout and stderr to `<dir>.log` beside its
//! directory, so a failed run can show what it said. On drop, Fjord is
//! killed; RabbitMQ (which logs to stdout here, `RABBITMQ_LOGS=-`) is
//! stopped with `rabbitmqctl stop` (bounded), then sent SIGTERM and SIGKILL
//! if it is still there, and its `epmd` is killed. The directories belong
//! to the caller.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fjord_testkit::{Cluster, Gateways, Node, NodeBuilder};
use lapin::{Connection, ConnectionProperties};

use crate::mqtt_server::cpu_time;
use crate::process::{Process, log_tail};

/// How long a broker may take to accept an AMQP handshake after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Distinguishes the nodes one benchmark process starts.
static NODE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Where RabbitMQ's programs are.
#[derive(Debug, Clone)]
pub struct RabbitInstall {
    /// The directory with the real `rabbitmq-server` and `rabbitmqctl`
    /// scripts (Debian: `/usr/lib/rabbitmq/bin`).
    pub bin_dir: PathBuf,
    /// Erlang's port mapper daemon.
    pub epmd: PathBuf,
}

impl RabbitInstall {
    /// Debian's layout, or `bin_dir` and `epmd` where given.
    pub fn new(bin_dir: Option<PathBuf>, epmd: Option<PathBuf>) -> RabbitInstall {
        RabbitInstall {
            bin_dir: bin_dir.unwrap_or_else(|| PathBuf::from("/usr/lib/rabbitmq/bin")),
            epmd: epmd.unwrap_or_else(|| on_path("epmd", "/usr/bin/epmd")),
        }
    }

    fn server(&self) -> PathBuf {
        self.bin_dir.join("rabbitmq-server")
    }

    fn ctl(&self) -> PathBuf {
        self.bin_dir.join("rabbitmqctl")
    }

    /// # Errors
    /// A program is missing; the message says how to install it.
    pub fn check(&self) -> Result<()> {
        for program in [self.server(), self.ctl(), self.epmd.clone()] {
            if !program.is_file() {
                bail!(
                    "{} not found (run scripts/install-amqp-tools.sh, or see --rabbitmq-bin-dir \
                     and --epmd-bin)",
                    program.display()
                );
            }
        }
        Ok(())
    }
}

/// What stopping a RabbitMQ node needs.
struct RabbitNode {
    /// `fjordbench-<pid>-<n>@localhost`.
    node: String,
    ctl: PathBuf,
    /// The environment `rabbitmqctl` needs to reach the node: the same
    /// `HOME` (cookie), epmd port and env file, and a free port of its own.
    ctl_env: Vec<(&'static str, OsString)>,
    /// The node writes the Erlang VM's OS pid here; `rabbitmqctl stop`
    /// waits for that process to end.
    pid_file: PathBuf,
    /// The private epmd.
    epmd: Child,
}

/// A broker the benchmark started; stopped on drop.
pub struct AmqpBroker {
    /// "Fjord" or "RabbitMQ", for the output.
    pub name: &'static str,
    /// The AMQP listener.
    pub addr: SocketAddr,
    /// `fjord serve`, or the `rabbitmq-server` script (which waits for the
    /// Erlang VM it started).
    process: Process,
    /// The process whose CPU time is the server's: `fjord serve`, or
    /// RabbitMQ's Erlang VM (from its pid file).
    server_pid: u32,
    /// Its stdout and stderr.
    log: PathBuf,
    rabbit: Option<RabbitNode>,
    /// A Fjord cluster's other nodes (their CPU time counts too).
    peers: Vec<AmqpBroker>,
}

impl AmqpBroker {
    /// Starts `binary serve` with its data in `dir` (made if missing; a real
    /// disk) and only the AMQP, gRPC and HTTP listeners, each on an
    /// ephemeral loopback port, plus the `extra` flags; reads the AMQP
    /// address from `listeners.json` (key `amqp`) and waits for an AMQP
    /// handshake.
    ///
    /// # Errors
    /// The binary cannot start or exits early, announces no AMQP listener
    /// (a build without the AMQP gateway), or does not complete a handshake
    /// within 90 s.
    pub async fn fjord(
        binary: &Path,
        dir: &Path,
        log_level: &str,
        extra: &[String],
    ) -> Result<AmqpBroker> {
        let node = fjord_node(binary, log_level, extra)
            .data_dir(dir)
            .log(dir.with_extension("log"));
        let node = tokio::task::spawn_blocking(move || node.start()).await??;
        let mut broker = AmqpBroker::from_node(node)?;
        broker.wait_ready(Instant::now() + START_TIMEOUT).await?;
        Ok(broker)
    }

    /// A three-node Fjord cluster (node 1 bootstraps it, nodes 2 and 3
    /// join), each node as [`AmqpBroker::fjord`] starts one, with its data
    /// in `dir/n1`..`n3`. Its address is a node's that does not run the
    /// AMQP gateway, so every connection is carried to the one that does
    /// and every queue has three replicas; its CPU time is the three
    /// processes'.
    ///
    /// # Errors
    /// As [`AmqpBroker::fjord`], or no single node runs the gateway
    /// within 90 s.
    pub async fn fjord_cluster(
        binary: &Path,
        dir: &Path,
        log_level: &str,
        extra: &[String],
    ) -> Result<AmqpBroker> {
        let cluster = Cluster::builder(fjord_node(binary, log_level, extra), dir, 3).logs();
        let mut nodes = tokio::task::spawn_blocking(move || cluster.start())
            .await??
            .into_nodes();
        let deadline = Instant::now() + START_TIMEOUT;
        let gateway = loop {
            let serving: Vec<usize> = (0..nodes.len())
                .filter(|i| serves_amqp(nodes[*i].http()))
                .collect();
            if let [one] = serving[..] {
                break one;
            }
            if Instant::now() > deadline {
                bail!("no single node of the cluster runs the AMQP gateway");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut client_side = AmqpBroker::from_node(nodes.remove((gateway + 1) % 3))?;
        client_side.peers = nodes
            .into_iter()
            .map(AmqpBroker::from_node)
            .collect::<Result<_>>()?;
        client_side.wait_ready(deadline).await?;
        Ok(client_side)
    }

    /// A started Fjord node as a broker (not yet known to take a
    /// handshake).
    fn from_node(node: Node) -> Result<AmqpBroker> {
        let Some(addr) = node.listeners().amqp.as_deref() else {
            bail!(
                "fjord serve started but announced no AMQP listener (its listeners.json has no \
                 \"amqp\" key: this build has no AMQP gateway)"
            );
        };
        Ok(AmqpBroker {
            name: "Fjord",
            addr: addr.parse().context("the amqp address in listeners.json")?,
            server_pid: node.pid().unwrap_or_default(),
            log: node.log_path().map(Path::to_path_buf).unwrap_or_default(),
            process: Process::Fjord(Box::new(node)),
            rabbit: None,
            peers: Vec::new(),
        })
    }

    /// Starts a private RabbitMQ node with its files in `dir` (made if
    /// missing, emptied if not) on free loopback ports (see the module
    /// header), with RabbitMQ's default settings plus the `extra`
    /// `rabbitmq.conf` lines, and waits for an AMQP handshake. The ports are found by
    /// binding port 0 and closing it; if the node then fails to start
    /// (another process took a port) it is tried once more on new ports.
    ///
    /// # Errors
    /// RabbitMQ or epmd cannot start twice, or the node does not complete a
    /// handshake within 90 s.
    pub async fn rabbitmq(
        install: &RabbitInstall,
        dir: &Path,
        extra: &[String],
    ) -> Result<AmqpBroker> {
        match AmqpBroker::rabbitmq_once(install, dir, extra).await {
            Ok(broker) => Ok(broker),
            Err(first) => AmqpBroker::rabbitmq_once(install, dir, extra)
                .await
                .with_context(|| format!("second attempt (the first: {first:#})")),
        }
    }

    async fn rabbitmq_once(
        install: &RabbitInstall,
        dir: &Path,
        extra: &[String],
    ) -> Result<AmqpBroker> {
        install.check()?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("empty {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("make {}", dir.display()))?;
        let dir = std::path::absolute(dir)?;
        let [amqp, dist, ctl_dist, epmd_port] = free_ports::<4>()?;
        let node = format!(
            "fjordbench-{}-{}@localhost",
            std::process::id(),
            NODE_COUNT.fetch_add(1, Ordering::Relaxed)
        );

        let mut config = format!("listeners.tcp.1 = 127.0.0.1:{amqp}\n");
        for line in extra {
            let _ = writeln!(config, "{line}");
        }
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
            Ok(path)
        };
        let conf = write("rabbitmq.conf", &config)?;
        let plugins = write("enabled_plugins", "[].\n")?;
        let env_file = write("rabbitmq-env.conf", "")?;
        let pid_file = dir.join("rabbitmq.pid");

        // Shared by the node and rabbitmqctl.
        let common: Vec<(&'static str, OsString)> = vec![
            ("HOME", dir.clone().into()),
            ("ERL_EPMD_PORT", epmd_port.to_string().into()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_CONF_ENV_FILE", env_file.into()),
            ("RABBITMQ_NODENAME", node.clone().into()),
            ("RABBITMQ_CTL_DIST_PORT_MIN", ctl_dist.to_string().into()),
            ("RABBITMQ_CTL_DIST_PORT_MAX", ctl_dist.to_string().into()),
        ];

        // Everything that can fail before epmd starts, so that nothing
        // fails between its start and the broker that stops it.
        let log = dir.with_extension("log");
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let (out, err) = (out.try_clone()?, out);
        let epmd_log = dir.join("epmd.log");
        let epmd_out =
            File::create(&epmd_log).with_context(|| format!("create {}", epmd_log.display()))?;
        let epmd = Command::new(&install.epmd)
            .args(["-port", &epmd_port.to_string(), "-address", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(epmd_out.try_clone()?)
            .stderr(epmd_out)
            .spawn()
            .with_context(|| format!("start {}", install.epmd.display()))?;

        let spawned = Command::new(install.server())
            .current_dir(&dir)
            .envs(common.iter().map(|(k, v)| (k, v)))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", amqp.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_BASE", &dir)
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_LOGS", "-")
            .env("RABBITMQ_CONFIG_FILE", &conf)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_PID_FILE", &pid_file)
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn();
        let rabbit = RabbitNode {
            node,
            ctl: install.ctl(),
            ctl_env: common,
            pid_file,
            epmd,
        };
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                stop_epmd(rabbit.epmd);
                return Err(e).with_context(|| format!("start {}", install.server().display()));
            }
        };
        let server_pid = child.id();
        let mut broker = AmqpBroker {
            name: "RabbitMQ",
            addr: SocketAddr::from(([127, 0, 0, 1], amqp)),
            process: Process::Other(child),
            server_pid,
            log,
            rabbit: Some(rabbit),
            peers: Vec::new(),
        };
        broker.wait_ready(Instant::now() + START_TIMEOUT).await?;
        // The Erlang VM's pid, for its CPU time; the script's pid until then.
        if let Some(pid) = broker
            .rabbit
            .as_ref()
            .and_then(|r| vm_pid(&r.pid_file, server_pid))
        {
            broker.server_pid = pid;
        }
        Ok(broker)
    }

    /// Retries an AMQP handshake (guest/guest, vhost `/`) until one
    /// succeeds, the process exits, or `deadline` passes.
    async fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        loop {
            if let Some(status) = self.process.exited() {
                bail!(
                    "{} exited early ({status}); its log:\n{}",
                    self.name,
                    log_tail(&self.log, 20)
                );
            }
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                Connection::connect(&self.url(), ConnectionProperties::default()),
            )
            .await;
            let last_error = match attempt {
                Ok(Ok(conn)) => {
                    let _ = conn.close(200, "ready".into()).await;
                    return Ok(());
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 5 s".into(),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} did not complete an AMQP handshake on {} within {} s (last attempt: \
                     {last_error}); its log:\n{}",
                    self.name,
                    self.addr,
                    START_TIMEOUT.as_secs(),
                    log_tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `amqp://guest:guest@<addr>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Process id of the server (for RabbitMQ, its Erlang VM).
    pub fn pid(&self) -> u32 {
        self.server_pid
    }

    /// CPU time (user + system, all threads) the server has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        let mut total = cpu_time(&self.server_pid.to_string())?;
        for p in &self.peers {
            total += p.cpu_time()?;
        }
        Some(total)
    }

    /// RabbitMQ's "RabbitMQ x.y.z on Erlang a.b.c", from its log; `None`
    /// for Fjord or if the log does not say.
    pub fn rabbitmq_version(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        text.lines()
            .find_map(|l| l.split_once("Starting RabbitMQ "))
            .map(|(_, v)| format!("RabbitMQ {}", v.trim()))
    }

    /// Where its stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }
}

impl Drop for AmqpBroker {
    fn drop(&mut self) {
        // A Fjord node is killed when its process drops.
        let Some(rabbit) = self.rabbit.take() else {
            return;
        };
        if self.exited().is_none() {
            // A clean stop first; `stop <pid file>` returns once the VM has
            // exited.
            let stop = Command::new(&rabbit.ctl)
                .envs(rabbit.ctl_env.iter().map(|(k, v)| (k, v)))
                .arg("-n")
                .arg(&rabbit.node)
                .arg("stop")
                .arg(&rabbit.pid_file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut stop) = stop {
                wait_bounded(&mut stop, Duration::from_secs(30));
            }
            // Still there: SIGTERM (the VM stops cleanly), then SIGKILL;
            // the script exits when the VM has.
            let vm = vm_pid(&rabbit.pid_file, self.process.id());
            for signal in ["-TERM", "-KILL"] {
                let deadline = Instant::now() + Duration::from_secs(10);
                while self.exited().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if self.exited().is_some() {
                    break;
                }
                if let Some(vm) = vm {
                    let _ = Command::new("kill")
                        .args([signal, &vm.to_string()])
                        .stderr(Stdio::null())
                        .status();
                }
            }
            if self.exited().is_none() {
                self.process.kill();
            }
        }
        stop_epmd(rabbit.epmd);
    }
}

/// The pid of the Erlang VM that the `rabbitmq-server` script `script`
/// started: from the node's pid file, else the script's first child.
fn vm_pid(pid_file: &Path, script: u32) -> Option<u32> {
    if let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.trim().parse().ok())
    {
        return Some(pid);
    }
    std::fs::read_to_string(format!("/proc/{script}/task/{script}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn stop_epmd(mut epmd: Child) {
    let _ = epmd.kill();
    let _ = epmd.wait();
}

/// Waits up to `limit` for `child` (a `rabbitmqctl`) to exit, then kills it.
fn wait_bounded(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `N` distinct loopback ports that were free a moment ago (all bound at
/// once, then closed).
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind a free loopback port")?;
        *port = listener.local_addr()?.port();
        listeners.push(listener);
    }
    Ok(ports)
}

/// `name` on PATH, else `fallback`.
fn on_path(name: &str, fallback: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(fallback))
}

/// How every Fjord node of the benchmark starts: only the AMQP, gRPC and
/// HTTP listeners, each on an ephemeral loopback port, plus `extra`.
fn fjord_node(binary: &Path, log_level: &str, extra: &[String]) -> NodeBuilder {
    Node::builder(binary)
        .gateways(Gateways::AMQP)
        .log_level(log_level)
        .flags(extra.iter().cloned())
        .ready_timeout(START_TIMEOUT)
}

/// True when the node whose HTTP listener is `http` says it runs the AMQP
/// gateway (`fjord_amqp_serving 1` on `/metrics`).
fn serves_amqp(http: &str) -> bool {
    crate::metrics::scrape(http).and_then(|page| crate::metrics::value(&page, "fjord_amqp_serving"))
        == Some(1.0)
}
