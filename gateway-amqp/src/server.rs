//! The listener and the [`Gateway`] handle `fjord serve` holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fjord_broker::Broker;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::AmqpConfig;
use crate::connection;
use crate::gateway::Inner;
use crate::metrics::QueueFigures;
use crate::{Error, Result};

/// Accepts connections until shutdown, over TLS when given an acceptor.
async fn accept(gw: Arc<Inner>, l: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let accepted = tokio::select! {
            _ = gw.shutdown.cancelled() => return,
            a = l.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let gw = Arc::clone(&gw);
                let tls = tls.clone();
                gw.tracker.clone().spawn(async move {
                    match tls {
                        None => connection::serve(gw, stream).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => connection::serve(gw, s).await,
                            Err(e) => debug!("AMQP TLS handshake failed: {e}"),
                        },
                    }
                });
            }
            Err(e) => {
                warn!("AMQP accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The running AMQP gateway.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
    addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
}

impl Gateway {
    /// Opens the topology, restores the durable queues, binds the listener
    /// and serves.
    ///
    /// # Errors
    /// The listener cannot be bound, or the broker refuses the gateway's
    /// topics.
    pub async fn start(broker: Broker, config: AmqpConfig) -> Result<Gateway> {
        let listener = match config.tcp {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|source| Error::Io {
                what: format!("bind the AMQP listener on {a}"),
                source,
            })?),
            None => None,
        };
        let tls = match &config.tls {
            Some((a, tls)) => Some((
                TcpListener::bind(a).await.map_err(|source| Error::Io {
                    what: format!("bind the AMQP TLS listener on {a}"),
                    source,
                })?,
                tls.0.clone(),
            )),
            None => None,
        };
        let inner = Inner::open(broker, config).await?;
        let addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let tls_addr = tls.as_ref().and_then(|(l, _)| l.local_addr().ok());
        if let Some(l) = listener {
            inner.tracker.spawn(accept(Arc::clone(&inner), l, None));
        }
        if let Some((l, acceptor)) = tls {
            inner
                .tracker
                .spawn(accept(Arc::clone(&inner), l, Some(acceptor)));
        }
        info!(tcp = ?addr, tls = ?tls_addr, "AMQP gateway listening");
        Ok(Gateway {
            inner,
            addr,
            tls_addr,
        })
    }

    /// The bound TLS listener address.
    pub fn tls_listener(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The bound listener address.
    pub fn listener(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The gateway's metrics in Prometheus text format, per queue too.
    pub async fn render_metrics(&self) -> String {
        let queues: Vec<QueueFigures> = self
            .inner
            .all_queues()
            .await
            .into_iter()
            .map(|(vhost, name, q)| QueueFigures {
                vhost,
                name,
                ready: q.stats.ready.load(Ordering::Relaxed),
                unacked: q.stats.unacked.load(Ordering::Relaxed),
                consumers: q.stats.consumers.load(Ordering::Relaxed),
                delivered: q.stats.delivered.load(Ordering::Relaxed),
                acked: q.stats.acked.load(Ordering::Relaxed),
            })
            .collect();
        self.inner.metrics.render(&queues)
    }

    /// Closes every connection (320 CONNECTION_FORCED) and waits for them.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}
