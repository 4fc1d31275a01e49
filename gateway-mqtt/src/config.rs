//! The gateway's settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where and how the MQTT gateway listens, and how it maps MQTT onto the log.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Plain MQTT over TCP (1883); `None` disables it.
    pub tcp: Option<SocketAddr>,
    /// MQTT over TLS (8883); `None` disables it.
    pub tls: Option<SocketAddr>,
    /// MQTT over WebSocket (8083, path `/mqtt` or any); `None` disables it.
    pub ws: Option<SocketAddr>,
    /// PEM certificate chain and key for the TLS listener. Without them a
    /// self-signed certificate for `localhost` is made in `tls_dir`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Where a self-signed development certificate is kept.
    pub tls_dir: PathBuf,
    /// Clients without a username may connect (the development default).
    pub allow_anonymous: bool,
    /// Largest packet accepted and announced in CONNACK (bytes).
    pub max_packet_size: usize,
    /// QoS 1/2 messages queued per session (offline, or beyond the client's
    /// receive maximum); more are dropped and counted.
    pub max_queued_messages: usize,
    /// In-flight QoS 1/2 PUBLISHes a client may send before waiting for
    /// acknowledgements (the server's receive maximum).
    pub receive_maximum: u16,
    /// Topic aliases a client may use toward the server.
    pub topic_alias_maximum: u16,
    /// Upper bound on a session's expiry interval; also the expiry of
    /// MQTT 3.1.1 persistent sessions (`None`: they never expire).
    pub max_session_expiry: Option<Duration>,
    /// Upper bound on keep-alive; a client asking for more (or 0) is told
    /// this one with Server Keep Alive (MQTT 5).
    pub max_keep_alive: u16,
    /// `(MQTT topic filter, log topic)` rules, first match wins.
    pub mappings: Vec<(String, String)>,
    /// The log topic for MQTT topics no rule matches.
    pub default_topic: String,
    /// Partitions of log topics the gateway creates.
    pub partitions: u32,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
}

impl MqttConfig {
    /// Every listener on its standard port on loopback, anonymous access on.
    pub fn new(tls_dir: impl Into<PathBuf>) -> MqttConfig {
        MqttConfig {
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            tls: Some(SocketAddr::from(([127, 0, 0, 1], 8883))),
            ws: Some(SocketAddr::from(([127, 0, 0, 1], 8083))),
            tls_cert: None,
            tls_key: None,
            tls_dir: tls_dir.into(),
            allow_anonymous: true,
            max_packet_size: 1 << 20,
            max_queued_messages: 1000,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_session_expiry: None,
            max_keep_alive: 65_535,
            mappings: Vec::new(),
            default_topic: "mqtt".into(),
            partitions: 4,
            connect_timeout: Duration::from_secs(10),
        }
    }
}
