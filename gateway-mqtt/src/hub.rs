//! The hub: the state every connection of the MQTT gateway shares, and
//! what it does with it.
//!
//! Owns the subscription registry, the sessions of clients that are away
//! (and their expiry), retained messages, delayed wills and what the log
//! says of every client's session on any node (see `cluster.rs`). It
//! opens the gateway's topics, restores that state from the compacted
//! internal topics, starts the dispatchers that tail the log and feed
//! sessions (see `dispatch.rs`), and publishes messages into the log.
//!
//! # Concurrency
//! One `Arc<Hub>` is shared by every connection task and every dispatcher.
//! Each piece of state sits behind its own `std` mutex, never held across
//! an `.await`. Every task the hub spawns is tracked by `tracker` and
//! stops when `shutdown` is cancelled.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::{Broker, NewRecord, ProduceRequest, TopicSpec};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::MqttConfig;
use crate::mapping::{Mapping, partition_of};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::session::{LogRef, SessionState};
use crate::store::{self, RETAINED_TOPIC, SESSIONS_TOPIC};
use crate::{Error, Result};

/// How long an append whose outcome is unknown is sent again, at most.
const APPEND_AGAIN_FOR: Duration = Duration::from_secs(5);

/// A session whose client is away.
#[derive(Debug)]
pub(crate) struct Offline {
    /// Bumped on every store, so a stale expiry timer does nothing.
    pub(crate) generation: u64,
    /// Offset of its record in `__mqtt_sessions` (-1: not known).
    pub(crate) offset: i64,
}

/// What the `__mqtt_sessions` records of a client say.
#[derive(Debug, Clone, Default)]
pub(crate) struct Known {
    /// The latest record that is not stale, and its offset; `None` after
    /// a tombstone.
    pub(crate) offset: i64,
    pub(crate) state: Option<SessionState>,
    /// The offset of the latest claim.
    pub(crate) latest_claim: i64,
    /// The latest stale record (a connection's last state, written after
    /// another connection claimed the client id).
    pub(crate) stale: Option<SessionState>,
}

/// A retained message and where it is stored.
#[derive(Debug, Clone)]
pub(crate) struct Retained {
    pub(crate) msg: Arc<Message>,
    pub(crate) at: LogRef,
}

/// The gateway's shared state (see the module header).
pub(crate) struct Hub {
    pub(crate) broker: Broker,
    pub(crate) config: MqttConfig,
    pub(crate) mapping: Mapping,
    /// Log topic → partitions.
    pub(crate) partitions: BTreeMap<String, u32>,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) offline: Mutex<HashMap<String, Offline>>,
    pub(crate) retained: Mutex<BTreeMap<String, Retained>>,
    /// Delayed wills by client id (cancelled when the client returns).
    pub(crate) wills: Mutex<HashMap<String, CancellationToken>>,
    pub(crate) metrics: Metrics,
    /// This node's id, and whether it is one of a cluster's: then sessions
    /// move between nodes (see `cluster.rs`).
    pub(crate) node: u32,
    /// Every client's latest session record, followed from
    /// the log.
    pub(crate) known: Mutex<HashMap<String, Known>>,
    /// Shared subscriptions' members on other nodes.
    pub(crate) shares: Mutex<crate::cluster::Shares>,
    /// How far `__mqtt_retained` / `__mqtt_sessions` have been applied
    /// (every record below).
    pub(crate) retained_applied: watch::Sender<i64>,
    pub(crate) sessions_applied: watch::Sender<i64>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) next_id: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) use fjord_broker::now_ms;

impl Hub {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub(crate) fn offline(&self) -> MutexGuard<'_, HashMap<String, Offline>> {
        lock(&self.offline)
    }

    pub(crate) fn retained(&self) -> MutexGuard<'_, BTreeMap<String, Retained>> {
        lock(&self.retained)
    }

    pub(crate) fn known(&self) -> MutexGuard<'_, HashMap<String, Known>> {
        lock(&self.known)
    }

    pub(crate) fn wills(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        lock(&self.wills)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens the gateway's topics and state on `broker`.
    pub(crate) async fn open(broker: Broker, config: MqttConfig) -> Result<Arc<Hub>> {
        let mapping = Mapping::new(config.mappings.clone(), config.default_topic.clone());
        let admin = broker.admin();
        let own = [store::SESSIONS_TOPIC, store::RETAINED_TOPIC];
        let missing = mapping
            .log_topics()
            .into_iter()
            .chain(own.iter().map(|t| t.to_string()))
            .any(|t| admin.partition_count(&t).is_err());
        // Topics made now get all their replicas once every voter is live.
        if missing && !admin.wait_for_voters(Duration::from_secs(30)).await {
            warn!(
                "not every cluster node is live: MQTT topics created now may have fewer replicas"
            );
        }
        let mut partitions = BTreeMap::new();
        for topic in mapping.log_topics() {
            let count = match admin.partition_count(&topic) {
                Ok(n) => n,
                Err(_) => {
                    let mut spec = TopicSpec::new(topic.clone(), config.partitions.max(1));
                    spec.replication_factor = 0;
                    match admin.create_topic(spec).await {
                        Ok(d) => d.partitions.len() as u32,
                        Err(fjord_broker::Error::TopicExists(_)) => {
                            admin.partition_count(&topic)?
                        }
                        Err(e) => return Err(Error::Broker(e)),
                    }
                }
            };
            partitions.insert(topic, count.max(1));
        }
        store::ensure_compacted(&broker, SESSIONS_TOPIC).await?;
        store::ensure_compacted(&broker, RETAINED_TOPIC).await?;
        let node = broker.node_id();
        let hub = Arc::new(Hub {
            broker,
            node,
            known: Mutex::new(HashMap::new()),
            shares: Mutex::new(crate::cluster::Shares::default()),
            retained_applied: watch::Sender::new(0),
            sessions_applied: watch::Sender::new(0),
            config,
            mapping,
            partitions,
            registry: Mutex::new(Registry::default()),
            offline: Mutex::new(HashMap::new()),
            retained: Mutex::new(BTreeMap::new()),
            wills: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_id: AtomicU64::new(1),
        });
        let started = async {
            let end = hub.load_retained().await?;
            hub.follow(RETAINED_TOPIC, end);
            let end = hub.load_sessions().await?;
            hub.follow(SESSIONS_TOPIC, end);
            hub.start_dispatchers().await
        }
        .await;
        if let Err(e) = started {
            // Stop what did start.
            hub.shutdown.cancel();
            hub.tracker.close();
            hub.tracker.wait().await;
            return Err(e);
        }
        Ok(hub)
    }

    /// Reads every retained message; returns where the topic ends.
    async fn load_retained(&self) -> Result<i64> {
        let end = store::end(&self.broker, RETAINED_TOPIC).await?;
        for r in store::load_latest(&self.broker, RETAINED_TOPIC, end).await? {
            self.apply_retained(&r);
        }
        self.retained_applied.send_replace(end);
        Ok(end)
    }

    /// Sets or deletes one retained message from its record.
    pub(crate) fn apply_retained(&self, r: &fjord_broker::Record) {
        let Some(topic) = store::key_of(r) else {
            return;
        };
        let mut retained = self.retained();
        match r.value.as_ref().and(Message::from_record(r)) {
            Some(msg) => {
                let at = LogRef {
                    topic: RETAINED_TOPIC.into(),
                    partition: 0,
                    offset: r.offset,
                };
                retained.insert(
                    topic.to_string(),
                    Retained {
                        msg: Arc::new(msg),
                        at,
                    },
                );
            }
            None => {
                retained.remove(topic);
            }
        }
        self.metrics
            .retained
            .store(retained.len() as i64, Ordering::Relaxed);
    }

    /// Restores the sessions this node kept, and learns every other
    /// node's; returns where `__mqtt_sessions` ends.
    async fn load_sessions(self: &Arc<Self>) -> Result<i64> {
        let now = now_ms();
        let mut loaded = 0;
        let end = store::end(&self.broker, SESSIONS_TOPIC).await?;
        for r in store::load_latest(&self.broker, SESSIONS_TOPIC, end).await? {
            let Some(client) = store::key_of(&r).map(str::to_string) else {
                continue;
            };
            let state = r.value.as_deref().and_then(SessionState::decode);
            {
                let latest_claim = state
                    .as_ref()
                    .map_or(-1, |s| if s.claim { r.offset } else { s.epoch });
                self.known().insert(
                    client.clone(),
                    Known {
                        offset: r.offset,
                        state: state.clone(),
                        latest_claim,
                        stale: None,
                    },
                );
                if !client.starts_with('\0') {
                    self.note_shares(&client, state.as_ref());
                }
            }
            let Some(state) = state else {
                continue;
            };
            // Another node's session, or a hand-over record.
            if state.node != self.node || client.starts_with('\0') {
                continue;
            }
            let left = state.expiry_secs.map(|secs| {
                let gone = now - state.disconnected_at_ms.unwrap_or(now);
                i64::from(secs) * 1000 - gone
            });
            if left.is_some_and(|ms| ms <= 0) {
                let _ = store::put(&self.broker, SESSIONS_TOPIC, &client, None, Vec::new()).await;
                continue;
            }
            {
                let mut reg = self.registry();
                for s in &state.subscriptions {
                    reg.trie.insert(client.clone(), &s.filter, s.options());
                }
                self.metrics
                    .subscriptions
                    .store(reg.trie.len() as i64, Ordering::Relaxed);
            }
            let generation = self.next_id();
            self.offline().insert(
                client.clone(),
                Offline {
                    generation,
                    offset: r.offset,
                },
            );
            if let Some(ms) = left {
                self.expire_later(client, generation, Duration::from_millis(ms.max(0) as u64));
            }
            loaded += 1;
        }
        self.metrics.sessions.store(loaded, Ordering::Relaxed);
        if loaded > 0 {
            info!(sessions = loaded, "MQTT sessions restored");
        }
        self.sessions_applied.send_replace(end);
        Ok(end)
    }

    /// Ends an offline session when its expiry passes (unless it came back).
    pub(crate) fn expire_later(self: &Arc<Self>, client: String, generation: u64, after: Duration) {
        let hub = Arc::clone(self);
        self.tracker.spawn(async move {
            tokio::select! {
                _ = hub.shutdown.cancelled() => return,
                _ = tokio::time::sleep(after) => {}
            }
            let expired = {
                let mut offline = hub.offline();
                match offline.get(&client) {
                    Some(o) if o.generation == generation => offline.remove(&client).is_some(),
                    _ => false,
                }
            };
            if expired {
                hub.forget_session(&client).await;
            }
        });
    }

    /// Drops a session's subscriptions and its stored state.
    pub(crate) async fn forget_session(&self, client: &str) {
        self.drop_local(client);
        // Only while the latest record is still this node's (the client
        // may have come back on another node).
        let ours = self.known().get(client).is_none_or(|k| {
            k.state
                .as_ref()
                .is_none_or(|s| s.node == self.node && !s.online)
        });
        if !ours {
            return;
        }
        if let Err(e) = store::put(&self.broker, SESSIONS_TOPIC, client, None, Vec::new()).await {
            warn!(client, "could not delete an ended MQTT session: {e}");
        }
    }

    /// Drops the subscriptions of a session kept here (not the ones of a
    /// connection online here).
    pub(crate) fn drop_local(&self, client: &str) {
        {
            let mut reg = self.registry();
            reg.trie.remove_all(&client.to_string());
            self.metrics
                .subscriptions
                .store(reg.trie.len() as i64, Ordering::Relaxed);
        }
        self.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// Stores a session's state durably; returns the record's offset.
    pub(crate) async fn save_session(&self, client: &str, state: &SessionState) -> Result<i64> {
        store::put(
            &self.broker,
            SESSIONS_TOPIC,
            client,
            Some(Bytes::from(state.encode())),
            Vec::new(),
        )
        .await
    }

    /// Appends messages to the log (grouped by partition, concurrently);
    /// returns one result per message, in order. Retained ones also update
    /// `__mqtt_retained` (after their append committed).
    pub(crate) async fn publish(&self, msgs: Vec<Message>) -> Vec<Result<()>> {
        let mut groups: BTreeMap<(String, u32), Vec<usize>> = BTreeMap::new();
        for (i, m) in msgs.iter().enumerate() {
            let topic = self.mapping.log_topic(&m.topic).to_string();
            let count = self.partitions.get(&topic).copied().unwrap_or(1);
            let p = partition_of(&m.topic, count);
            groups.entry((topic, p)).or_default().push(i);
        }
        let appends = groups.into_iter().map(|((topic, p), idx)| {
            let records: Vec<NewRecord> = idx.iter().map(|&i| msgs[i].to_record()).collect();
            // Only a batch without QoS 2 messages may go twice.
            let again = idx.iter().all(|&i| msgs[i].receipt.is_none());
            async move {
                let r = self.append(&topic, p, records, again).await;
                (idx, r)
            }
        });
        let done = futures::future::join_all(appends).await;
        let mut results: Vec<Result<()>> = (0..msgs.len()).map(|_| Ok(())).collect();
        for (idx, r) in done {
            if let Err(e) = r {
                let (message, uncertain) = (e.to_string(), e.may_be_written());
                for i in idx {
                    results[i] = Err(Error::Publish {
                        message: message.clone(),
                        uncertain,
                    });
                }
            }
        }
        for (i, m) in msgs.iter().enumerate() {
            if m.retain
                && results[i].is_ok()
                && let Err(e) = self.retain(m).await
            {
                results[i] = Err(e);
            }
        }
        results
    }

    /// Appends one batch; one whose outcome is unknown (a timeout, a
    /// leader deposed after the write) is sent again for a few seconds if
    /// `again` (QoS 0/1 messages may be stored twice; QoS 2 ones are left
    /// to their receipts).
    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<NewRecord>,
        again: bool,
    ) -> fjord_broker::Result<fjord_broker::ProduceResult> {
        let deadline = tokio::time::Instant::now() + APPEND_AGAIN_FOR;
        loop {
            let request =
                ProduceRequest::records(topic.to_string(), Some(partition), records.clone());
            match self.broker.produce(request).await {
                Err(e)
                    if again
                        && e.may_be_written()
                        && !matches!(e, fjord_broker::Error::ShuttingDown)
                        && tokio::time::Instant::now() < deadline =>
                {
                    debug!(topic, partition, "appending again: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Sets, replaces or (empty payload) deletes a retained message.
    async fn retain(&self, m: &Message) -> Result<()> {
        // The follower of `__mqtt_retained` applies it (on every node, in
        // log order); wait for it here so the publisher's next SUBSCRIBE
        // sees it.
        let offset = if m.payload.is_empty() {
            store::put(&self.broker, RETAINED_TOPIC, &m.topic, None, Vec::new()).await?
        } else {
            let record = m.to_record();
            store::put(
                &self.broker,
                RETAINED_TOPIC,
                &m.topic,
                record.value,
                record.headers,
            )
            .await?
        };
        self.await_applied(RETAINED_TOPIC, offset + 1, Duration::from_secs(5))
            .await;
        Ok(())
    }

    /// Publishes a will now, or after `delay` unless the client returns.
    pub(crate) fn publish_will(self: &Arc<Self>, client: String, will: Message, delay: Duration) {
        let hub = Arc::clone(self);
        let cancel = CancellationToken::new();
        if let Some(old) = self.wills().insert(client.clone(), cancel.clone()) {
            old.cancel();
        }
        self.tracker.spawn(async move {
            if !delay.is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = hub.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            {
                let mut wills = hub.wills();
                if cancel.is_cancelled() {
                    return;
                }
                wills.remove(&client);
            }
            let qos = will.qos;
            match hub.publish(vec![will]).await.pop() {
                Some(Ok(())) => hub.metrics.message_in(qos),
                Some(Err(e)) => warn!(client, "will message not published: {e}"),
                None => {}
            }
        });
    }

    /// Cancels a pending delayed will of `client`.
    pub(crate) fn cancel_will(&self, client: &str) {
        if let Some(w) = self.wills().remove(client) {
            w.cancel();
        }
    }
}
