//! `fjord serve`: bind every listener, open the broker, announce the bound
//! addresses in `<data-dir>/listeners.json`, serve until SIGTERM or Ctrl-C,
//! then stop listeners and flush.
//!
//! `listeners.json` is written (atomically) only once the broker is open and
//! every listener accepts connections: scripts and tests wait for it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use std::sync::{Arc, OnceLock};

use fjord_broker::{Broker, serve_grpc};
use fjord_gateway_amqp::Gateway as AmqpGateway;
use fjord_gateway_mqtt::Gateway;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::http;

/// The bound addresses, as written to `listeners.json`.
#[derive(Debug, Serialize)]
struct Listeners {
    /// The server's process id, so a reader can tell a stale file.
    pid: u32,
    node_id: u32,
    cluster_id: String,
    grpc: SocketAddr,
    http: SocketAddr,
    /// MQTT listeners; absent when disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    mqtt: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mqtt_tls: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mqtt_ws: Option<SocketAddr>,
    /// The AMQP listeners; absent when disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    amqp: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amqp_tls: Option<SocketAddr>,
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the {what} listener on {addr}"))
}

fn write_listeners(data_dir: &Path, listeners: &Listeners) -> Result<()> {
    let path = data_dir.join("listeners.json");
    let tmp = data_dir.join("listeners.json.tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec_pretty(listeners)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!("cannot listen for SIGTERM: {e}");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs the server until a shutdown signal.
///
/// # Errors
/// A listener cannot be bound, the data directory cannot be opened, or a
/// listener fails while serving.
pub(crate) async fn run(config: ServerConfig) -> Result<()> {
    let grpc = bind("gRPC", config.grpc_listen).await?;
    let http = bind("HTTP", config.http_listen).await?;
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    // Remove a stale announcement before anything else: it must describe us.
    let _ = std::fs::remove_file(config.data_dir.join("listeners.json"));
    let broker = Broker::open(config.broker_config(grpc_addr))
        .await
        .with_context(|| format!("open data directory {}", config.data_dir.display()))?;

    let stop = CancellationToken::new();
    let grpc_stop = stop.clone();
    // The AMQP admin service answers once the gateway below has started.
    let amqp_admin = crate::amqp_admin::GatewayCell::default();
    let grpc_task = tokio::spawn(serve_grpc(
        broker.clone(),
        grpc,
        crate::amqp_admin::routes(Arc::clone(&amqp_admin)),
        async move { grpc_stop.cancelled().await },
    ));
    let http_stop = stop.clone();
    let mqtt_cell = Arc::new(OnceLock::new());
    let amqp_cell = Arc::new(OnceLock::new());
    let app = http::router(http::HttpState {
        broker: broker.clone(),
        mqtt: Arc::clone(&mqtt_cell),
        amqp: Arc::clone(&amqp_cell),
    });
    let http_task = tokio::spawn(async move {
        axum::serve(http, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
    });
    // Form or join the cluster now that the Raft RPCs are served.
    if let Err(e) = broker.start().await {
        broker.shutdown().await;
        stop.cancel();
        return Err(e).context("cluster start failed");
    }

    // The MQTT gateway, unless every MQTT listener is off; in a cluster it
    // runs on every node and reaches any partition's leader.
    let m = &config.mqtt;
    let wanted = m.tcp.is_some() || m.tls.is_some() || m.ws.is_some();
    let mqtt = if wanted {
        match Gateway::start(broker.clone(), config.mqtt.clone()).await {
            Ok(g) => Some(g),
            Err(e) => {
                broker.shutdown().await;
                stop.cancel();
                return Err(e).context("MQTT gateway start failed");
            }
        }
    } else {
        None
    };
    // The AMQP gateway: listening on every node; in a cluster the leader of
    // its `__amqp_acks` partition runs it and the others carry their
    // connections there.
    let mut amqp_config = config.amqp.clone();
    if let Some((addr, cert, key)) = &config.amqp_tls {
        let made = fjord_gateway_mqtt::tls_acceptor_for(
            cert.as_deref(),
            key.as_deref(),
            &config.data_dir.join("amqp"),
            "amqp",
        );
        match made {
            Ok(acceptor) => amqp_config.tls = Some((*addr, fjord_gateway_amqp::Tls(acceptor))),
            Err(e) => {
                if let Some(g) = &mqtt {
                    g.shutdown().await;
                }
                broker.shutdown().await;
                stop.cancel();
                return Err(e).context("AMQP over TLS: certificate");
            }
        }
    }
    // Every node runs the AMQP gateway: a node without AMQP listeners runs
    // it while it leads `__amqp_acks` (the other nodes carry their clients
    // to it); where no node listens for AMQP, nothing makes that topic and
    // the gateway stays idle.
    let amqp = match AmqpGateway::start(broker.clone(), amqp_config).await {
        Ok(g) => Some(g),
        Err(e) => {
            if let Some(g) = &mqtt {
                g.shutdown().await;
            }
            broker.shutdown().await;
            stop.cancel();
            return Err(e).context("AMQP gateway start failed");
        }
    };
    if let Some(g) = &amqp {
        let _ = amqp_cell.set(g.clone());
    }
    let _ = amqp_admin.set(match &amqp {
        Some(g) => Ok(g.clone()),
        None => Err(
            "the AMQP gateway is off on this node (--amqp-listen off, --amqp-tls-listen off)"
                .to_string(),
        ),
    });
    let bound = mqtt
        .as_ref()
        .map(|g| g.listeners().clone())
        .unwrap_or_default();
    if let Some(g) = &mqtt {
        let _ = mqtt_cell.set(g.clone());
    }
    write_listeners(
        &config.data_dir,
        &Listeners {
            pid: std::process::id(),
            node_id: config.node_id,
            cluster_id: broker.cluster_id(),
            grpc: grpc_addr,
            http: http_addr,
            mqtt: bound.tcp,
            mqtt_tls: bound.tls,
            mqtt_ws: bound.ws,
            amqp: amqp.as_ref().and_then(AmqpGateway::listener),
            amqp_tls: amqp.as_ref().and_then(AmqpGateway::tls_listener),
        },
    )?;
    info!(grpc = %grpc_addr, http = %http_addr, data_dir = %config.data_dir.display(), "fjord is serving");

    let mut grpc_task = grpc_task;
    let early = tokio::select! {
        _ = shutdown_signal() => {
            info!("shutdown requested");
            None
        }
        done = &mut grpc_task => Some(done),
    };
    if let Some(g) = &mqtt {
        g.shutdown().await;
    }
    if let Some(g) = &amqp {
        g.shutdown().await;
    }
    if let Some(done) = early {
        broker.shutdown().await;
        return match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e).context("gRPC listener failed"),
            Err(e) => Err(e).context("gRPC task failed"),
        };
    }
    // Stop taking requests, then flush.
    let _ = std::fs::remove_file(config.data_dir.join("listeners.json"));
    broker.shutdown().await;
    stop.cancel();
    match grpc_task.await {
        Ok(Err(e)) => warn!("gRPC listener: {e}"),
        Err(e) => warn!("gRPC task: {e}"),
        Ok(Ok(())) => {}
    }
    match http_task.await {
        Ok(Err(e)) => warn!("HTTP listener: {e}"),
        Err(e) => warn!("HTTP task: {e}"),
        Ok(Ok(())) => {}
    }
    info!("fjord stopped");
    Ok(())
}
