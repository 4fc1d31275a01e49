//! The [`Gateway`] handle `fjord serve` holds, and its listeners: MQTT
//! over TCP, over TLS (rustls) and over WebSocket.
//!
//! # Concurrency
//! The listeners are bound before [`Gateway::start`] returns; one accept
//! task per listener runs under the [`Hub`]'s tracker once the hub is
//! open (in the background: its topics need the cluster's leaders), and
//! every connection gets a task of its own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use fjord_broker::Broker;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::MqttConfig;
use crate::connection;
use crate::hub::Hub;
use crate::{Error, Result};

/// The addresses the gateway's listeners bound.
#[derive(Debug, Clone, Default)]
pub struct MqttListeners {
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    pub ws: Option<SocketAddr>,
}

/// The running MQTT gateway.
#[derive(Clone)]
pub struct Gateway {
    /// Set once the gateway's state is open.
    hub: Arc<OnceLock<Arc<Hub>>>,
    /// Stops a gateway still opening.
    opening: CancellationToken,
    opener: TaskTracker,
    listeners: MqttListeners,
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Io {
        what: format!("bind the {what} listener on {addr}"),
        source,
    })
}

/// The bound listeners, served once the gateway is open.
struct Bound {
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, TlsAcceptor)>,
    ws: Option<TcpListener>,
}

impl Gateway {
    /// Binds every configured listener, creates the gateway's topics if
    /// needed, restores sessions and retained messages, and serves.
    ///
    /// The listeners are bound on return and the rest goes on in the
    /// background (the gateway's topics need the cluster's quorum and
    /// leaders); clients that connect meanwhile wait for their CONNACK.
    ///
    /// # Errors
    /// A listener cannot be bound, or the TLS certificate cannot be read
    /// or made.
    pub async fn start(broker: Broker, config: MqttConfig) -> Result<Gateway> {
        let bound = Bound {
            tcp: match config.tcp {
                Some(a) => Some(bind("MQTT", a).await?),
                None => None,
            },
            tls: match config.tls {
                Some(a) => Some((bind("MQTT TLS", a).await?, tls_acceptor(&config)?)),
                None => None,
            },
            ws: match config.ws {
                Some(a) => Some(bind("MQTT WebSocket", a).await?),
                None => None,
            },
        };
        let addr = |l: &TcpListener| l.local_addr().ok();
        let listeners = MqttListeners {
            tcp: bound.tcp.as_ref().and_then(addr),
            tls: bound.tls.as_ref().and_then(|(l, _)| addr(l)),
            ws: bound.ws.as_ref().and_then(addr),
        };
        let gateway = Gateway {
            hub: Arc::new(OnceLock::new()),
            opening: CancellationToken::new(),
            opener: TaskTracker::new(),
            listeners,
        };
        let cell = Arc::clone(&gateway.hub);
        let stop = gateway.opening.clone();
        gateway.opener.spawn(async move {
            loop {
                let opened = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = Hub::open(broker.clone(), config.clone()) => r,
                };
                match opened {
                    Ok(hub) => {
                        serve(&hub, bound);
                        let _ = cell.set(hub);
                        return;
                    }
                    Err(e) => warn!("MQTT gateway not open yet, retrying: {e}"),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        });
        info!(
            tcp = ?gateway.listeners.tcp,
            tls = ?gateway.listeners.tls,
            ws = ?gateway.listeners.ws,
            "MQTT gateway listening"
        );
        Ok(gateway)
    }

    /// The bound listener addresses.
    pub fn listeners(&self) -> &MqttListeners {
        &self.listeners
    }

    /// The gateway's metrics in Prometheus text format (none while it
    /// opens).
    pub fn render_metrics(&self) -> String {
        self.hub
            .get()
            .map(|i| i.metrics.render())
            .unwrap_or_default()
    }

    /// Tells clients the server is going away, then waits for their
    /// sessions to be stored.
    pub async fn shutdown(&self) {
        self.opening.cancel();
        self.opener.close();
        self.opener.wait().await;
        if let Some(hub) = self.hub.get() {
            hub.shutdown.cancel();
            hub.tracker.close();
            hub.tracker.wait().await;
        }
    }
}

/// Starts accepting on every bound listener.
fn serve(hub: &Arc<Hub>, bound: Bound) {
    if let Some(l) = bound.tcp {
        let gw = Arc::clone(hub);
        hub.tracker.spawn(accept(gw, l, |gw, s| async move {
            connection::serve(gw, s).await;
        }));
    }
    if let Some((l, acceptor)) = bound.tls {
        let gw = Arc::clone(hub);
        hub.tracker.spawn(accept(gw, l, move |gw, s| {
            let acceptor = acceptor.clone();
            async move {
                match acceptor.accept(s).await {
                    Ok(tls) => connection::serve(gw, tls).await,
                    Err(e) => debug!("TLS handshake failed: {e}"),
                }
            }
        }));
    }
    if let Some(l) = bound.ws {
        let gw = Arc::clone(hub);
        hub.tracker.spawn(accept(gw, l, |gw, s| async move {
            crate::websocket::serve(gw, s).await;
        }));
    }
}

async fn accept<F, Fut>(gw: Arc<Hub>, listener: TcpListener, handle: F)
where
    F: Fn(Arc<Hub>, TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = gw.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                gw.tracker.spawn(handle(Arc::clone(&gw), stream));
            }
            Err(e) => {
                warn!("MQTT accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn tls_acceptor(config: &MqttConfig) -> Result<TlsAcceptor> {
    tls_acceptor_for(
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        &config.tls_dir,
        "mqtt",
    )
}

/// A TLS acceptor (rustls, ring) for the PEM certificate chain and key
/// given, or without them for a self-signed `localhost` development
/// certificate kept as `{name}-dev-cert.pem`/`{name}-dev-key.pem` in
/// `dev_dir`. The other gateways' TLS listeners use it too.
///
/// # Errors
/// Only one of certificate and key given; unreadable or invalid files.
pub fn tls_acceptor_for(
    cert: Option<&Path>,
    key: Option<&Path>,
    dev_dir: &Path,
    name: &str,
) -> Result<TlsAcceptor> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        (None, None) => self_signed(dev_dir, name)?,
        _ => {
            return Err(Error::Tls(
                "give both a TLS certificate and its key, or neither".into(),
            ));
        }
    };
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| Error::Io {
            what: format!("read {}", p.display()),
            source,
        })
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(&cert_path)?.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificate",
            cert_path.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut read(&key_path)?.as_slice())
        .map_err(|e| Error::Tls(format!("{}: {e}", key_path.display())))?
        .ok_or_else(|| Error::Tls(format!("{}: no private key", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// A development certificate for `localhost`, made once in `dir`.
fn self_signed(dir: &Path, name: &str) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let cert = dir.join(format!("{name}-dev-cert.pem"));
    let key = dir.join(format!("{name}-dev-key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| Error::Tls(format!("making a development certificate: {e}")))?;
    let write = |p: &Path, text: String| {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(p, text))
            .map_err(|source| Error::Io {
                what: format!("write {}", p.display()),
                source,
            })
    };
    write(&cert, made.cert.pem())?;
    write(&key, made.key_pair.serialize_pem())?;
    info!(cert = %cert.display(), "made a self-signed development certificate");
    Ok((cert, key))
}
