//! The [`Gateway`] handle `fjord serve` holds: the listeners, the
//! supervisor that runs the `Engine` on the right node, admin access.
//!
//! # Where the gateway runs
//! On the leader of `__amqp_acks` (partition 0; on a node alone, that
//! node): it opens the topology and runs every queue's
//! cursor, and writes cursor states only while it leads that partition,
//! so a node that lost the gateway cannot undo its successor's
//! acknowledgements. Every node listens; a node that does not run the
//! gateway carries each client connection to the one that does over a
//! tunnel (see `fjord_broker`'s `open_tunnel`). When leadership moves (the
//! node failed, or handed it over), the old node closes its connections
//! (320 CONNECTION_FORCED) and stops its queues, and the new leader opens
//! the gateway from the log: clients reconnect, unacknowledged messages
//! come back redelivered, and acknowledged ones stay settled.
//!
//! # Concurrency
//! A supervisor task checks leadership every
//! `SUPERVISE_EVERY` and starts or stops the engine; connections read it
//! once, when they arrive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use fjord_broker::{Broker, Leader};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::admin::AdminError;
use crate::codec::reply;
use crate::config::AmqpConfig;
use crate::connection;
use crate::engine::Engine;
use crate::metrics::QueueFigures;
use crate::queue::ACKS_TOPIC;
use crate::{Error, Result};

/// The protocol name tunnels of this gateway carry.
const PROTOCOL: &str = "amqp";

/// How often a cluster node checks whether it should run the gateway.
const SUPERVISE_EVERY: Duration = Duration::from_millis(200);

/// How long a new cluster waits for every voter before creating the
/// gateway's topics.
const VOTERS_WAIT: Duration = Duration::from_secs(30);

/// What every node has: listeners, and the engine while the gateway runs
/// here.
struct Shared {
    broker: Broker,
    config: AmqpConfig,
    /// It has a listener: it may make the gateway's topics (a node
    /// without one only runs the gateway once they exist and it leads).
    listens: bool,
    /// The engine, while this node runs the gateway.
    active: watch::Sender<Option<Arc<Engine>>>,
    /// Connections carried to another node.
    tunnelled: AtomicI64,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Accepts connections until shutdown, over TLS when given an acceptor.
async fn accept(shared: Arc<Shared>, l: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = l.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let tls = tls.clone();
                let s = Arc::clone(&shared);
                shared.tracker.spawn(async move {
                    match tls {
                        None => take(s, stream).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(io) => take(s, io).await,
                            Err(e) => debug!("AMQP TLS handshake failed: {e}"),
                        },
                    }
                });
            }
            Err(e) => {
                warn!("AMQP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves a client here, or carries it to the node that runs the gateway.
async fn take<S>(shared: Arc<Shared>, mut io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let active = shared.active.borrow().clone();
    if let Some(engine) = active {
        let tracker = engine.tracker.clone();
        if !tracker.is_closed() {
            tracker.track_future(connection::serve(engine, io)).await;
            return;
        }
    }
    let opened = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        t = shared.broker.tunnels().open(PROTOCOL, ACKS_TOPIC, 0) => t,
    };
    let mut tunnel = match opened {
        Ok(t) => t,
        Err(e) => {
            // Like a node that is down: the client connects again.
            warn!("AMQP connection not carried to the gateway's node: {e}");
            return;
        }
    };
    shared.tunnelled.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        _ = shared.shutdown.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut io, &mut tunnel) => {}
    }
    shared.tunnelled.fetch_sub(1, Ordering::Relaxed);
}

/// Runs the gateway on this node while it leads `__amqp_acks`.
async fn supervise(weak: Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        if shared.shutdown.is_cancelled() {
            return;
        }
        supervise_once(&shared, VOTERS_WAIT).await;
        let stop = shared.shutdown.clone();
        drop(shared);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
        }
    }
}

/// One look at who should run the gateway: makes the gateway's topics if
/// nobody has (a node with a listener, waiting at most `voters_wait` for
/// every voter), then starts the gateway here if this node leads
/// `__amqp_acks`, or stops it if it no longer does.
async fn supervise_once(shared: &Shared, voters_wait: Duration) {
    if shared.listens && shared.broker.admin().partition_count(ACKS_TOPIC).is_err() {
        // With every voter live the topics get their full replication
        // factor (or after a while, with what there is).
        if !shared.broker.admin().wait_for_voters(voters_wait).await && !voters_wait.is_zero() {
            warn!(
                "not every cluster node is live: AMQP topics created now may have fewer replicas"
            );
        }
        if let Err(e) = crate::engine::ensure_topics(&shared.broker).await {
            debug!("AMQP topics not created yet: {e}");
        }
    }
    let leads = shared.broker.leader_of(ACKS_TOPIC, 0) == Leader::Here;
    let running = shared.active.borrow().clone();
    match (leads, running) {
        (true, None) => match Engine::open(shared.broker.clone(), shared.config.clone()).await {
            Ok(engine) => {
                let still = shared.broker.leader_of(ACKS_TOPIC, 0) == Leader::Here;
                if still && !shared.shutdown.is_cancelled() {
                    info!("this node runs the AMQP gateway");
                    shared.active.send_replace(Some(engine));
                } else {
                    engine.stop().await;
                }
            }
            Err(e) => debug!("AMQP gateway not opened yet: {e}"),
        },
        (false, Some(engine)) => {
            let to = shared.broker.leader_of(ACKS_TOPIC, 0);
            info!(?to, "the AMQP gateway moves to another node");
            shared.active.send_replace(None);
            engine.stop().await;
        }
        _ => {}
    }
}

/// The running AMQP gateway.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
}

impl Gateway {
    /// Binds the listeners and serves. The node that leads `__amqp_acks`
    /// opens the topology and restores the durable queues: on return when
    /// it can at once (a node alone), else in the background.
    ///
    /// # Errors
    /// A listener cannot be bound.
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
        let shared = Arc::new(Shared {
            broker: broker.clone(),
            config: config.clone(),
            listens: listener.is_some() || tls.is_some(),
            active: watch::Sender::new(None),
            tunnelled: AtomicI64::new(0),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let weak = Arc::downgrade(&shared);
        broker.tunnels().set_acceptor(
            PROTOCOL,
            Some(Arc::new(move |io| {
                let active = weak.upgrade().and_then(|s| s.active.borrow().clone());
                let engine = active.ok_or("the AMQP gateway does not run on this node now")?;
                let tracker = engine.tracker.clone();
                if tracker.is_closed() {
                    return Err("the AMQP gateway is stopping on this node".to_string());
                }
                tracker.spawn(connection::serve(engine, io));
                Ok(())
            })),
        );
        // A first look now: a node that can run the gateway at once (alone,
        // or leading) serves when this returns.
        supervise_once(&shared, Duration::ZERO).await;
        shared.tracker.spawn(supervise(Arc::downgrade(&shared)));
        let addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let tls_addr = tls.as_ref().and_then(|(l, _)| l.local_addr().ok());
        if let Some(l) = listener {
            shared.tracker.spawn(accept(Arc::clone(&shared), l, None));
        }
        if let Some((l, acceptor)) = tls {
            shared
                .tracker
                .spawn(accept(Arc::clone(&shared), l, Some(acceptor)));
        }
        info!(tcp = ?addr, tls = ?tls_addr, "AMQP gateway listening");
        Ok(Gateway {
            shared,
            addr,
            tls_addr,
        })
    }

    /// The engine, while the gateway runs on this node.
    pub(crate) fn active(&self) -> Result<Arc<Engine>, AdminError> {
        self.shared
            .active
            .borrow()
            .clone()
            .ok_or_else(|| AdminError {
                code: reply::CONNECTION_FORCED,
                text: self.elsewhere(),
            })
    }

    /// True while this node runs the gateway (topology and queues).
    pub fn runs_here(&self) -> bool {
        self.shared.active.borrow().is_some()
    }

    /// The node (id, gRPC address) that runs the gateway, when another one
    /// does.
    pub fn runs_on(&self) -> Option<(u64, String)> {
        match self.shared.broker.leader_of(ACKS_TOPIC, 0) {
            Leader::Node(id, addr) => Some((id, addr)),
            Leader::Here | Leader::Unknown => None,
        }
    }

    /// Why this node cannot answer for the gateway, in words.
    pub fn elsewhere(&self) -> String {
        match self.runs_on() {
            Some((id, addr)) => {
                format!("the AMQP gateway runs on node {id} ({addr}), not on this node")
            }
            None if !self.shared.listens && !self.topics_exist() =>
            {
                "the AMQP gateway is off on this node (--amqp-listen off, --amqp-tls-listen off) and no node of its cluster runs it".to_string()
            }
            None if !self.topics_exist() => {
                "no node runs the AMQP gateway yet (it starts once a node with an AMQP listener has made its topics)".to_string()
            }
            None => "the AMQP gateway is starting on this node (its cluster is electing the leader of __amqp_acks)".to_string(),
        }
    }

    fn topics_exist(&self) -> bool {
        self.shared
            .broker
            .admin()
            .partition_count(ACKS_TOPIC)
            .is_ok()
    }

    /// The bound TLS listener address.
    pub fn tls_listener(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The bound listener address.
    pub fn listener(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The gateway's metrics in Prometheus text format, per queue too
    /// (queues only where the gateway runs).
    pub async fn render_metrics(&self) -> String {
        let name = "fjord_amqp_serving";
        let mut out = format!(
            "# HELP {name} 1 when this node runs the AMQP gateway (topology and queues).\n# TYPE {name} gauge\n{name} {}\n",
            u8::from(self.runs_here())
        );
        let name = "fjord_amqp_tunnelled_connections";
        out.push_str(&format!(
            "# HELP {name} AMQP connections this node carries to the node that runs the gateway.\n# TYPE {name} gauge\n{name} {}\n",
            self.shared.tunnelled.load(Ordering::Relaxed)
        ));
        let Ok(engine) = self.active() else {
            return out;
        };
        let queues: Vec<QueueFigures> = engine
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
                published: q.stats.published.load(Ordering::Relaxed),
            })
            .collect();
        out.push_str(&engine.metrics.render(&queues));
        out
    }

    /// Closes every connection (320 CONNECTION_FORCED), stores the queues'
    /// cursors and waits for them.
    pub async fn shutdown(&self) {
        self.shared.broker.tunnels().set_acceptor(PROTOCOL, None);
        self.shared.shutdown.cancel();
        if let Some(engine) = self.shared.active.send_replace(None) {
            engine.stop().await;
        }
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}
