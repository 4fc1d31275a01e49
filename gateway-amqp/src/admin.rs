//! The operator's view of the topology: list, declare and delete vhosts,
//! exchanges, queues and bindings (what `fjord amqp` does over gRPC).
//!
//! Exchanges, queues and bindings change through the same operations as the
//! AMQP methods, so they are stored and refused alike; a refusal is an
//! [`AdminError`] with the AMQP reply code and text. Operations act as no
//! connection: they cannot use another connection's exclusive queue (405),
//! but a delete removes it.
//!
//! # Format
//! A vhost is the record `v␁name` of `__amqp_meta` (see `topology.rs`).
//! Argument values arrive as text and become field values by key
//! ([`argument_value`]); listings render them back as text.
//!
//! # Invariants
//! `Topology::vhosts` and the routing table hold the same vhosts. A vhost is
//! deleted last, after its queues and with its exchanges and bindings in one
//! step under the topology lock, so a crash midway leaves it existing with
//! fewer queues and bindings. "/" may be deleted; it comes back, empty, on restart.
//!
//! # Concurrency
//! Any task; changes take the topology lock as the AMQP methods do.

use crate::codec::{FieldTable, FieldValue, reply};
use crate::engine::Engine;
use crate::gateway::Gateway;
use crate::refusal::{Answer, Refusal};
use crate::routing::{Destination, ExchangeKind, RoutingError};
use crate::topology::{Change, Topology};

/// Stands for "no connection" where the gateway checks exclusive ownership
/// (connection ids start at 1).
const NO_CONNECTION: u64 = 0;

/// Rounds of queue deletion before a vhost delete gives up (clients keep
/// declaring queues in it).
const DELETE_ROUNDS: usize = 10;

/// Queue arguments whose values are integers.
const INTEGER_ARGS: &[&str] = &[
    "x-message-ttl",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-delivery-limit",
];

/// Arguments whose values are strings, even when they look like numbers.
const STRING_ARGS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-queue-type",
    "x-queue-mode",
    "x-overflow",
    "x-match",
    "alternate-exchange",
];

/// A refused admin operation, in AMQP's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct AdminError {
    /// The AMQP reply code (404 NOT_FOUND, 406 PRECONDITION_FAILED, ...),
    /// which the caller maps to its own protocol's codes.
    pub code: u16,
    /// The reply text, as an AMQP client would get it.
    pub text: String,
}

impl From<Refusal> for AdminError {
    fn from(r: Refusal) -> AdminError {
        AdminError {
            code: r.code,
            text: r.text,
        }
    }
}

impl From<RoutingError> for AdminError {
    fn from(e: RoutingError) -> AdminError {
        Refusal::from(e).into()
    }
}

/// A vhost and how much it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostInfo {
    pub name: String,
    /// Its exchanges, the pre-declared ones included.
    pub exchanges: usize,
    pub queues: usize,
}

/// An exchange as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeInfo {
    /// `""` is the default exchange.
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    /// Arguments with their values as text (`alternate-exchange` among
    /// them).
    pub arguments: Vec<(String, String)>,
}

/// What to declare an exchange as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// `direct`, `fanout`, `topic` or `headers`; anything else is refused
    /// (503).
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    /// Where messages that no binding matches go.
    pub alternate_exchange: Option<String>,
}

/// A queue as listed, with its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub name: String,
    pub durable: bool,
    /// Owned by one connection.
    pub exclusive: bool,
    pub auto_delete: bool,
    /// Messages waiting for a consumer.
    pub ready: u64,
    /// Messages delivered and not acknowledged yet.
    pub unacked: u64,
    pub consumers: u64,
    /// Arguments with their values as text.
    pub arguments: Vec<(String, String)>,
}

/// What to declare a queue as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSpec {
    pub durable: bool,
    pub auto_delete: bool,
    /// Arguments with their values as text, typed by [`argument_value`].
    pub arguments: Vec<(String, String)>,
}

/// A binding, as listed and as given to [`Gateway::bind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingInfo {
    /// The source exchange.
    pub source: String,
    pub destination: Destination,
    pub routing_key: String,
    /// Arguments with their values as text, typed by [`argument_value`].
    pub arguments: Vec<(String, String)>,
}

/// The field value for argument `key` given as `text`: a string for the
/// arguments that are strings (`x-dead-letter-exchange`, ...); otherwise an
/// integer when `text` is one (32 bits when it fits, as most clients send
/// it); `true`/`false` as booleans for unknown keys; else a string. A
/// non-integer for an integer argument stays a string, which the queue
/// declaration refuses (406) as it would from a client.
pub fn argument_value(key: &str, text: &str) -> FieldValue {
    if STRING_ARGS.contains(&key) {
        return FieldValue::LongString(text.as_bytes().to_vec().into());
    }
    if let Ok(n) = text.parse::<i64>() {
        return i32::try_from(n).map_or(FieldValue::I64(n), FieldValue::I32);
    }
    match text {
        "true" if !INTEGER_ARGS.contains(&key) => FieldValue::Bool(true),
        "false" if !INTEGER_ARGS.contains(&key) => FieldValue::Bool(false),
        _ => FieldValue::LongString(text.as_bytes().to_vec().into()),
    }
}

/// A field value as text, for listings.
fn value_text(v: &FieldValue) -> String {
    if let Some(n) = crate::topology::as_int(v) {
        return n.to_string();
    }
    match v {
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::F32(f) => f.to_string(),
        FieldValue::F64(f) => f.to_string(),
        FieldValue::Timestamp(t) => t.to_string(),
        FieldValue::LongString(b) => String::from_utf8_lossy(b).into_owned(),
        FieldValue::Void => String::new(),
        other => format!("{other:?}"),
    }
}

fn arguments_text(entries: &[(String, FieldValue)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(k, v)| (k.clone(), value_text(v)))
        .collect()
}

fn arguments_table(arguments: &[(String, String)]) -> FieldTable {
    arguments
        .iter()
        .map(|(k, v)| (k.clone(), argument_value(k, v)))
        .collect()
}

/// Refuses a name that is too long for AMQP (255 bytes) or holds control
/// characters (U+0001 separates names in stored keys); `empty` says
/// whether an empty one is fine.
fn check_name(what: &str, name: &str, empty: bool) -> Answer<()> {
    let why = if name.is_empty() && !empty {
        "must not be empty"
    } else if name.len() > 255 {
        "is longer than 255 bytes"
    } else if name.chars().any(char::is_control) {
        "contains control characters"
    } else {
        return Ok(());
    };
    Err(Refusal::new(
        reply::SYNTAX_ERROR,
        format!("SYNTAX_ERROR - {what} name '{}' {why}", name.escape_debug()),
    ))
}

fn vhost_not_found(vhost: &str) -> Refusal {
    RoutingError::VhostNotFound {
        vhost: vhost.to_owned(),
    }
    .into()
}

fn check_vhost(t: &Topology, vhost: &str) -> Answer<()> {
    if t.exchanges.has_vhost(vhost) {
        Ok(())
    } else {
        Err(vhost_not_found(vhost))
    }
}

/// Whether a binding of `vhost` was stored (durable source and destination),
/// as `Engine::bind` decides.
fn stored_binding(t: &Topology, vhost: &str, source: &str, destination: &Destination) -> bool {
    let durable_source = t
        .exchanges
        .exchange(vhost, source)
        .is_some_and(|d| d.durable);
    durable_source
        && match destination {
            Destination::Queue(q) => t
                .queues
                .get(&(vhost.to_string(), q.clone()))
                .is_some_and(|d| d.durable && d.exclusive.is_none()),
            Destination::Exchange(e) => t.exchanges.exchange(vhost, e).is_some_and(|d| d.durable),
        }
}

impl Engine {
    async fn declare_vhost(&self, name: &str) -> Answer<bool> {
        check_name("vhost", name, false)?;
        let mut t = self.topology.lock().await;
        if t.exchanges.has_vhost(name) {
            return Ok(false);
        }
        let change = Change::Vhost {
            name,
            present: true,
        };
        crate::topology::write(&self.broker, change).await?;
        t.exchanges.add_vhost(name);
        t.vhosts.insert(name.to_string());
        Ok(true)
    }

    /// Deletes vhost `name`: its queues one by one (as `queue.delete`
    /// would), then, once none is left, its exchanges, remaining bindings
    /// and itself in one step. Returns how many queues were deleted.
    async fn delete_vhost(&self, name: &str) -> Answer<u32> {
        let mut deleted = 0;
        for _ in 0..DELETE_ROUNDS {
            let mut t = self.topology.lock().await;
            check_vhost(&t, name)?;
            // Queue deletion does not remove the stored bindings to the
            // queue: remove them first, so a later vhost of the same name
            // does not get them back on restart.
            self.forget_bindings(&t, name).await?;
            let queues: Vec<String> = t
                .queues
                .keys()
                .filter(|(v, _)| v == name)
                .map(|(_, q)| q.clone())
                .collect();
            if queues.is_empty() {
                let exchanges: Vec<String> = t
                    .exchanges
                    .exchanges(name)
                    .filter(|(x, d)| d.durable && !x.is_empty() && !x.starts_with("amq."))
                    .map(|(x, _)| x.to_string())
                    .collect();
                for x in &exchanges {
                    let change = Change::Exchange {
                        vhost: name,
                        name: x,
                        decl: None,
                    };
                    crate::topology::write(&self.broker, change).await?;
                }
                let change = Change::Vhost {
                    name,
                    present: false,
                };
                crate::topology::write(&self.broker, change).await?;
                t.exchanges.delete_vhost(name);
                t.vhosts.remove(name);
                let _ = self.vhost_deleted.send(name.to_string());
                return Ok(deleted);
            }
            drop(t);
            for q in queues {
                self.delete_queue(name, &q, false, false, None).await?;
                deleted += 1;
            }
        }
        Err(Refusal::new(
            reply::PRECONDITION_FAILED,
            format!("PRECONDITION_FAILED - vhost '{name}' keeps getting new queues; try again"),
        ))
    }

    /// Writes the deletion of every stored binding of `vhost`.
    async fn forget_bindings(&self, t: &Topology, vhost: &str) -> Answer<()> {
        for (source, _) in t.exchanges.exchanges(vhost) {
            for b in t.exchanges.bindings(vhost, source) {
                if !stored_binding(t, vhost, source, b.destination) {
                    continue;
                }
                let change = Change::Binding {
                    vhost,
                    source,
                    destination: b.destination,
                    routing_key: b.routing_key,
                    arguments: b.arguments,
                    present: false,
                };
                crate::topology::write(&self.broker, change).await?;
            }
        }
        Ok(())
    }
}

impl Gateway {
    /// Every vhost, by name.
    ///
    /// # Errors
    /// This node does not run the gateway now (320).
    pub async fn vhosts(&self) -> Result<Vec<VhostInfo>, AdminError> {
        let inner = self.active()?;
        let t = inner.topology.lock().await;
        Ok(t.vhosts
            .iter()
            .map(|v| VhostInfo {
                name: v.clone(),
                exchanges: t.exchanges.exchanges(v).count(),
                queues: t.queues.keys().filter(|(qv, _)| qv == v).count(),
            })
            .collect())
    }

    /// Creates vhost `name` with its pre-declared exchanges, stored before
    /// this returns; false when it existed (nothing changes).
    ///
    /// # Errors
    /// A bad name (502), or the record could not be stored (541).
    pub async fn declare_vhost(&self, name: &str) -> Result<bool, AdminError> {
        let inner = self.active()?;
        Ok(inner.declare_vhost(name).await?)
    }

    /// Deletes vhost `name` with its queues (and their messages),
    /// exchanges and bindings; returns how many queues went. Connections
    /// open on it are refused (530) at their next topology operation.
    ///
    /// # Errors
    /// No such vhost (530), or a deletion could not be stored (541).
    pub async fn delete_vhost(&self, name: &str) -> Result<u32, AdminError> {
        let inner = self.active()?;
        Ok(inner.delete_vhost(name).await?)
    }

    /// The exchanges of `vhost`, by name.
    ///
    /// # Errors
    /// No such vhost (530).
    pub async fn exchanges(&self, vhost: &str) -> Result<Vec<ExchangeInfo>, AdminError> {
        let inner = self.active()?;
        let t = inner.topology.lock().await;
        check_vhost(&t, vhost)?;
        let mut list: Vec<ExchangeInfo> = t
            .exchanges
            .exchanges(vhost)
            .map(|(name, d)| ExchangeInfo {
                name: name.to_string(),
                kind: d.kind,
                durable: d.durable,
                auto_delete: d.auto_delete,
                internal: d.internal,
                arguments: arguments_text(&d.arguments),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// `exchange.declare` (not passive) of exchange `name`.
    ///
    /// # Errors
    /// As `exchange.declare`: unknown type (503), reserved or default name
    /// (403), inequivalent redeclaration (406), no such vhost (530); a bad
    /// name (502).
    pub async fn declare_exchange(
        &self,
        vhost: &str,
        name: &str,
        spec: &ExchangeSpec,
    ) -> Result<(), AdminError> {
        let inner = self.active()?;
        check_name("exchange", name, true)?;
        let mut arguments = FieldTable::new();
        if let Some(alternate) = &spec.alternate_exchange {
            check_name("exchange", alternate, false)?;
            arguments.insert(
                "alternate-exchange",
                argument_value("alternate-exchange", alternate),
            );
        }
        let answer = inner.declare_exchange(
            vhost,
            name,
            &spec.kind,
            false,
            spec.durable,
            spec.auto_delete,
            spec.internal,
            arguments,
        );
        Ok(answer.await?)
    }

    /// `exchange.delete`; a missing exchange is no error.
    ///
    /// # Errors
    /// In use with `if_unused` (406), a pre-declared exchange (403), no
    /// such vhost (530).
    pub async fn delete_exchange(
        &self,
        vhost: &str,
        name: &str,
        if_unused: bool,
    ) -> Result<(), AdminError> {
        let inner = self.active()?;
        Ok(inner.delete_exchange(vhost, name, if_unused).await?)
    }

    /// The queues of `vhost`, by name, with their counts.
    ///
    /// # Errors
    /// No such vhost (530).
    pub async fn queues(&self, vhost: &str) -> Result<Vec<QueueInfo>, AdminError> {
        let inner = self.active()?;
        let defs: Vec<_> = {
            let t = inner.topology.lock().await;
            check_vhost(&t, vhost)?;
            t.queues
                .iter()
                .filter(|((v, _), _)| v == vhost)
                .map(|((_, name), def)| (name.clone(), def.clone()))
                .collect()
        };
        let mut list: Vec<QueueInfo> = defs
            .into_iter()
            .map(|(name, def)| {
                let counts = inner.queue_by_topic(&def.topic).map(|q| {
                    let load = |n: &std::sync::atomic::AtomicU64| {
                        n.load(std::sync::atomic::Ordering::Relaxed)
                    };
                    (
                        load(&q.stats.ready),
                        load(&q.stats.unacked),
                        load(&q.stats.consumers),
                    )
                });
                let (ready, unacked, consumers) = counts.unwrap_or_default();
                QueueInfo {
                    name,
                    durable: def.durable,
                    exclusive: def.exclusive.is_some(),
                    auto_delete: def.auto_delete,
                    ready,
                    unacked,
                    consumers,
                    arguments: arguments_text(def.arguments.entries()),
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// `queue.declare` (not passive, not exclusive) of queue `name`;
    /// returns its (messages, consumers), as `queue.declare-ok`.
    ///
    /// # Errors
    /// As `queue.declare`: inequivalent redeclaration or bad arguments
    /// (406), another connection's exclusive queue (405), an `amq.` name
    /// (403), no such vhost (530); an empty or bad name (502).
    pub async fn declare_queue(
        &self,
        vhost: &str,
        name: &str,
        spec: &QueueSpec,
    ) -> Result<(u32, u32), AdminError> {
        let inner = self.active()?;
        check_name("queue", name, false)?;
        let answer = inner.declare_queue(
            vhost,
            name,
            false,
            spec.durable,
            false,
            spec.auto_delete,
            arguments_table(&spec.arguments),
            NO_CONNECTION,
        );
        let declared = answer.await?;
        Ok((declared.messages, declared.consumers))
    }

    /// `queue.delete`, exclusive queues included; returns the messages it
    /// held. A missing queue is no error.
    ///
    /// # Errors
    /// Consumers with `if_unused`, messages with `if_empty` (406).
    pub async fn delete_queue(
        &self,
        vhost: &str,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, AdminError> {
        let inner = self.active()?;
        let answer = inner.delete_queue(vhost, name, if_unused, if_empty, None);
        Ok(answer.await?)
    }

    /// The explicit bindings of `vhost`, by source, destination and key.
    ///
    /// # Errors
    /// No such vhost (530).
    pub async fn bindings(&self, vhost: &str) -> Result<Vec<BindingInfo>, AdminError> {
        let inner = self.active()?;
        let t = inner.topology.lock().await;
        check_vhost(&t, vhost)?;
        let mut list: Vec<BindingInfo> = t
            .exchanges
            .exchanges(vhost)
            .flat_map(|(source, _)| {
                t.exchanges
                    .bindings(vhost, source)
                    .map(move |b| BindingInfo {
                        source: source.to_string(),
                        destination: b.destination.clone(),
                        routing_key: b.routing_key.to_string(),
                        arguments: arguments_text(b.arguments),
                    })
            })
            .collect();
        list.sort_by(|a, b| {
            (&a.source, &a.destination, &a.routing_key).cmp(&(
                &b.source,
                &b.destination,
                &b.routing_key,
            ))
        });
        Ok(list)
    }

    /// `queue.bind` / `exchange.bind`; an existing binding is no error.
    ///
    /// # Errors
    /// A missing source or destination (404), the default exchange (403),
    /// a bad `x-match` (406), another connection's exclusive queue (405),
    /// no such vhost (530); a bad routing key (502).
    pub async fn bind(&self, vhost: &str, binding: &BindingInfo) -> Result<(), AdminError> {
        self.change_binding(vhost, binding, true).await
    }

    /// `queue.unbind` / `exchange.unbind`: removes the binding with this
    /// key and these arguments; a missing one is no error.
    ///
    /// # Errors
    /// As [`Gateway::bind`].
    pub async fn unbind(&self, vhost: &str, binding: &BindingInfo) -> Result<(), AdminError> {
        self.change_binding(vhost, binding, false).await
    }

    async fn change_binding(
        &self,
        vhost: &str,
        b: &BindingInfo,
        bind: bool,
    ) -> Result<(), AdminError> {
        check_name("routing key", &b.routing_key, true)?;
        let inner = self.active()?;
        let answer = inner.bind(
            vhost,
            &b.source,
            b.destination.clone(),
            &b.routing_key,
            arguments_table(&b.arguments),
            bind,
            NO_CONNECTION,
        );
        Ok(answer.await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn argument_values_are_typed_by_key() {
        let s = |t: &str| FieldValue::LongString(t.as_bytes().to_vec().into());
        assert_eq!(
            argument_value("x-message-ttl", "60000"),
            FieldValue::I32(60000)
        );
        assert_eq!(
            argument_value("x-max-length-bytes", "10000000000"),
            FieldValue::I64(10_000_000_000)
        );
        assert_eq!(argument_value("x-max-length", "ten"), s("ten"));
        assert_eq!(argument_value("x-max-length", "true"), s("true"));
        assert_eq!(argument_value("x-dead-letter-exchange", "42"), s("42"));
        assert_eq!(argument_value("x-match", "all"), s("all"));
        assert_eq!(argument_value("format", "pdf"), s("pdf"));
        assert_eq!(argument_value("retries", "-3"), FieldValue::I32(-3));
        assert_eq!(argument_value("lazy", "true"), FieldValue::Bool(true));
    }

    #[test]
    fn values_render_as_the_text_they_came_from() {
        for (k, text) in [
            ("x-message-ttl", "60000"),
            ("x-dead-letter-exchange", "dlx"),
            ("flag", "false"),
        ] {
            assert_eq!(value_text(&argument_value(k, text)), text);
        }
        assert_eq!(value_text(&FieldValue::U8(7)), "7");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("vhost", "orders", false).is_ok());
        assert!(check_name("exchange", "", true).is_ok());
        let refused = |n: &str| check_name("vhost", n, false).unwrap_err();
        assert_eq!(refused("").code, reply::SYNTAX_ERROR);
        assert!(refused("a\u{1}b").text.contains("control characters"));
        assert!(refused(&"v".repeat(256)).text.contains("255 bytes"));
    }
}
