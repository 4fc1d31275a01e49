//! The gateway's settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where and how the AMQP gateway listens.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// Plain AMQP over TCP (5672); `None` disables it.
    pub tcp: Option<SocketAddr>,
    /// AMQP over TLS (5671), with its acceptor; `None` disables it.
    pub tls: Option<(SocketAddr, Tls)>,
    /// `guest`/`guest` may log in (the development default), as on a fresh
    /// RabbitMQ; other users are `fjord user` accounts.
    pub allow_guest: bool,
    /// The largest frame the server accepts and offers in connection.tune.
    pub frame_max: u32,
    /// Channels a connection may open.
    pub channel_max: u16,
    /// The heartbeat interval the server offers (seconds; 0 = none).
    pub heartbeat: u16,
    /// How long a new connection may take to log in and open.
    pub handshake_timeout: Duration,
    /// Messages a queue keeps read ahead from its log for consumers.
    pub read_ahead: usize,
    /// The directory whose file system holds the log, watched for free
    /// space.
    pub data_dir: Option<PathBuf>,
    /// Below this much free disk space a resource alarm blocks publishing
    /// connections (`connection.blocked`), as RabbitMQ's
    /// `disk_free_limit` (50 MB by default).
    pub disk_free_limit: u64,
    /// At this much resident memory (bytes) a resource alarm blocks
    /// publishing connections, as RabbitMQ's `vm_memory_high_watermark`;
    /// 0 turns it off. By default 40% of the machine's memory limit.
    pub memory_high_watermark: u64,
}

impl AmqpConfig {
    /// The standard port on loopback, guest access on.
    pub fn new() -> AmqpConfig {
        AmqpConfig {
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], 5672))),
            tls: None,
            allow_guest: true,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            handshake_timeout: Duration::from_secs(10),
            read_ahead: 1000,
            data_dir: None,
            disk_free_limit: 50_000_000,
            memory_high_watermark: default_memory_high_watermark(),
        }
    }
}

/// 40% of the machine's memory limit: the smaller of the RAM
/// (`/proc/meminfo`) and the cgroup v2 limit (`/sys/fs/cgroup/memory.max`);
/// 0 (off) when neither can be read.
fn default_memory_high_watermark() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let memory_max = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    memory_high_watermark(meminfo.as_deref(), memory_max.as_deref())
}

/// 40% of the smaller of `MemTotal` in a `/proc/meminfo` text and a
/// `memory.max` text that is a number (not `max`); 0 without either.
fn memory_high_watermark(meminfo: Option<&str>, memory_max: Option<&str>) -> u64 {
    let total = meminfo.and_then(|text| {
        let line = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
        let kb = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        kb.checked_mul(1024)
    });
    let max = memory_max.and_then(|text| text.trim().parse::<u64>().ok());
    let limit = match (total, max) {
        (Some(t), Some(m)) => t.min(m),
        (Some(l), None) | (None, Some(l)) => l,
        (None, None) => return 0,
    };
    u64::try_from(u128::from(limit) * 2 / 5).unwrap_or(u64::MAX)
}

/// A TLS acceptor (certificate and key loaded).
#[derive(Clone)]
pub struct Tls(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       16000000 kB\n\
                           MemFree:         1000000 kB\n\
                           MemAvailable:    8000000 kB\n";

    #[test]
    fn the_watermark_is_40_percent_of_the_smaller_limit() {
        let ram = 16_000_000 * 1024;
        assert_eq!(memory_high_watermark(Some(MEMINFO), None), ram / 5 * 2);
        // No cgroup limit.
        assert_eq!(
            memory_high_watermark(Some(MEMINFO), Some("max\n")),
            ram / 5 * 2
        );
        // A cgroup limit below the RAM, and one above it.
        assert_eq!(
            memory_high_watermark(Some(MEMINFO), Some("1000000000\n")),
            400_000_000
        );
        assert_eq!(
            memory_high_watermark(Some(MEMINFO), Some("99999999999999\n")),
            ram / 5 * 2
        );
        // Only the cgroup limit.
        assert_eq!(memory_high_watermark(None, Some("500\n")), 200);
        assert_eq!(
            memory_high_watermark(Some("MemFree: 10 kB\n"), Some("500")),
            200
        );
    }

    #[test]
    fn without_a_limit_the_watermark_is_off() {
        assert_eq!(memory_high_watermark(None, None), 0);
        assert_eq!(memory_high_watermark(None, Some("max\n")), 0);
        assert_eq!(memory_high_watermark(Some(""), Some("")), 0);
        assert_eq!(
            memory_high_watermark(Some("MemTotal: lots kB\n"), Some("-1")),
            0
        );
        assert_eq!(memory_high_watermark(Some("MemTotal: 12\n"), None), 0);
    }

    #[test]
    fn a_huge_limit_does_not_overflow() {
        let meminfo = format!("MemTotal: {} kB\n", u64::MAX);
        assert_eq!(memory_high_watermark(Some(&meminfo), None), 0);
        let max = u64::MAX.to_string();
        assert_eq!(memory_high_watermark(None, Some(&max)), u64::MAX / 5 * 2);
    }
}
