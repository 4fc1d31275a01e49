//! The MQTT benchmark's idle-connections memory test: raw MQTT 3.1.1
//! connections (CONNECT with keep-alive 60 s, CONNACK read) held open to a
//! freshly started server; its resident memory before and after gives bytes
//! per connection.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::mqtt_server::BrokerProcess;
use crate::stats::{mib, thousands};

/// Memory of idle connections on one server.
pub struct IdleFigures {
    /// Connections asked for, and opened (CONNACK "accepted").
    pub asked: usize,
    pub opened: usize,
    /// Still open (not closed by the server) when memory was read.
    pub alive: usize,
    pub first_error: Option<String>,
    /// The server's VmRSS before the first connection and after the last.
    pub rss_before: u64,
    pub rss_after: u64,
    pub open_seconds: f64,
}

impl IdleFigures {
    /// Resident memory added per opened connection, in bytes.
    pub fn per_connection(&self) -> Option<f64> {
        (self.opened > 0)
            .then(|| self.rss_after.saturating_sub(self.rss_before) as f64 / self.opened as f64)
    }
}

/// Starts a fresh server of each kind (Fjord first, stopped before
/// Mosquitto starts), opens `count` idle connections to each, `batch` at a
/// time, and measures both.
///
/// # Errors
/// A server does not start, or its VmRSS cannot be read.
pub async fn idle_comparison(
    count: usize,
    batch: usize,
    start_fjord: impl FnOnce() -> Result<BrokerProcess>,
    start_mosquitto: impl FnOnce() -> Result<BrokerProcess>,
) -> Result<[IdleFigures; 2]> {
    println!(
        "\n### {} idle connections (MQTT 3.1.1 CONNECT, keep-alive 60 s, {} opened at a time), fresh servers",
        thousands(count as u64),
        batch
    );
    let fjord = start_fjord()?;
    let f = idle_connections(&fjord, count, batch).await?;
    drop(fjord);
    let mosquitto = start_mosquitto()?;
    let m = idle_connections(&mosquitto, count, batch).await?;
    if let (Some(a), Some(b)) = (f.per_connection(), m.per_connection()) {
        println!(
            "  Fjord/Mosquitto memory per connection: {:.2}",
            a / b.max(1.0)
        );
    }
    Ok([f, m])
}

async fn idle_connections(
    broker: &BrokerProcess,
    count: usize,
    batch: usize,
) -> Result<IdleFigures> {
    // Let the server finish starting up before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = broker.rss().context("read the server's VmRSS")?;
    let started = Instant::now();
    let mut streams = Vec::with_capacity(count);
    let mut first_error = None;
    let mut next = 0;
    while next < count {
        let end = (next + batch.max(1)).min(count);
        let mut set = JoinSet::new();
        for i in next..end {
            set.spawn(open_idle(broker.addr, i));
        }
        while let Some(done) = set.join_next().await {
            match done? {
                Ok(s) => streams.push(s),
                Err(e) => {
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        next = end;
    }
    let open_seconds = started.elapsed().as_secs_f64();
    // Let the server settle (tasks parked, buffers sized) before reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = broker.rss().context("read the server's VmRSS")?;
    let mut buf = [0u8; 16];
    let alive = streams
        .iter()
        .filter(|s| matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count();
    let opened = streams.len();
    drop(streams);
    let f = IdleFigures {
        asked: count,
        opened,
        alive,
        first_error,
        rss_before,
        rss_after,
        open_seconds,
    };
    println!(
        "  {:<9}: {} of {} opened in {:.1} s, {} still open; VmRSS {:.1} MiB → {:.1} MiB: {} bytes per connection{}",
        broker.name,
        thousands(f.opened as u64),
        thousands(f.asked as u64),
        f.open_seconds,
        thousands(f.alive as u64),
        mib(f.rss_before),
        mib(f.rss_after),
        f.per_connection()
            .map_or("-".into(), |b| thousands(b.round() as u64)),
        f.first_error
            .as_ref()
            .map(|e| format!(" (first failure: {e})"))
            .unwrap_or_default()
    );
    Ok(f)
}

/// Opens one connection: TCP connect, CONNECT (MQTT 3.1.1, clean session,
/// keep-alive 60 s, client id `idle-<i>`), CONNACK "accepted".
async fn open_idle(addr: std::net::SocketAddr, i: usize) -> Result<TcpStream> {
    let limit = Duration::from_secs(10);
    let mut stream = tokio::time::timeout(limit, TcpStream::connect(addr))
        .await
        .context("connect: no answer in 10 s")?
        .context("connect")?;
    stream
        .write_all(&connect_packet(&format!("idle-{i}")))
        .await
        .context("send CONNECT")?;
    let mut connack = [0u8; 4];
    tokio::time::timeout(limit, stream.read_exact(&mut connack))
        .await
        .context("CONNACK: none in 10 s")?
        .context("read CONNACK")?;
    if connack != [0x20, 0x02, 0x00, 0x00] {
        bail!("CONNACK {connack:02x?} is not \"accepted\"");
    }
    Ok(stream)
}

/// An MQTT 3.1.1 CONNECT (§3.1): fixed header, protocol name "MQTT",
/// level 4, flags (clean session), keep-alive 60 s; payload: the client id
/// (at most 115 bytes, so the remaining length fits one byte).
fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = &client_id.as_bytes()[..client_id.len().min(115)];
    let mut packet = vec![0x10, (12 + id.len()) as u8];
    packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60]);
    packet.extend_from_slice(&(id.len() as u16).to_be_bytes());
    packet.extend_from_slice(id);
    packet
}

/// Raises this process's soft open-file limit to its hard limit, so it can
/// hold the idle connections (the servers it starts inherit the limit).
/// Returns the old and new soft limits.
///
/// # Errors
/// Reading or setting the limit fails.
pub fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft < hard {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard)?;
    }
    Ok((soft, soft.max(hard)))
}

#[cfg(test)]
mod tests {
    use super::connect_packet;

    #[test]
    fn connect_is_mqtt_3_1_1_with_clean_session_and_keep_alive_60() {
        assert_eq!(
            connect_packet("idle-7"),
            [
                0x10, 18, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 6, b'i', b'd', b'l',
                b'e', b'-', b'7'
            ]
        );
    }
}
