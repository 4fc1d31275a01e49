//! The MQTT benchmark's load generator: one run of N publishers and N
//! subscribers against one broker, measured.
//!
//! Publisher *i* publishes to `bench/<tag>/<i>` and subscriber *i*
//! subscribes to that one topic, so N→N is N independent 1→1 streams. QoS 1
//! publishers keep `inflight` messages unacknowledged at most; QoS 0
//! publishers send as fast as the client writes (or at a fixed rate). Each
//! payload starts with its send time (ns since the run began, taken just
//! before the publish call) and a sequence number; subscribers record
//! publish call → receipt latency in a histogram and count losses,
//! duplicates and reordering. Throughput is messages received by all
//! subscribers / (last receipt − first publish). The clients are rumqttc
//! (MQTT 3.1.1, clean session).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode,
};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::mqtt_server::{BrokerProcess, cpu_time};
use crate::progress::{Watch, counters, sum};
use crate::receipts::{Delivered, Receipts, stamp};
use crate::stats::thousands;

/// Requests a client may queue before `publish` waits (rumqttc channel).
const CLIENT_QUEUE: usize = 10;

/// What one run does: `pairs` publisher→subscriber streams at `qos`,
/// `messages` per publisher.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub pairs: usize,
    pub qos: QoS,
    pub messages: u64,
}

impl Scenario {
    /// "N→N QoS q", for the output.
    pub fn label(&self) -> String {
        format!("{0}→{0} QoS {1}", self.pairs, self.qos as u8)
    }
}

/// How the load is generated, the same for every run (the benchmark's
/// flags of the same names).
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Payload bytes (at least 16: send time and sequence number).
    pub payload: usize,
    /// Unacknowledged QoS 1 messages a publisher may have (rumqttc inflight).
    pub inflight: u16,
    /// Messages/s per publisher; 0 publishes as fast as the client takes
    /// them.
    pub rate: u64,
    /// A run fails if no message is acknowledged or received for this long.
    pub stall_secs: u64,
    /// QoS 0: once every message is written, how long subscribers may stay
    /// silent before the missing ones count as lost.
    pub drain_ms: u64,
    /// Hard limit on one run.
    pub timeout_secs: u64,
}

/// One run against one server.
#[derive(Debug, Clone)]
pub struct RunFigures {
    pub delivered: Delivered,
    /// CPU the server and this load generator used during the run, as a
    /// share of one core (1.0 = one core busy for the whole run).
    pub server_cores: f64,
    pub client_cores: f64,
    /// Messages the server counted as dropped during the run, by reason
    /// (Fjord's `/metrics`; empty for Mosquitto).
    pub server_dropped: Vec<(String, u64)>,
}

impl RunFigures {
    /// One line: throughput, latency, what was lost, duplicated or
    /// reordered, what the server dropped, and the CPU both sides used.
    pub fn describe(&self) -> String {
        let mut s = self.delivered.describe(9, &[]);
        s += &drop_note(&self.server_dropped);
        s + &format!(
            "; CPU: server {:.2} cores, load generator {:.2} cores)",
            self.server_cores, self.client_cores
        )
    }
}

/// Counters the run's monitor reads while the clients work.
struct Progress {
    /// Per publisher: PUBACKs (QoS 1) or PUBLISHes written (QoS 0).
    done: Vec<AtomicU64>,
    /// Per subscriber: distinct messages received.
    received: Vec<AtomicU64>,
}

impl AsRef<Delivered> for RunFigures {
    fn as_ref(&self) -> &Delivered {
        &self.delivered
    }
}

fn client(id: String, broker: &BrokerProcess, inflight: u16) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, broker.addr.ip().to_string(), broker.addr.port());
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_inflight(inflight);
    AsyncClient::new(options, CLIENT_QUEUE)
}

/// One run of `scenario` against `broker`; `tag` makes topics and client
/// ids unique.
///
/// # Errors
/// A client cannot connect or subscribe, a connection fails, the server
/// exits, nothing progresses for `stall_secs`, or the run exceeds
/// `timeout_secs`; the message says how far the run got.
pub async fn run_once(
    settings: &LoadSettings,
    broker: &mut BrokerProcess,
    scenario: Scenario,
    tag: &str,
) -> Result<RunFigures> {
    let n = scenario.pairs;
    let m = scenario.messages;
    let base = Instant::now();
    let progress = Arc::new(Progress {
        done: counters(n),
        received: counters(n),
    });
    // Dropping these sets (on an early return) aborts every client task.
    let mut subscribers = JoinSet::new();
    let mut publishers = JoinSet::new();
    let mut sub_clients = Vec::new();
    let mut pub_clients = Vec::new();
    let mut ready = Vec::new();
    for i in 0..n {
        let (c, el) = client(format!("sub-{tag}-{i}"), broker, settings.inflight);
        let (tx, rx) = oneshot::channel();
        subscribers.spawn(subscriber(el, i, m, base, Arc::clone(&progress), tx));
        c.subscribe(format!("bench/{tag}/{i}"), scenario.qos)
            .await?;
        sub_clients.push(c);
        ready.push((format!("subscriber {i} (SUBACK)"), rx));
    }
    for i in 0..n {
        let (c, el) = client(format!("pub-{tag}-{i}"), broker, settings.inflight);
        let (tx, rx) = oneshot::channel();
        publishers.spawn(publisher_events(
            el,
            i,
            scenario.qos,
            Arc::clone(&progress),
            tx,
        ));
        pub_clients.push(c);
        ready.push((format!("publisher {i} (CONNACK)"), rx));
    }
    for (who, rx) in ready {
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                // The task ended before it was ready: report its error.
                let err = first_error(&mut subscribers, &mut publishers).await;
                bail!("{who}: {err}");
            }
            Err(_) => bail!("{who}: not ready after 10 s"),
        }
    }

    let drops_before = broker.dropped();
    let start_ns = base.elapsed().as_nanos() as u64;
    let cpu_before = (broker.cpu_time(), cpu_time("self"));
    for (i, c) in pub_clients.iter().enumerate() {
        publishers.spawn(publish_loop(
            c.clone(),
            format!("bench/{tag}/{i}"),
            scenario.qos,
            m,
            settings.payload,
            settings.rate,
            base,
        ));
    }

    let expected = m * n as u64;
    let drain = Duration::from_millis(settings.drain_ms);
    let mut watch = Watch::new(settings.stall_secs, settings.timeout_secs);
    let how_far = |p: &Progress, broker: &BrokerProcess| {
        format!(
            "{} of {} messages {}, {} of {} received{}",
            thousands(sum(&p.done)),
            thousands(expected),
            if scenario.qos == QoS::AtLeastOnce {
                "acknowledged"
            } else {
                "written"
            },
            thousands(sum(&p.received)),
            thousands(expected),
            drop_note(&dropped_since(broker, drops_before.as_deref()))
        )
    };
    loop {
        tokio::select! {
            Some(done) = publishers.join_next() => {
                // Publish loops end when they have handed over every
                // message; event loops only after DISCONNECT, or on error.
                done.context("publisher task")??;
            }
            Some(done) = subscribers.join_next() => {
                done.context("subscriber task")??;
                bail!("a subscriber's connection ended early; {}", how_far(&progress, broker));
            }
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if let Some(status) = broker.exited() {
            bail!(
                "the server exited ({status}); {}",
                how_far(&progress, broker)
            );
        }
        let now = (sum(&progress.done), sum(&progress.received));
        watch.saw(now);
        let written = now.0 == expected;
        if written && now.1 == expected {
            break;
        }
        if written && scenario.qos == QoS::AtMostOnce && watch.still_for() >= drain {
            break;
        }
        watch.check("acknowledged", || how_far(&progress, broker))?;
    }

    let cpu_after = (broker.cpu_time(), cpu_time("self"));
    let wall = Duration::from_nanos(base.elapsed().as_nanos() as u64 - start_ns);
    let cores = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(b), Some(a)) => a.saturating_sub(b).as_secs_f64() / wall.as_secs_f64(),
        _ => f64::NAN,
    };
    // Everyone disconnects; subscribers hand back what they saw.
    for c in pub_clients.iter().chain(&sub_clients) {
        let _ = c.try_disconnect();
    }
    let mut total = Receipts::new(0, start_ns)?;
    let collect = async {
        while let Some(done) = subscribers.join_next().await {
            total.add(&done.context("subscriber task")??)?;
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .context("subscribers did not disconnect within 10 s")??;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while publishers.join_next().await.is_some() {}
    })
    .await;
    Ok(RunFigures {
        delivered: total.delivered(start_ns, expected),
        server_cores: cores(cpu_before.0, cpu_after.0),
        client_cores: cores(cpu_before.1, cpu_after.1),
        server_dropped: dropped_since(broker, drops_before.as_deref()),
    })
}

/// Drops the server counted since `before`, by reason, non-zero only.
fn dropped_since(broker: &BrokerProcess, before: Option<&[(String, u64)]>) -> Vec<(String, u64)> {
    let (Some(before), Some(now)) = (before, broker.dropped()) else {
        return Vec::new();
    };
    now.into_iter()
        .filter_map(|(reason, n)| {
            let was = before
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, v)| *v);
            (n > was).then(|| (reason, n - was))
        })
        .collect()
}

fn drop_note(dropped: &[(String, u64)]) -> String {
    if dropped.is_empty() {
        return String::new();
    }
    let reasons: Vec<String> = dropped
        .iter()
        .map(|(r, n)| format!("{} {r}", thousands(*n)))
        .collect();
    format!(
        "; the server counted dropped messages: {}",
        reasons.join(", ")
    )
}

/// The first error among tasks that have ended (waits briefly for one).
async fn first_error(a: &mut JoinSet<Result<Receipts>>, b: &mut JoinSet<Result<()>>) -> String {
    let wait = Duration::from_secs(1);
    if let Ok(Some(Ok(Err(e)))) = tokio::time::timeout(wait, a.join_next()).await {
        return format!("{e:#}");
    }
    if let Ok(Some(Ok(Err(e)))) = tokio::time::timeout(wait, b.join_next()).await {
        return format!("{e:#}");
    }
    "its task ended".into()
}

/// Publishes `m` messages, `rate` per second or (0) as fast as the client
/// takes them, each [`stamp`]ed.
async fn publish_loop(
    client: AsyncClient,
    topic: String,
    qos: QoS,
    m: u64,
    size: usize,
    rate: u64,
    base: Instant,
) -> Result<()> {
    let start = tokio::time::Instant::now();
    for seq in 0..m {
        if rate > 0 {
            tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / rate as f64))
                .await;
        }
        let payload = stamp(size, seq, base);
        client
            .publish(topic.as_str(), qos, false, payload)
            .await
            .with_context(|| format!("publish {seq} to {topic}"))?;
    }
    Ok(())
}

/// Drives a publisher's connection: counts PUBACKs (QoS 1) or PUBLISHes
/// written (QoS 0) until its DISCONNECT has been sent.
async fn publisher_events(
    mut el: EventLoop,
    i: usize,
    qos: QoS,
    progress: Arc<Progress>,
    connected: oneshot::Sender<()>,
) -> Result<()> {
    let mut connected = Some(connected);
    loop {
        let event = el.poll().await.with_context(|| {
            format!(
                "publisher {i} connection after {} messages",
                progress.done[i].load(Ordering::Relaxed)
            )
        })?;
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                if let Some(tx) = connected.take() {
                    let _ = tx.send(());
                }
            }
            Event::Incoming(Packet::PubAck(_)) if qos == QoS::AtLeastOnce => {
                progress.done[i].fetch_add(1, Ordering::Relaxed);
            }
            Event::Outgoing(Outgoing::Publish(_)) if qos == QoS::AtMostOnce => {
                progress.done[i].fetch_add(1, Ordering::Relaxed);
            }
            Event::Outgoing(Outgoing::Disconnect) => return Ok(()),
            _ => {}
        }
    }
}

/// Drives a subscriber's connection: signals its SUBACK, records every
/// message until its DISCONNECT has been sent.
async fn subscriber(
    mut el: EventLoop,
    i: usize,
    m: u64,
    base: Instant,
    progress: Arc<Progress>,
    subscribed: oneshot::Sender<()>,
) -> Result<Receipts> {
    let mut subscribed = Some(subscribed);
    let mut seen = Receipts::new(m, 0)?;
    loop {
        let event = el.poll().await.with_context(|| {
            format!("subscriber {i} connection after {} messages", seen.received)
        })?;
        match event {
            Event::Incoming(Packet::SubAck(ack)) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    bail!("subscriber {i}: the server refused the subscription");
                }
                if let Some(tx) = subscribed.take() {
                    let _ = tx.send(());
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                let now = base.elapsed().as_nanos() as u64;
                match seen.record(&p.payload, now) {
                    Ok(true) => progress.received[i].store(seen.received, Ordering::Relaxed),
                    Ok(false) => {}
                    Err(e) => bail!("subscriber {i}: {}", e.describe("payload")),
                }
            }
            Event::Outgoing(Outgoing::Disconnect) => return Ok(seen),
            _ => {}
        }
    }
}
