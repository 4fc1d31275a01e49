//! The running gateway: shared state, the dispatchers that tail the log
//! and feed sessions, retained messages, offline sessions and wills.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::{Acks, Broker, Compression, FetchRequest, OffsetSpec, TopicSpec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::MqttConfig;
use crate::mapping::{Mapping, partition_of};
use crate::message::Message;
use crate::metrics::{Dropped, Metrics};
use crate::registry::{Delivery, Registry};
use crate::session::{LogRef, SessionState};
use crate::store::{self, RETAINED_TOPIC, SESSIONS_TOPIC};
use crate::{Error, Result};

/// A session whose client is away.
#[derive(Debug)]
pub(crate) struct Offline {
    pub(crate) state: SessionState,
    /// Bumped on every store, so a stale expiry timer does nothing.
    pub(crate) generation: u64,
}

/// A retained message and where it is stored.
#[derive(Debug, Clone)]
pub(crate) struct Retained {
    pub(crate) msg: Arc<Message>,
    pub(crate) at: LogRef,
}

pub(crate) struct Inner {
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
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Inner {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub(crate) fn offline(&self) -> MutexGuard<'_, HashMap<String, Offline>> {
        lock(&self.offline)
    }

    pub(crate) fn retained(&self) -> MutexGuard<'_, BTreeMap<String, Retained>> {
        lock(&self.retained)
    }

    pub(crate) fn wills(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        lock(&self.wills)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens the gateway's topics and state on `broker`.
    pub(crate) async fn open(broker: Broker, config: MqttConfig) -> Result<Arc<Inner>> {
        let mapping = Mapping::new(config.mappings.clone(), config.default_topic.clone());
        let mut partitions = BTreeMap::new();
        for topic in mapping.log_topics() {
            let count = match broker.describe_topic(&topic) {
                Ok(d) => d.partitions.len() as u32,
                Err(_) => {
                    let spec = TopicSpec::new(topic.clone(), config.partitions.max(1));
                    match broker.create_topic(spec).await {
                        Ok(d) => d.partitions.len() as u32,
                        Err(fjord_broker::Error::TopicExists(_)) => {
                            broker.describe_topic(&topic)?.partitions.len() as u32
                        }
                        Err(e) => return Err(Error::Broker(e)),
                    }
                }
            };
            partitions.insert(topic, count.max(1));
        }
        store::ensure_compacted(&broker, SESSIONS_TOPIC).await?;
        store::ensure_compacted(&broker, RETAINED_TOPIC).await?;
        let inner = Arc::new(Inner {
            broker,
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
        inner.load_retained().await?;
        inner.load_sessions().await?;
        inner.start_dispatchers().await?;
        Ok(inner)
    }

    async fn load_retained(&self) -> Result<()> {
        let mut retained = BTreeMap::new();
        for (topic, record) in store::load_latest(&self.broker, RETAINED_TOPIC).await? {
            let Some(r) = record else { continue };
            let Some(msg) = Message::from_record(&r) else {
                continue;
            };
            let at = LogRef {
                topic: RETAINED_TOPIC.into(),
                partition: 0,
                offset: r.offset,
            };
            retained.insert(
                topic,
                Retained {
                    msg: Arc::new(msg),
                    at,
                },
            );
        }
        self.metrics
            .retained
            .store(retained.len() as i64, Ordering::Relaxed);
        *self.retained() = retained;
        Ok(())
    }

    async fn load_sessions(self: &Arc<Self>) -> Result<()> {
        let now = now_ms();
        let mut loaded = 0;
        for (client, record) in store::load_latest(&self.broker, SESSIONS_TOPIC).await? {
            let Some(state) = record
                .and_then(|r| r.value)
                .and_then(|v| SessionState::decode(&v))
            else {
                continue;
            };
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
            self.offline()
                .insert(client.clone(), Offline { state, generation });
            if let Some(ms) = left {
                self.expire_later(client, generation, Duration::from_millis(ms.max(0) as u64));
            }
            loaded += 1;
        }
        self.metrics.sessions.store(loaded, Ordering::Relaxed);
        if loaded > 0 {
            info!(sessions = loaded, "MQTT sessions restored");
        }
        Ok(())
    }

    /// Ends an offline session when its expiry passes (unless it came back).
    pub(crate) fn expire_later(self: &Arc<Self>, client: String, generation: u64, after: Duration) {
        let inner = Arc::clone(self);
        self.tracker.spawn(async move {
            tokio::select! {
                _ = inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(after) => {}
            }
            let expired = {
                let mut offline = inner.offline();
                match offline.get(&client) {
                    Some(o) if o.generation == generation => offline.remove(&client).is_some(),
                    _ => false,
                }
            };
            if expired {
                inner.forget_session(&client).await;
            }
        });
    }

    /// Drops a session's subscriptions and its stored state.
    pub(crate) async fn forget_session(&self, client: &str) {
        {
            let mut reg = self.registry();
            reg.trie.remove_all(&client.to_string());
            self.metrics
                .subscriptions
                .store(reg.trie.len() as i64, Ordering::Relaxed);
        }
        self.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = store::put(&self.broker, SESSIONS_TOPIC, client, None, Vec::new()).await {
            warn!(client, "could not delete an ended MQTT session: {e}");
        }
    }

    /// Stores a session's state durably.
    pub(crate) async fn save_session(&self, client: &str, state: &SessionState) -> Result<()> {
        store::put(
            &self.broker,
            SESSIONS_TOPIC,
            client,
            Some(Bytes::from(state.encode())),
            Vec::new(),
        )
        .await
        .map(|_| ())
    }

    /// Starts one dispatcher per partition of every mapped log topic, at
    /// the partition's current end.
    async fn start_dispatchers(self: &Arc<Self>) -> Result<()> {
        for (topic, count) in &self.partitions {
            for partition in 0..*count {
                let start = match self
                    .broker
                    .list_offset(topic, partition, OffsetSpec::Latest)
                {
                    Ok(Some((o, _))) => o,
                    Ok(None) => 0,
                    Err(e) => {
                        warn!(topic, partition, "MQTT dispatch cannot start here: {e}");
                        continue;
                    }
                };
                self.registry()
                    .positions
                    .insert((topic.clone(), partition), start);
                let inner = Arc::clone(self);
                let topic = topic.clone();
                self.tracker
                    .spawn(async move { inner.dispatch(topic, partition, start).await });
            }
        }
        Ok(())
    }

    /// Tails one partition and hands each message to its subscribers.
    async fn dispatch(self: Arc<Self>, topic: String, partition: u32, mut offset: i64) {
        loop {
            let fetched = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = self.broker.fetch(FetchRequest {
                    topic: topic.clone(),
                    partition,
                    offset,
                    max_bytes: 1 << 20,
                    min_bytes: 1,
                    max_wait: Duration::from_millis(500),
                }) => r,
            };
            let fetched = match fetched {
                Ok(f) => f,
                Err(fjord_broker::Error::OffsetOutOfRange { earliest, .. })
                    if earliest > offset =>
                {
                    offset = earliest;
                    continue;
                }
                Err(e) => {
                    warn!(topic, partition, "MQTT dispatch: {e}");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            if fetched.records.is_empty() {
                continue;
            }
            let records = match fjord_broker::decode_records(fetched.records, offset) {
                Ok(r) => r,
                Err(e) => {
                    warn!(topic, partition, offset, "MQTT dispatch skips a batch: {e}");
                    offset = fetched.next_offset.max(offset + 1);
                    continue;
                }
            };
            let messages: Vec<(i64, Arc<Message>)> = records
                .iter()
                .filter_map(|r| Message::from_record(r).map(|m| (r.offset, Arc::new(m))))
                .collect();
            let next = fetched.next_offset.max(offset);
            {
                let mut reg = self.registry();
                for (at, msg) in messages {
                    self.fan_out(&mut reg, &topic, partition, at, msg);
                }
                reg.positions.insert((topic.clone(), partition), next);
            }
            offset = next;
        }
    }

    fn fan_out(
        &self,
        reg: &mut Registry,
        topic: &str,
        partition: u32,
        offset: i64,
        msg: Arc<Message>,
    ) {
        let Registry { trie, online, .. } = reg;
        let matched = trie.matches(&msg.topic, |k| online.get(k).is_some_and(|o| !o.closing));
        for m in matched {
            if m.no_local && m.key == msg.from {
                continue;
            }
            let Some(session) = online.get_mut(&m.key).filter(|o| !o.closing) else {
                continue;
            };
            let key = (topic.to_string(), partition);
            if !m.shared && session.behind.contains_key(&key) {
                continue;
            }
            let qos = msg.qos.min(m.qos);
            let d = Delivery {
                msg: Arc::clone(&msg),
                at: LogRef {
                    topic: topic.to_string(),
                    partition,
                    offset,
                },
                qos,
                retain: m.retain_as_published && msg.retain,
                subscription_ids: m.subscription_ids,
            };
            match session.tx.try_send(d) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) if !m.shared => {
                    session.behind.insert(key, offset);
                    session.wake.notify_one();
                }
                Err(_) => self.metrics.dropped(Dropped::QueueFull),
            }
        }
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
            let records = idx.iter().map(|&i| msgs[i].to_record()).collect();
            async move {
                let r = self
                    .broker
                    .produce_records(&topic, Some(p), records, Compression::None, Acks::All)
                    .await;
                (idx, r)
            }
        });
        let done = futures::future::join_all(appends).await;
        let mut results: Vec<Result<()>> = (0..msgs.len()).map(|_| Ok(())).collect();
        for (idx, r) in done {
            if let Err(e) = r {
                let text = e.to_string();
                for i in idx {
                    results[i] = Err(Error::Publish(text.clone()));
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

    /// Sets, replaces or (empty payload) deletes a retained message.
    async fn retain(&self, m: &Message) -> Result<()> {
        if m.payload.is_empty() {
            store::put(&self.broker, RETAINED_TOPIC, &m.topic, None, Vec::new()).await?;
            let mut retained = self.retained();
            retained.remove(&m.topic);
            self.metrics
                .retained
                .store(retained.len() as i64, Ordering::Relaxed);
            return Ok(());
        }
        let record = m.to_record();
        let offset = store::put(
            &self.broker,
            RETAINED_TOPIC,
            &m.topic,
            record.value.clone(),
            record.headers,
        )
        .await?;
        let mut retained = self.retained();
        retained.insert(
            m.topic.clone(),
            Retained {
                msg: Arc::new(m.clone()),
                at: LogRef {
                    topic: RETAINED_TOPIC.into(),
                    partition: 0,
                    offset,
                },
            },
        );
        self.metrics
            .retained
            .store(retained.len() as i64, Ordering::Relaxed);
        Ok(())
    }

    /// Publishes a will now, or after `delay` unless the client returns.
    pub(crate) fn publish_will(self: &Arc<Self>, client: String, will: Message, delay: Duration) {
        let inner = Arc::clone(self);
        let cancel = CancellationToken::new();
        if let Some(old) = self.wills().insert(client.clone(), cancel.clone()) {
            old.cancel();
        }
        self.tracker.spawn(async move {
            if !delay.is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            {
                let mut wills = inner.wills();
                if cancel.is_cancelled() {
                    return;
                }
                wills.remove(&client);
            }
            let qos = will.qos;
            match inner.publish(vec![will]).await.pop() {
                Some(Ok(())) => inner.metrics.message_in(qos),
                Some(Err(e)) => warn!(client, "will message not published: {e}"),
                None => {}
            }
        });
    }

    /// Partitions whose committed end is ahead of their dispatcher: the
    /// end of each (what a subscription made now must not receive).
    pub(crate) fn undispatched(&self) -> crate::registry::Positions {
        let positions = self.registry().positions.clone();
        positions
            .into_iter()
            .filter_map(|((topic, partition), at)| {
                let end = match self
                    .broker
                    .list_offset(&topic, partition, OffsetSpec::Latest)
                {
                    Ok(Some((end, _))) => end,
                    _ => return None,
                };
                (end > at).then_some(((topic, partition), end))
            })
            .collect()
    }

    /// Cancels a pending delayed will of `client`.
    pub(crate) fn cancel_will(&self, client: &str) {
        if let Some(w) = self.wills().remove(client) {
            w.cancel();
        }
    }
}

/// The addresses the gateway's listeners bound.
#[derive(Debug, Clone, Default)]
pub struct MqttListeners {
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    pub ws: Option<SocketAddr>,
}
