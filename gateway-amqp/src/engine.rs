//! The engine: what runs on the node that runs the AMQP gateway. It owns
//! the topology (vhosts, exchanges, queues and bindings, loaded from
//! `__amqp_meta`), the running queues, and the operations channels and the
//! admin API call: declare, bind, delete, route.
//!
//! # Invariants
//! A change to the topology is written to `__amqp_meta` (when it is
//! durable) before it is applied.
//!
//! # Concurrency
//! Changes are serialised through the topology's async lock, held across
//! the write; the running queues sit behind a `std` mutex, never held
//! across an `.await`. Every task of the engine is tracked by `tracker` and
//! stops with [`Engine::stop`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fjord_broker::{Broker, TopicSpec};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::codec::{FieldTable, FieldValue, reply};
use crate::config::AmqpConfig;
use crate::housekeeping::Alarms;
use crate::queue::{self, ACKS_TOPIC, Housekeeping, QueueHandle};
use crate::refusal::{Answer, Refusal};
use crate::routing::{Destination, ExchangeDecl, ExchangeKind};
use crate::topology::{self, Change, META_TOPIC, QueueDef, Topology};
use crate::{Error, Result};

/// What `queue.declare` did.
pub(crate) struct Declared {
    pub(crate) name: String,
    pub(crate) messages: u32,
    pub(crate) consumers: u32,
}

/// The topology and the running queues (see the module header).
pub(crate) struct Engine {
    pub(crate) broker: Broker,
    pub(crate) config: AmqpConfig,
    /// Changes are serialised through this lock (write, then apply).
    pub(crate) topology: tokio::sync::Mutex<Topology>,
    /// Running queues by topic.
    queues: Mutex<HashMap<String, QueueHandle>>,
    pub(crate) metrics: crate::metrics::Metrics,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    next_id: AtomicU64,
    /// Dead letters and expired queues, for the housekeeping task.
    house: mpsc::UnboundedSender<Housekeeping>,
    /// Vhosts deleted (their connections close: 320 CONNECTION_FORCED).
    pub(crate) vhost_deleted: tokio::sync::broadcast::Sender<String>,
    /// The resource alarms that are on.
    pub(crate) alarm: watch::Sender<Alarms>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The latest record of every key of a one-partition compacted topic.
async fn latest(broker: &Broker, topic: &str) -> Result<Vec<(String, Value)>> {
    let mut found: HashMap<String, Option<Value>> = HashMap::new();
    let (records, _) = broker.tail(topic, 0, 0).read_to_end().await?;
    for rec in records {
        let Some(key) = rec.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        let value = rec
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok());
        found.insert(key.to_string(), value);
    }
    Ok(found
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect())
}

async fn ensure_internal(broker: &Broker, name: &str, compacted: bool) -> Result<()> {
    if broker.admin().partition_count(name).is_ok() {
        return Ok(());
    }
    let mut spec = TopicSpec::new(name, 1);
    spec.replication_factor = 0;
    if compacted {
        spec.configs
            .insert("cleanup.policy".into(), "compact".into());
    }
    match broker.admin().create_internal_topic(spec).await {
        Ok(_) | Err(fjord_broker::Error::TopicExists(_)) => Ok(()),
        Err(e) => Err(Error::Broker(e)),
    }
}

/// Creates the gateway's compacted topics unless they exist.
pub(crate) async fn ensure_topics(broker: &Broker) -> Result<()> {
    ensure_internal(broker, META_TOPIC, true).await?;
    ensure_internal(broker, ACKS_TOPIC, true).await
}

/// Equal field tables, entry order aside.
fn same_table(a: &FieldTable, b: &FieldTable) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k) == Some(v))
}

impl Engine {
    /// Opens the topology and starts every durable queue.
    pub(crate) async fn open(broker: Broker, config: AmqpConfig) -> Result<Arc<Engine>> {
        ensure_topics(&broker).await?;
        let topology = topology::load(latest(&broker, META_TOPIC).await?);
        let (house, house_rx) = mpsc::unbounded_channel();
        let engine = Arc::new(Engine {
            house,
            vhost_deleted: tokio::sync::broadcast::Sender::new(64),
            alarm: watch::Sender::new(Alarms::default()),
            broker,
            config,
            topology: tokio::sync::Mutex::new(Topology::default()),
            queues: Mutex::new(HashMap::new()),
            metrics: crate::metrics::Metrics::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_id: AtomicU64::new(1),
        });
        engine.tracker.spawn(crate::housekeeping::housekeeping(
            Arc::downgrade(&engine),
            house_rx,
            engine.shutdown.clone(),
        ));
        if let Some(dir) = engine.config.data_dir.clone() {
            engine.tracker.spawn(crate::housekeeping::watch_disk(
                Arc::downgrade(&engine),
                dir,
                engine.config.disk_free_limit,
                engine.shutdown.clone(),
            ));
        }
        if engine.config.memory_high_watermark > 0 {
            engine.tracker.spawn(crate::housekeeping::watch_memory(
                Arc::downgrade(&engine),
                engine.config.memory_high_watermark,
                engine.shutdown.clone(),
            ));
        }
        engine.drop_orphans(&topology).await;
        let mut started = 0;
        for ((vhost, name), def) in &topology.queues {
            if let Err(e) = engine.start_queue(vhost, name, def).await {
                warn!(vhost, queue = name, "queue not started: {e}");
            } else {
                started += 1;
            }
        }
        if started > 0 {
            info!(queues = started, "AMQP queues restored");
        }
        *engine.topology.lock().await = topology;
        Ok(engine)
    }

    /// Closes every connection (320 CONNECTION_FORCED), waits for them,
    /// then stops every queue (each stores its cursor, if this node still
    /// may).
    pub(crate) async fn stop(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let queues: Vec<QueueHandle> = lock(&self.queues).drain().map(|(_, q)| q).collect();
        for q in queues {
            q.stop().await;
        }
    }

    /// Deletes the topics (and cursor states) of queues the topology does
    /// not hold: transient queues of an earlier run, which live only while
    /// it does (one declared again by the same name starts empty).
    async fn drop_orphans(&self, topology: &Topology) {
        let known: std::collections::HashSet<&str> =
            topology.queues.values().map(|d| d.topic.as_str()).collect();
        for t in self.broker.admin().list_topics(true) {
            if t.name.starts_with(topology::QUEUE_TOPIC_PREFIX) && !known.contains(t.name.as_str())
            {
                queue::forget_state(&self.broker, &t.name).await;
                match self.broker.admin().delete_internal_topic(&t.name).await {
                    Ok(()) => info!(
                        topic = t.name,
                        "an earlier run's transient queue is deleted"
                    ),
                    Err(e) => warn!(topic = t.name, "transient queue topic not deleted: {e}"),
                }
            }
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn start_queue(&self, vhost: &str, name: &str, def: &QueueDef) -> Result<QueueHandle> {
        let handle = QueueHandle::open(
            self.broker.clone(),
            vhost,
            name,
            &def.topic,
            &def.arguments,
            self.config.read_ahead,
            self.house.clone(),
        )
        .await?;
        lock(&self.queues).insert(def.topic.clone(), handle.clone());
        Ok(handle)
    }

    /// A running queue by topic.
    pub(crate) fn queue_by_topic(&self, topic: &str) -> Option<QueueHandle> {
        lock(&self.queues).get(topic).cloned()
    }

    /// The queue `name` of `vhost`, checked for use by connection `conn`.
    pub(crate) async fn queue(&self, vhost: &str, name: &str, conn: u64) -> Answer<QueueHandle> {
        let topic = {
            let t = self.topology.lock().await;
            let def = t
                .queues
                .get(&(vhost.to_string(), name.to_string()))
                .ok_or_else(|| not_found_queue(vhost, name))?;
            if def.exclusive.is_some_and(|owner| owner != conn) {
                return Err(locked(vhost, name));
            }
            def.topic.clone()
        };
        self.queue_by_topic(&topic)
            .ok_or_else(|| not_found_queue(vhost, name))
    }

    /// Every running queue: (vhost/name label, handle).
    pub(crate) async fn all_queues(&self) -> Vec<(String, String, QueueHandle)> {
        let t = self.topology.lock().await;
        let queues = lock(&self.queues);
        t.queues
            .iter()
            .filter_map(|((v, n), d)| Some((v.clone(), n.clone(), queues.get(&d.topic)?.clone())))
            .collect()
    }

    pub(crate) async fn has_vhost(&self, vhost: &str) -> bool {
        self.topology.lock().await.exchanges.has_vhost(vhost)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn declare_queue(
        &self,
        vhost: &str,
        name: &str,
        passive: bool,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: FieldTable,
        conn: u64,
    ) -> Answer<Declared> {
        let name = if name.is_empty() {
            format!("amq.gen-{:x}-{}", crate::now_ms(), self.next_id())
        } else {
            name.to_string()
        };
        let mut t = self.topology.lock().await;
        let key = (vhost.to_string(), name.clone());
        if let Some(def) = t.queues.get(&key) {
            if def.exclusive.is_some_and(|owner| owner != conn) {
                return Err(locked(vhost, &name));
            }
            if !passive {
                let mismatch = if def.durable != durable {
                    Some(("durable", durable, def.durable))
                } else if def.exclusive.is_some() != exclusive {
                    Some(("exclusive", exclusive, def.exclusive.is_some()))
                } else if def.auto_delete != auto_delete {
                    Some(("auto_delete", auto_delete, def.auto_delete))
                } else {
                    None
                };
                if let Some((arg, asked, is)) = mismatch {
                    return Err(Refusal::new(
                        reply::PRECONDITION_FAILED,
                        format!(
                            "PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{name}' in vhost '{vhost}': received '{asked}' but current is '{is}'"
                        ),
                    ));
                }
                if !same_table(&def.arguments, &arguments) {
                    return Err(Refusal::new(
                        reply::PRECONDITION_FAILED,
                        format!(
                            "PRECONDITION_FAILED - inequivalent arguments for queue '{name}' in vhost '{vhost}'"
                        ),
                    ));
                }
            }
            let topic = def.topic.clone();
            drop(t);
            let q = self
                .queue_by_topic(&topic)
                .ok_or_else(|| not_found_queue(vhost, &name))?;
            q.touch();
            return Ok(Declared {
                name,
                messages: q.message_count(),
                consumers: q.consumer_count(),
            });
        }
        if passive {
            return Err(not_found_queue(vhost, &name));
        }
        if !t.exchanges.has_vhost(vhost) {
            return Err(Refusal::new(
                reply::NOT_ALLOWED,
                format!("NOT_ALLOWED - vhost '{vhost}' not found"),
            ));
        }
        if name.starts_with("amq.") && !name.starts_with("amq.gen-") {
            return Err(Refusal::new(
                reply::ACCESS_REFUSED,
                format!("ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'"),
            ));
        }
        check_queue_arguments(&arguments)?;
        let topic = topology::queue_topic(vhost, &name);
        ensure_internal(&self.broker, &topic, false).await?;
        let def = QueueDef {
            durable,
            exclusive: exclusive.then_some(conn),
            auto_delete,
            arguments,
            topic: topic.clone(),
        };
        if durable && !exclusive {
            topology::write(
                &self.broker,
                Change::Queue {
                    vhost,
                    name: &name,
                    def: Some(&def),
                },
            )
            .await?;
        }
        self.start_queue(vhost, &name, &def).await?;
        t.exchanges.add_queue(vhost, &name)?;
        t.queues.insert(key, def);
        let q = self.queue_by_topic(&topic);
        Ok(Declared {
            name,
            messages: q.as_ref().map_or(0, QueueHandle::message_count),
            consumers: 0,
        })
    }

    /// Deletes a queue; returns the messages it held.
    pub(crate) async fn delete_queue(
        &self,
        vhost: &str,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        conn: Option<u64>,
    ) -> Answer<u32> {
        let mut t = self.topology.lock().await;
        let key = (vhost.to_string(), name.to_string());
        let Some(def) = t.queues.get(&key).cloned() else {
            // RabbitMQ: deleting a queue that does not exist succeeds.
            return Ok(0);
        };
        if let Some(conn) = conn
            && def.exclusive.is_some_and(|owner| owner != conn)
        {
            return Err(locked(vhost, name));
        }
        let q = self.queue_by_topic(&def.topic);
        let (messages, consumers) = q
            .as_ref()
            .map_or((0, 0), |q| (q.message_count(), q.consumer_count()));
        if if_unused && consumers > 0 {
            return Err(Refusal::new(
                reply::PRECONDITION_FAILED,
                format!("PRECONDITION_FAILED - queue '{name}' in vhost '{vhost}' in use"),
            ));
        }
        if if_empty && messages > 0 {
            return Err(Refusal::new(
                reply::PRECONDITION_FAILED,
                format!("PRECONDITION_FAILED - queue '{name}' in vhost '{vhost}' is not empty"),
            ));
        }
        if def.durable && def.exclusive.is_none() {
            topology::write(
                &self.broker,
                Change::Queue {
                    vhost,
                    name,
                    def: None,
                },
            )
            .await?;
        }
        let gone = bindings_touching(&t, vhost, &Destination::queue(name));
        forget_bindings(&self.broker, vhost, gone).await;
        let removed = t.exchanges.remove_queue(vhost, name)?;
        forget_exchanges(&self.broker, vhost, &removed.exchanges).await;
        t.queues.remove(&key);
        drop(t);
        if let Some(q) = q {
            q.stop().await;
        }
        lock(&self.queues).remove(&def.topic);
        queue::forget_state(&self.broker, &def.topic).await;
        if let Err(e) = self.broker.admin().delete_internal_topic(&def.topic).await {
            warn!(topic = def.topic, "queue topic not deleted: {e}");
        }
        Ok(messages)
    }

    /// Deletes the exclusive queues of a connection that ended.
    pub(crate) async fn drop_exclusive(&self, conn: u64) {
        let owned: Vec<(String, String)> = {
            let t = self.topology.lock().await;
            t.queues
                .iter()
                .filter(|(_, d)| d.exclusive == Some(conn))
                .map(|(k, _)| k.clone())
                .collect()
        };
        for (vhost, name) in owned {
            let _ = self.delete_queue(&vhost, &name, false, false, None).await;
        }
    }

    /// Deletes an auto-delete queue that lost its last consumer.
    pub(crate) async fn consumer_gone(&self, vhost: &str, name: &str) {
        let auto = {
            let t = self.topology.lock().await;
            t.queues
                .get(&(vhost.to_string(), name.to_string()))
                .is_some_and(|d| d.auto_delete)
        };
        if !auto {
            return;
        }
        let Ok(q) = self.queue(vhost, name, 0).await else {
            return;
        };
        // The queue's own count settles once it handled the cancel.
        for _ in 0..50 {
            if q.consumer_count() == 0 {
                let _ = self.delete_queue(vhost, name, true, false, None).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn declare_exchange(
        &self,
        vhost: &str,
        name: &str,
        kind: &str,
        passive: bool,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Answer<()> {
        let mut t = self.topology.lock().await;
        if passive {
            t.exchanges.declare_exchange_passive(vhost, name)?;
            return Ok(());
        }
        let kind = ExchangeKind::parse(kind)?;
        let decl = ExchangeDecl {
            kind,
            durable,
            auto_delete,
            internal,
            arguments: arguments.entries().to_vec(),
        };
        // Check first (the table refuses what it would refuse), write, apply.
        let mut probe = t.exchanges.clone();
        let created = probe.declare_exchange(vhost, name, decl.clone())?;
        if created && durable {
            topology::write(
                &self.broker,
                Change::Exchange {
                    vhost,
                    name,
                    decl: Some(&decl),
                },
            )
            .await?;
        }
        t.exchanges.declare_exchange(vhost, name, decl)?;
        Ok(())
    }

    pub(crate) async fn delete_exchange(
        &self,
        vhost: &str,
        name: &str,
        if_unused: bool,
    ) -> Answer<()> {
        let mut t = self.topology.lock().await;
        let durable = t.exchanges.exchange(vhost, name).is_some_and(|d| d.durable);
        let mut probe = t.exchanges.clone();
        let removed = probe.delete_exchange(vhost, name, if_unused)?;
        let gone = bindings_touching(&t, vhost, &Destination::exchange(name));
        forget_bindings(&self.broker, vhost, gone).await;
        if durable {
            topology::write(
                &self.broker,
                Change::Exchange {
                    vhost,
                    name,
                    decl: None,
                },
            )
            .await?;
        }
        forget_exchanges(&self.broker, vhost, &removed.exchanges).await;
        t.exchanges.delete_exchange(vhost, name, if_unused)?;
        Ok(())
    }

    /// Binds (or with `bind` false unbinds) `destination` to `source`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn bind(
        &self,
        vhost: &str,
        source: &str,
        destination: Destination,
        routing_key: &str,
        arguments: FieldTable,
        bind: bool,
        conn: u64,
    ) -> Answer<()> {
        let mut t = self.topology.lock().await;
        if let Destination::Queue(q) = &destination
            && let Some(def) = t.queues.get(&(vhost.to_string(), q.clone()))
            && def.exclusive.is_some_and(|owner| owner != conn)
        {
            return Err(locked(vhost, q));
        }
        let args = arguments.entries().to_vec();
        let mut probe = t.exchanges.clone();
        if bind {
            probe.bind(
                vhost,
                source,
                destination.clone(),
                routing_key,
                args.clone(),
            )?;
        } else {
            probe.unbind(vhost, source, &destination, routing_key, &args)?;
        }
        let durable_source = t
            .exchanges
            .exchange(vhost, source)
            .is_some_and(|d| d.durable);
        let durable_dest = match &destination {
            Destination::Queue(q) => t
                .queues
                .get(&(vhost.to_string(), q.clone()))
                .is_some_and(|d| d.durable && d.exclusive.is_none()),
            Destination::Exchange(e) => t.exchanges.exchange(vhost, e).is_some_and(|d| d.durable),
        };
        if durable_source && durable_dest {
            topology::write(
                &self.broker,
                Change::Binding {
                    vhost,
                    source,
                    destination: &destination,
                    routing_key,
                    arguments: &args,
                    present: bind,
                },
            )
            .await?;
        }
        if bind {
            t.exchanges
                .bind(vhost, source, destination, routing_key, args)?;
        } else {
            t.exchanges
                .unbind(vhost, source, &destination, routing_key, &args)?;
        }
        Ok(())
    }

    /// The queues (topic, handle) a publish reaches.
    pub(crate) async fn route(
        &self,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        headers: Option<&FieldTable>,
    ) -> Answer<Vec<QueueHandle>> {
        let t = self.topology.lock().await;
        if let Some(d) = t.exchanges.exchange(vhost, exchange)
            && d.internal
        {
            return Err(Refusal::new(
                reply::ACCESS_REFUSED,
                format!(
                    "ACCESS_REFUSED - cannot publish to internal exchange '{exchange}' in vhost '{vhost}'"
                ),
            ));
        }
        let headers = headers.map(|h| h.entries()).unwrap_or_default();
        let routed = t.exchanges.route(vhost, exchange, routing_key, headers)?;
        let queues = lock(&self.queues);
        Ok(routed
            .queues
            .iter()
            .filter_map(|q| {
                let def = t.queues.get(&(vhost.to_string(), q.clone()))?;
                queues.get(&def.topic).cloned()
            })
            .collect())
    }
}

/// A stored binding: (source, destination, routing key, arguments).
type StoredBinding = (String, Destination, String, Vec<(String, FieldValue)>);

/// Every binding of `vhost` from or to `end` (an exchange as a source
/// too).
fn bindings_touching(t: &Topology, vhost: &str, end: &Destination) -> Vec<StoredBinding> {
    let sources: Vec<String> = t
        .exchanges
        .exchanges(vhost)
        .map(|(n, _)| n.to_string())
        .collect();
    let mut out = Vec::new();
    for source in sources {
        let from_end = matches!(end, Destination::Exchange(e) if *e == source);
        for b in t.exchanges.bindings(vhost, &source) {
            if from_end || b.destination == end {
                out.push((
                    source.clone(),
                    b.destination.clone(),
                    b.routing_key.to_string(),
                    b.arguments.to_vec(),
                ));
            }
        }
    }
    out
}

/// Deletes the stored records of `bindings` (a deleted queue or exchange
/// must not get them back after a restart when made again).
async fn forget_bindings(broker: &Broker, vhost: &str, bindings: Vec<StoredBinding>) {
    for (source, destination, routing_key, arguments) in bindings {
        let r = topology::write(
            broker,
            Change::Binding {
                vhost,
                source: &source,
                destination: &destination,
                routing_key: &routing_key,
                arguments: &arguments,
                present: false,
            },
        )
        .await;
        if let Err(e) = r {
            warn!(vhost, source, "binding record not deleted: {e}");
        }
    }
}

/// Deletes the records of `exchanges`: auto-delete exchanges that went
/// with their last binding (best effort, as the deletions they follow are
/// already stored).
async fn forget_exchanges(broker: &Broker, vhost: &str, exchanges: &[String]) {
    for name in exchanges {
        let _ = topology::write(
            broker,
            Change::Exchange {
                vhost,
                name,
                decl: None,
            },
        )
        .await;
    }
}

/// Arguments this gateway acts on are checked for type; others are kept.
fn check_queue_arguments(arguments: &FieldTable) -> Answer<()> {
    for (k, v) in arguments.iter() {
        let numeric = matches!(
            k,
            "x-message-ttl"
                | "x-expires"
                | "x-max-length"
                | "x-max-length-bytes"
                | "x-max-priority"
        );
        if numeric && topology::as_int(v).is_none_or(|n| n < 0) {
            return Err(Refusal::new(
                reply::PRECONDITION_FAILED,
                format!("PRECONDITION_FAILED - invalid arg '{k}' for queue: {v:?}"),
            ));
        }
        if k == "x-dead-letter-exchange" && !matches!(v, FieldValue::LongString(_)) {
            return Err(Refusal::new(
                reply::PRECONDITION_FAILED,
                format!("PRECONDITION_FAILED - invalid arg '{k}' for queue: {v:?}"),
            ));
        }
    }
    Ok(())
}

fn not_found_queue(vhost: &str, name: &str) -> Refusal {
    Refusal::new(
        reply::NOT_FOUND,
        format!("NOT_FOUND - no queue '{name}' in vhost '{vhost}'"),
    )
}

fn locked(vhost: &str, name: &str) -> Refusal {
    Refusal::new(
        reply::RESOURCE_LOCKED,
        format!(
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'"
        ),
    )
}
