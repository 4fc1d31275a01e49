//! The HTTP listener: `/metrics` (Prometheus text), `/health` (the process
//! is up) and `/ready` (the broker is open and serving; 503 while stopping
//! and, in a cluster, while the metadata quorum has no leader this node can
//! reach).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::{Arc, OnceLock};

use fjord_broker::Broker;
use fjord_gateway_mqtt::Gateway;

/// What the routes read: the broker, and the MQTT gateway once started.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) broker: Broker,
    pub(crate) mqtt: Arc<OnceLock<Gateway>>,
    pub(crate) amqp: Arc<OnceLock<fjord_gateway_amqp::Gateway>>,
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let mut body = state.broker.render_metrics();
    if let Some(amqp) = state.amqp.get() {
        body.push_str(&amqp.render_metrics().await);
    }
    if let Some(mqtt) = state.mqtt.get() {
        body.push_str(&mqtt.render_metrics());
    }
    if let Some(rss) = resident_bytes() {
        body.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n");
        body.push_str("# TYPE process_resident_memory_bytes gauge\n");
        body.push_str(&format!("process_resident_memory_bytes {rss}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, String) {
    match state.broker.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kib| kib * 1024)
}

/// The HTTP routes.
pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state)
}
