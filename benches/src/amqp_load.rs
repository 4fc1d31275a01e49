//! The AMQP benchmark's load generator: one run of N publishers and N
//! consumers against one broker, measured.
//!
//! Publisher *i* and consumer *i* each have a connection and a channel of
//! their own. Consumer *i* declares the durable queue `bench-<tag>-<i>`,
//! sets `basic.qos` to `prefetch` and consumes it with manual acks;
//! publisher *i* puts its channel in confirm mode and publishes persistent
//! messages (delivery mode 2) to that queue through the default exchange,
//! with at most `inflight` of them unconfirmed. So N→N is N independent
//! 1→1 streams.
//!
//! Consumers ack every delivery on its own by default (`ack_every` 1), the
//! way most applications do; the next delivery is taken without waiting for
//! the ack to be written. With `ack_every` k, every k-th delivery is acked
//! with `multiple` set, and the rest when the run ends.
//!
//! Each body starts with its send time (ns since the run began, taken in
//! the `basic.publish` call) and a sequence number; consumers record
//! publish call → delivery latency in a histogram and count losses,
//! duplicates, reordering and redeliveries. Throughput is messages received
//! by all consumers / (last receipt − first publish). The client is lapin
//! (each connection has an I/O thread of its own) on the caller's tokio
//! runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::amqp_server::AmqpBroker;
use crate::mqtt_server::cpu_time;
use crate::progress::{Watch, counters, sum};
use crate::receipts::{Delivered, Receipts, stamp};
use crate::stats::thousands;

/// How long opening one client (connection, channel, declarations) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What one run does: `pairs` publisher→consumer streams, `messages` per
/// publisher.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub pairs: usize,
    pub messages: u64,
}

impl Scenario {
    /// "N→N", for the output.
    pub fn label(&self) -> String {
        format!("{0}→{0}", self.pairs)
    }
}

/// How the load is generated, the same for every run (the benchmark's
/// flags of the same names).
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Body bytes (at least 16: send time and sequence number).
    pub body: usize,
    /// Unconfirmed publishes a publisher may have.
    pub inflight: usize,
    /// `basic.qos` prefetch count of each consumer.
    pub prefetch: u16,
    /// Ack every delivery (1), or every k-th with `multiple` (k ≤ prefetch).
    pub ack_every: u16,
    /// Messages/s per publisher; 0 publishes as fast as the window allows.
    pub rate: u64,
    /// A run fails if no message is confirmed or received for this long.
    pub stall_secs: u64,
    /// Hard limit on one run.
    pub timeout_secs: u64,
}

/// One run against one server.
#[derive(Debug, Clone)]
pub struct RunFigures {
    pub delivered: Delivered,
    /// Deliveries the server flagged as redelivered.
    pub redelivered: u64,
    /// Publishes the server answered with `basic.nack`.
    pub nacked: u64,
    /// CPU time the server used during the run (user + system).
    pub server_cpu_s: f64,
    /// CPU the server and this load generator used during the run, as a
    /// share of one core (1.0 = one core busy for the whole run).
    pub server_cores: f64,
    pub client_cores: f64,
    /// What went wrong after the measurement (cleanup), if anything.
    pub notes: Vec<String>,
}

impl RunFigures {
    /// Server CPU time per message received, in µs.
    pub fn server_us_per_msg(&self) -> f64 {
        self.server_cpu_s * 1e6 / self.delivered.received.max(1) as f64
    }

    /// One line: throughput, latency, what was lost, duplicated, reordered
    /// or refused, and the CPU both sides used.
    pub fn describe(&self) -> String {
        let mut s = self.delivered.describe(
            8,
            &[
                (self.redelivered, "redelivered"),
                (self.nacked, "nacked by the server"),
            ],
        );
        s += &format!(
            "; CPU: server {:.2} s = {:.2} cores, {:.0} µs/msg; load generator {:.2} cores)",
            self.server_cpu_s,
            self.server_cores,
            self.server_us_per_msg(),
            self.client_cores
        );
        for note in &self.notes {
            s += &format!("; {note}");
        }
        s
    }
}

impl AsRef<Delivered> for RunFigures {
    fn as_ref(&self) -> &Delivered {
        &self.delivered
    }
}

/// Counters the run's monitor reads while the clients work.
struct Progress {
    /// Per publisher: publishes the server confirmed (ack or nack).
    done: Vec<AtomicU64>,
    /// All publishers: publishes the server nacked.
    nacked: AtomicU64,
    /// Per consumer: distinct messages received.
    received: Vec<AtomicU64>,
}

/// What one consumer saw.
struct ConsumerResult {
    seen: Receipts,
    redelivered: u64,
    /// Cleanup that failed after the measurement.
    notes: Vec<String>,
}

/// One run of `scenario` against `broker`; `tag` makes queue names unique.
/// The run's queues are deleted afterwards, also when it fails.
///
/// # Errors
/// A client cannot connect or declare, a connection or channel fails, the
/// server exits, nothing progresses for `stall_secs`, or the run exceeds
/// `timeout_secs`; the message says how far the run got.
pub async fn run_once(
    settings: &LoadSettings,
    broker: &mut AmqpBroker,
    scenario: Scenario,
    tag: &str,
) -> Result<RunFigures> {
    let result = run_measured(settings, broker, scenario, tag).await;
    if result.is_err() {
        match broker.exited() {
            Some(status) => {
                return result.with_context(|| format!("the server exited ({status})"));
            }
            None => delete_queues(&broker.url(), tag, scenario.pairs).await,
        }
    }
    result
}

async fn run_measured(
    settings: &LoadSettings,
    broker: &mut AmqpBroker,
    scenario: Scenario,
    tag: &str,
) -> Result<RunFigures> {
    let n = scenario.pairs;
    let m = scenario.messages;
    let url = broker.url();
    let base = Instant::now();
    let progress = Arc::new(Progress {
        done: counters(n),
        nacked: AtomicU64::new(0),
        received: counters(n),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Dropping these sets (on an early return) aborts every client task,
    // and dropping a lapin connection closes it.
    let mut consumers = JoinSet::new();
    let mut publishers = JoinSet::new();
    // Consumers first: every queue exists and is consumed before the first
    // publish.
    for i in 0..n {
        let queue = queue_name(tag, i);
        let (conn, channel, consumer) =
            tokio::time::timeout(SETUP_TIMEOUT, open_consumer(&url, &queue, i, settings))
                .await
                .with_context(|| format!("consumer {i}: not ready after 10 s"))?
                .with_context(|| format!("consumer {i} of queue {queue}"))?;
        consumers.spawn(consume(
            ConsumerSide {
                conn,
                channel,
                consumer,
                queue,
            },
            i,
            m,
            settings.ack_every,
            base,
            Arc::clone(&progress),
            stop_rx.clone(),
        ));
    }
    let mut opened = Vec::new();
    for i in 0..n {
        let client = tokio::time::timeout(SETUP_TIMEOUT, open_publisher(&url))
            .await
            .with_context(|| format!("publisher {i}: not ready after 10 s"))?
            .with_context(|| format!("publisher {i}"))?;
        opened.push(client);
    }

    let start_ns = base.elapsed().as_nanos() as u64;
    let cpu_before = (broker.cpu_time(), cpu_time("self"));
    for (i, (conn, channel)) in opened.into_iter().enumerate() {
        publishers.spawn(publish(
            PublisherSide {
                conn,
                channel,
                queue: queue_name(tag, i).into(),
            },
            i,
            m,
            settings.clone(),
            base,
            Arc::clone(&progress),
            stop_rx.clone(),
        ));
    }

    let expected = m * n as u64;
    let mut watch = Watch::new(settings.stall_secs, settings.timeout_secs);
    let how_far = |p: &Progress| {
        let nacked = p.nacked.load(Ordering::Relaxed);
        format!(
            "{} of {} messages confirmed{}, {} of {} received",
            thousands(sum(&p.done)),
            thousands(expected),
            if nacked > 0 {
                format!(" ({} of them nacked)", thousands(nacked))
            } else {
                String::new()
            },
            thousands(sum(&p.received)),
            thousands(expected)
        )
    };
    loop {
        tokio::select! {
            Some(done) = publishers.join_next() => {
                // Publishers end after the stop signal, or on error.
                done.context("publisher task")??;
                bail!("a publisher ended early; {}", how_far(&progress));
            }
            Some(done) = consumers.join_next() => {
                done.context("consumer task")??;
                bail!("a consumer ended early; {}", how_far(&progress));
            }
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if let Some(status) = broker.exited() {
            bail!("the server exited ({status}); {}", how_far(&progress));
        }
        let now = (sum(&progress.done), sum(&progress.received));
        watch.saw(now);
        // Nacked messages were not taken, so they are not waited for.
        let deliverable = expected - progress.nacked.load(Ordering::Relaxed);
        if now.0 == expected && now.1 >= deliverable {
            break;
        }
        watch.check("confirmed", || how_far(&progress))?;
    }

    let cpu_after = (broker.cpu_time(), cpu_time("self"));
    let wall = Duration::from_nanos(base.elapsed().as_nanos() as u64 - start_ns);
    let used = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(b), Some(a)) => a.saturating_sub(b).as_secs_f64(),
        _ => f64::NAN,
    };
    let server_cpu_s = used(cpu_before.0, cpu_after.0);
    let client_cpu_s = used(cpu_before.1, cpu_after.1);
    // Everyone stops; consumers delete their queues and hand back what
    // they saw.
    let _ = stop_tx.send(true);
    let mut total = Receipts::new(0, start_ns)?;
    let mut redelivered = 0;
    let mut notes = Vec::new();
    let collect = async {
        while let Some(done) = consumers.join_next().await {
            let r = done.context("consumer task")??;
            total.add(&r.seen)?;
            redelivered += r.redelivered;
            notes.extend(r.notes);
        }
        while let Some(done) = publishers.join_next().await {
            done.context("publisher task")??;
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .context("clients did not close within 30 s")??;
    Ok(RunFigures {
        delivered: total.delivered(start_ns, expected),
        redelivered,
        nacked: progress.nacked.load(Ordering::Relaxed),
        server_cpu_s,
        server_cores: server_cpu_s / wall.as_secs_f64(),
        client_cores: client_cpu_s / wall.as_secs_f64(),
        notes,
    })
}

fn queue_name(tag: &str, i: usize) -> String {
    format!("bench-{tag}-{i}")
}

/// Deletes the run's queues (best effort, bounded): after a failed run, so
/// that the messages it left do not weigh on the next runs.
async fn delete_queues(url: &str, tag: &str, pairs: usize) {
    let _ = tokio::time::timeout(SETUP_TIMEOUT, async {
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        for i in 0..pairs {
            // A failed delete closes the channel: one channel per queue.
            let channel = conn.create_channel().await?;
            let _ = channel
                .queue_delete(queue_name(tag, i).into(), QueueDeleteOptions::default())
                .await;
        }
        conn.close(200, "cleanup".into()).await
    })
    .await;
}

/// A consumer's connection, channel (qos set), consumer and queue name.
struct ConsumerSide {
    conn: Connection,
    channel: Channel,
    consumer: Consumer,
    queue: String,
}

async fn open_consumer(
    url: &str,
    queue: &str,
    i: usize,
    settings: &LoadSettings,
) -> Result<(Connection, Channel, Consumer)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connect")?;
    let channel = conn.create_channel().await.context("channel.open")?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .context("queue.declare (durable)")?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await
        .context("basic.qos")?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            format!("bench-consumer-{i}").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("basic.consume (manual acks)")?;
    Ok((conn, channel, consumer))
}

/// Records every delivery and acks it (see the module header) until the
/// stop signal; then acks what is left, cancels, deletes its queue and
/// closes its connection.
async fn consume(
    side: ConsumerSide,
    i: usize,
    m: u64,
    ack_every: u16,
    base: Instant,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Result<ConsumerResult> {
    let ConsumerSide {
        conn,
        channel,
        mut consumer,
        queue,
    } = side;
    let multiple = ack_every > 1;
    // Acks handed to lapin but not yet written (at most `prefetch`: the
    // server sends no more until they arrive). They go straight to the
    // channel, and are first polled in the order they were made, so they
    // are written in delivery order, which a multiple ack needs. (An
    // `Acker` would hand each to a task of its own, in no set order.)
    let mut acks: FuturesUnordered<Pin<Box<dyn Future<Output = lapin::Result<()>> + Send + '_>>> =
        FuturesUnordered::new();
    // The last delivery not acked yet (`ack_every` > 1).
    let mut unacked = None;
    let mut since_ack = 0;
    let mut seen = Receipts::new(m, 0)?;
    let mut redelivered = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(acked) = acks.next(), if !acks.is_empty() => {
                acked.with_context(|| format!("consumer {i}: basic.ack"))?;
            }
            delivery = consumer.next() => {
                let received = seen.received;
                let Some(delivery) = delivery else {
                    bail!("consumer {i}: the server cancelled it after {received} messages");
                };
                let delivery = delivery
                    .with_context(|| format!("consumer {i} after {received} messages"))?;
                let now = base.elapsed().as_nanos() as u64;
                since_ack += 1;
                if since_ack >= ack_every {
                    acks.push(Box::pin(
                        channel.basic_ack(delivery.delivery_tag, BasicAckOptions { multiple }),
                    ));
                    since_ack = 0;
                    unacked = None;
                } else {
                    unacked = Some(delivery.delivery_tag);
                }
                if delivery.redelivered {
                    redelivered += 1;
                }
                match seen.record(&delivery.data, now) {
                    Ok(true) => progress.received[i].store(seen.received, Ordering::Relaxed),
                    Ok(false) => {}
                    Err(e) => bail!("consumer {i}: {}", e.describe("body")),
                }
            }
        }
    }

    let mut notes = Vec::new();
    let mut note = |what: &str, e: lapin::Error| notes.push(format!("consumer {i}: {what}: {e}"));
    while let Some(acked) = acks.next().await {
        if let Err(e) = acked {
            note("basic.ack", e);
        }
    }
    drop(acks);
    if let Some(tag) = unacked
        && let Err(e) = channel.basic_ack(tag, BasicAckOptions { multiple }).await
    {
        note("last basic.ack", e);
    }
    if let Err(e) = channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
    {
        note("basic.cancel", e);
    }
    if let Err(e) = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
    {
        note("queue.delete", e);
    }
    if let Err(e) = conn.close(200, "done".into()).await {
        note("connection.close", e);
    }
    Ok(ConsumerResult {
        seen,
        redelivered,
        notes,
    })
}

/// A publisher's connection, channel (in confirm mode) and queue.
struct PublisherSide {
    conn: Connection,
    channel: Channel,
    queue: ShortString,
}

async fn open_publisher(url: &str) -> Result<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connect")?;
    let channel = conn.create_channel().await.context("channel.open")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("confirm.select")?;
    Ok((conn, channel))
}

/// Publishes `m` persistent messages, `rate` per second or (0) as fast as
/// the window of `inflight` unconfirmed publishes allows, and counts the
/// confirms; then waits for the stop signal and closes its connection.
///
/// The publishes in the window are futures polled in the order they were
/// made, so they are written in sequence order; each takes its send time
/// when it is first polled, in the `basic.publish` call.
async fn publish(
    side: PublisherSide,
    i: usize,
    m: u64,
    settings: LoadSettings,
    base: Instant,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let PublisherSide {
        conn,
        channel,
        queue,
    } = side;
    let properties = BasicProperties::default().with_delivery_mode(2);
    let start = tokio::time::Instant::now();
    let due = |seq: u64| start + Duration::from_secs_f64(seq as f64 / settings.rate as f64);
    let mut window = FuturesUnordered::new();
    let mut seq = 0;
    loop {
        while seq < m
            && window.len() < settings.inflight
            && (settings.rate == 0 || tokio::time::Instant::now() >= due(seq))
        {
            window.push(publish_one(
                &channel,
                &queue,
                &properties,
                seq,
                settings.body,
                base,
            ));
            seq += 1;
        }
        if seq == m && window.is_empty() {
            break;
        }
        let wake =
            (settings.rate > 0 && seq < m && window.len() < settings.inflight).then(|| due(seq));
        tokio::select! {
            Some(confirmation) = window.next(), if !window.is_empty() => {
                match confirmation.with_context(|| format!("publisher {i}"))? {
                    Confirmation::Ack(_) => {}
                    Confirmation::Nack(_) => {
                        progress.nacked.fetch_add(1, Ordering::Relaxed);
                    }
                    Confirmation::NotRequested => {
                        bail!("publisher {i}: the channel is not in confirm mode");
                    }
                }
                progress.done[i].fetch_add(1, Ordering::Relaxed);
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(start)), if wake.is_some() => {}
        }
    }
    drop(window);
    let _ = stop.changed().await;
    conn.close(200, "done".into())
        .await
        .with_context(|| format!("publisher {i}: connection.close"))?;
    Ok(())
}

/// One persistent publish of `size` bytes, [`stamp`]ed; resolves to the
/// server's confirm.
async fn publish_one(
    channel: &Channel,
    queue: &ShortString,
    properties: &BasicProperties,
    seq: u64,
    size: usize,
    base: Instant,
) -> Result<Confirmation> {
    let body = stamp(size, seq, base);
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.clone(),
            BasicPublishOptions::default(),
            &body,
            properties.clone(),
        )
        .await
        .with_context(|| format!("basic.publish {seq}"))?;
    confirm
        .await
        .with_context(|| format!("confirm of publish {seq}"))
}
