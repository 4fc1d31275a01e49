//! An MQTT broker child process for the MQTT benchmark: `fjord serve` with
//! its plain-TCP MQTT listener on, or Mosquitto, both on loopback only.
//!
//! Each broker gets a directory of its own (Fjord's data directory, or
//! Mosquitto's configuration file) and writes its stdout and stderr to a log
//! file beside that directory, so a failed run can show what the server
//! said. The process is killed on drop; the directories belong to the
//! caller.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fjord_testkit::process::rss_bytes;
use fjord_testkit::{Gateways, Node};

use crate::process::{Process, log_tail};

/// Mosquitto's settings in this benchmark, one `key value` per line, chosen
/// so that its limits do not throttle it: 1,000 QoS 1 messages in flight
/// toward each client and 100,000 queued behind them (the defaults are 20
/// and 1,000), no persistence (Mosquitto keeps messages in memory; Fjord
/// writes each one to its log), no connection limit, and only errors and
/// warnings logged. `set_tcp_nodelay` stays at Mosquitto's default (Nagle
/// on, unlike Fjord's listener): on loopback it gave Mosquitto more
/// messages/s than `true` in all four loads and a lower p99 in three.
pub const MOSQUITTO_SETTINGS: &[&str] = &[
    "allow_anonymous true",
    "persistence false",
    "max_inflight_messages 1000",
    "max_queued_messages 100000",
    "max_queued_bytes 0",
    "max_connections -1",
    "set_tcp_nodelay false",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
];

/// A broker the benchmark started; killed on drop.
pub struct BrokerProcess {
    /// "Fjord" or "Mosquitto", for the output.
    pub name: &'static str,
    /// The plain MQTT listener.
    pub addr: SocketAddr,
    /// Fjord's HTTP listener, for its `/metrics`.
    http: Option<SocketAddr>,
    process: Process,
    /// Its stdout and stderr.
    log: PathBuf,
}

impl BrokerProcess {
    /// Starts `binary serve` with its data in `dir` (made if missing; a
    /// real disk) and only the MQTT TCP, gRPC and HTTP listeners, each on an
    /// ephemeral loopback port, plus the `extra` flags; waits (bounded) for
    /// `listeners.json`.
    ///
    /// # Errors
    /// The binary cannot start, exits early, or does not announce an MQTT
    /// listener within 60 s.
    pub fn fjord(
        binary: &Path,
        dir: &Path,
        log_level: &str,
        extra: &[String],
    ) -> Result<BrokerProcess> {
        let log = dir.with_extension("log");
        let node = Node::builder(binary)
            .data_dir(dir)
            .log(&log)
            .log_level(log_level)
            .gateways(Gateways::MQTT)
            .flags(extra.iter().cloned())
            .start()?;
        let addr = node
            .listeners()
            .mqtt
            .as_deref()
            .context("fjord serve announced no MQTT listener")?
            .parse()
            .context("the mqtt address in listeners.json")?;
        Ok(BrokerProcess {
            name: "Fjord",
            addr,
            http: node.http().parse().ok(),
            process: Process::Fjord(Box::new(node)),
            log,
        })
    }

    /// Starts `binary -c <dir>/mosquitto.conf` with [`MOSQUITTO_SETTINGS`]
    /// and then the `extra` lines (a later line overrides an earlier one)
    /// on a free loopback port and waits until it accepts connections. The
    /// port is found by binding port 0 and closing it; if Mosquitto then
    /// fails to start (another process took the port) it is tried once more
    /// on a new port.
    ///
    /// # Errors
    /// Mosquitto cannot start twice, or does not accept connections in 10 s.
    pub fn mosquitto(binary: &Path, dir: &Path, extra: &[String]) -> Result<BrokerProcess> {
        match BrokerProcess::mosquitto_once(binary, dir, extra) {
            Ok(broker) => Ok(broker),
            Err(first) => BrokerProcess::mosquitto_once(binary, dir, extra)
                .with_context(|| format!("second attempt (the first: {first:#})")),
        }
    }

    fn mosquitto_once(binary: &Path, dir: &Path, extra: &[String]) -> Result<BrokerProcess> {
        std::fs::create_dir_all(dir).with_context(|| format!("make {}", dir.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut config = format!("listener {port} 127.0.0.1\n");
        for line in MOSQUITTO_SETTINGS
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
        {
            let _ = writeln!(config, "{line}");
        }
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, config).with_context(|| format!("write {}", conf.display()))?;
        let log = dir.with_extension("log");
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let mut broker = BrokerProcess {
            name: "Mosquitto",
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            http: None,
            process: Process::Other(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = broker.process.exited() {
                bail!(
                    "mosquitto exited early ({status}); its log:\n{}",
                    log_tail(&broker.log, 20)
                );
            }
            if TcpStream::connect_timeout(&broker.addr, Duration::from_millis(200)).is_ok() {
                return Ok(broker);
            }
            if Instant::now() > deadline {
                bail!(
                    "mosquitto did not accept connections on {} in 10 s",
                    broker.addr
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Resident set size in bytes, from `/proc/<pid>/status`.
    pub fn rss(&self) -> Option<u64> {
        rss_bytes(self.pid())
    }

    /// CPU time (user + system, all threads) used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(&self.pid().to_string())
    }

    /// Messages Fjord's MQTT gateway has dropped so far, by reason
    /// (`fjord_mqtt_messages_dropped_total` on its `/metrics`); `None` for
    /// Mosquitto or if the metrics cannot be read.
    pub fn dropped(&self) -> Option<Vec<(String, u64)>> {
        let page = crate::metrics::scrape(&self.http?.to_string())?;
        Some(
            crate::metrics::labelled(&page, "fjord_mqtt_messages_dropped_total")
                .into_iter()
                .filter_map(|(labels, value)| {
                    let reason = labels.strip_prefix("reason=\"")?.strip_suffix('"')?;
                    Some((reason.to_string(), value as u64))
                })
                .collect(),
        )
    }

    /// Where its stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.exited()
    }
}

/// CPU time (user + system, all threads) of process `pid` ("self" for
/// this one), from `/proc/<pid>/stat`, whose `utime` and `stime` fields
/// count in units of `USER_HZ`, 100 per second on Linux.
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may
    // contain spaces: state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// `mosquitto` on PATH, else Debian's /usr/sbin/mosquitto.
pub fn find_mosquitto() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("mosquitto"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"))
}

/// The first line `binary <flag>` prints (stdout, else stderr), trimmed.
pub fn version_line(binary: &Path, flag: &str) -> String {
    match Command::new(binary).arg(flag).output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(e) => format!("unknown ({}: {e})", binary.display()),
    }
}
