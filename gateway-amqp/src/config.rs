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
        }
    }
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
