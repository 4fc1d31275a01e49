//! One client connection: CONNECT and session takeover or resume, then
//! the packet loop (publishes appended to the log in batches and
//! acknowledged once committed, subscriptions, deliveries, keep-alive),
//! and on close the session stored or ended and the will published.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::auth::{Action, Principal};
use crate::codec::{
    self, Ack, DecodeError, Disconnect, Packet, Properties, Protocol, Publish, reason,
};
use crate::hub::{Hub, now_ms};
use crate::message::{Message, MessageProps, Receipt};
use crate::metrics::Dropped;
use crate::outbound::Outbound;
use crate::registry::{Delivery, Online, Positions};
use crate::session::{LogRef, SessionState, StoredSub, Unsure};
use crate::store;
use crate::topic;
use crate::trie::SubOptions;

mod handshake;
mod inbound;
mod persist;
mod resume;
mod subscription;

use handshake::{admit, connack, read_connect, write_packet};

/// Bytes read ahead from a busy socket before they are handled.
const MAX_READ_AHEAD: usize = 1 << 20;

/// How often a persistent session saves how far it got (see
/// `Connection::checkpoint`), at most.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT with reason 0: no will.
    Normal,
    /// DISCONNECT 0x04, a lost connection, a protocol error, keep-alive.
    WithWill,
    TakenOver,
    Shutdown,
}

/// A publish waiting for its batch's append.
struct Pending {
    qos: u8,
    packet_id: u16,
    /// Index into the batch's messages, or the reason it is not appended.
    outcome: Result<usize, u8>,
}

struct Connection {
    gw: Arc<Hub>,
    /// Subscriptions made while dispatch lagged behind the log: per
    /// partition, the log end when they were made. Messages below it were
    /// published before the subscription and are not delivered through it.
    recent: Vec<(String, Positions)>,
    /// Per partition, the offset a resumed session read its missed
    /// messages up to, where that was past the dispatcher: deliveries
    /// below it were handled by the resume and are not sent again.
    resumed_below: Positions,
    /// This connection's id in the registry.
    id: u64,
    /// The offset of its claim on the client id.
    claim: i64,
    /// Woken when the session falls behind on a partition (and after an
    /// acknowledgement while it catches up).
    wake: Arc<tokio::sync::Notify>,
    /// Reading missed messages from the log (see `catch_up`).
    catching_up: bool,
    /// Per partition a resume left to the catch-up, the offset it reads
    /// the log from: deliveries the dispatcher sent before it knew are
    /// dropped, the catch-up gives them in order.
    from_log: Positions,
    /// A resume reads its shared subscriptions' matches too (see `resume`).
    resume_shared: bool,
    /// The session has a record in `__mqtt_sessions` (to delete when it
    /// ends); a session that never outlived a connection has none.
    stored: std::sync::atomic::AtomicBool,
    protocol: Protocol,
    client_id: String,
    principal: Principal,
    keep_alive: Option<Duration>,
    /// Seconds the session outlives the connection; `Some(0)`: it ends with it.
    expiry: Option<u32>,
    subs: BTreeMap<String, SubOptions>,
    incoming_qos2: BTreeSet<u16>,
    /// QoS 2 messages this connection stored so far (see [`Receipt`]).
    incoming_seq: u64,
    /// A QoS 2 append that failed may have been written: the cursors to
    /// look for it from, and the first such receipt (see `resume`).
    unsure: Option<(Positions, u64)>,
    /// What earlier connections may have stored that a refused resume
    /// could not look for (kept in the session's record).
    inherited: Vec<Unsure>,
    /// PUBRELs waiting for the save that records their release.
    held: Vec<Packet>,
    /// QoS 2 deliveries completed (PUBCOMP) at or past the session's
    /// cursors: never sent again, whatever a resume reads from the log.
    completed_qos2: BTreeSet<LogRef>,
    inbound_aliases: HashMap<u16, String>,
    will: Option<(Message, Duration)>,
    outbound: Outbound,
    /// Dispatch positions when this connection registered: what a stored
    /// session has surely seen while online.
    base_cursors: Positions,
    wbuf: BytesMut,
    out: Vec<Packet>,
}

/// Serves one client until it goes away.
pub(crate) async fn serve<S>(gw: Arc<Hub>, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    gw.metrics.connections.fetch_add(1, Ordering::Relaxed);
    run(Arc::clone(&gw), io).await;
    gw.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

async fn run<S>(gw: Arc<Hub>, mut io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Small until the client sends more: idle connections stay cheap.
    let mut rbuf = BytesMut::with_capacity(512);
    let Some(connect) = Box::pin(read_connect(&gw, &mut io, &mut rbuf)).await else {
        return;
    };
    let protocol = connect.protocol;
    let (client_id, assigned, principal) = match admit(&gw, &connect) {
        Ok(admitted) => admitted,
        Err(code) => {
            gw.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
            let p = connack(protocol, false, code, Properties::default());
            write_packet(&mut io, p, protocol).await;
            return;
        }
    };

    // Take the session over from a connection that still has it.
    loop {
        let existing = gw
            .registry()
            .online
            .get(&client_id)
            .map(|o| (o.kick.clone(), o.done.clone()));
        let Some((kick, mut done)) = existing else {
            break;
        };
        kick.cancel();
        let _ = done.wait_for(|d| *d).await;
    }
    gw.cancel_will(&client_id);

    // Session expiry: MQTT 5 asks; 3.1.1 clean session = 0, else forever
    // (both bounded by the configured maximum).
    let max = gw
        .config
        .max_session_expiry
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let asked = match protocol {
        Protocol::V5 => match connect.properties.session_expiry_interval.unwrap_or(0) {
            u32::MAX => None,
            secs => Some(secs),
        },
        Protocol::V311 if connect.clean_start => Some(0),
        Protocol::V311 => None,
    };
    let expiry = match (asked, max) {
        (Some(a), Some(m)) => Some(a.min(m)),
        (None, Some(m)) => Some(m),
        (a, None) => a,
    };
    let conn_id = gw.next_id();
    // A session kept here (its expiry timer and will are this node's).
    let local = gw.offline().remove(&client_id);
    let kept_here = local.is_some();
    // The claim (a record in `__mqtt_sessions`) takes the client id over
    // on every node and returns its latest session, wherever it was kept.
    let (claim, mut stored) = match gw
        .claim(&client_id, conn_id, connect.clean_start, expiry)
        .await
    {
        Ok(claimed) => claimed,
        Err(e) => {
            debug!(client = %client_id, "session not claimed: {e}");
            if let Some(o) = local {
                gw.offline().insert(client_id, o);
            }
            gw.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
            let code = match protocol {
                Protocol::V5 => reason::SERVER_UNAVAILABLE,
                Protocol::V311 => reason::V3_SERVER_UNAVAILABLE,
            };
            let p = connack(protocol, false, code, Properties::default());
            write_packet(&mut io, p, protocol).await;
            return;
        }
    };
    if connect.clean_start && kept_here {
        // The session kept here ends (the claim replaced its record
        // already).
        gw.drop_local(&client_id);
        stored = None;
    }
    let session_present = stored.is_some();
    if !(kept_here && session_present) {
        gw.metrics.sessions.fetch_add(1, Ordering::Relaxed);
    }

    let keep_alive = match (connect.keep_alive, gw.config.max_keep_alive) {
        (0, _) => 0,
        (k, m) => k.min(m),
    };
    let mut props = Properties {
        receive_maximum: Some(gw.config.receive_maximum),
        maximum_packet_size: Some(u32::try_from(gw.config.max_packet_size).unwrap_or(u32::MAX)),
        topic_alias_maximum: Some(gw.config.topic_alias_maximum),
        assigned_client_identifier: assigned,
        ..Properties::default()
    };
    if keep_alive != connect.keep_alive {
        props.server_keep_alive = Some(keep_alive);
    }
    if protocol == Protocol::V5 && expiry != asked {
        props.session_expiry_interval = Some(expiry.unwrap_or(u32::MAX));
    }

    let (tx, rx) = mpsc::channel(gw.config.max_queued_messages.max(16));
    let kick = CancellationToken::new();
    let (done_tx, done_rx) = watch::channel(false);
    let wake = Arc::new(tokio::sync::Notify::new());
    // A resumed session counts as missed what was acknowledged before it
    // came back, even when dispatch still lags behind it (the log ends,
    // taken before registering).
    let lag = if stored.is_some() {
        gw.undispatched().await
    } else {
        Positions::new()
    };
    let base_cursors = {
        let mut reg = gw.registry();
        reg.online.insert(
            client_id.clone(),
            Online {
                tx,
                kick: kick.clone(),
                done: done_rx,
                connection: conn_id,
                behind: std::collections::BTreeMap::new(),
                wake: Arc::clone(&wake),
                closing: false,
                claim,
                handed_to: None,
            },
        );
        // A session kept here has its subscriptions in the trie already;
        // one from another node brings them (in the same cut as the
        // positions, so no message falls between).
        if let Some(state) = &stored {
            for s in &state.subscriptions {
                reg.trie.insert(client_id.clone(), &s.filter, s.options());
            }
            gw.metrics
                .subscriptions
                .store(reg.trie.len() as i64, Ordering::Relaxed);
        }
        reg.positions.clone()
    };
    let mut resume_to = base_cursors.clone();
    let mut resumed_below = Positions::new();
    for (key, end) in lag {
        if let Some(at) = resume_to.get_mut(&key)
            && *at < end
        {
            *at = end;
            resumed_below.insert(key, end);
        }
    }

    let will = connect.will.as_ref().map(|w| {
        let delay = w.properties.will_delay_interval.unwrap_or(0);
        (
            Message {
                topic: w.topic.clone(),
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
                from: client_id.clone(),
                timestamp_ms: 0,
                props: MessageProps::from_publish(&w.properties),
                receipt: None,
            },
            Duration::from_secs(u64::from(delay)),
        )
    });
    let mut conn = Connection {
        outbound: Outbound::new(
            protocol,
            connect.properties.receive_maximum.unwrap_or(u16::MAX),
            connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
            connect.properties.topic_alias_maximum.unwrap_or(0),
            gw.config.max_queued_messages,
        ),
        gw: Arc::clone(&gw),
        recent: Vec::new(),
        resumed_below,
        id: conn_id,
        claim,
        wake: Arc::clone(&wake),
        catching_up: false,
        from_log: Positions::new(),
        resume_shared: false,
        stored: std::sync::atomic::AtomicBool::new(false),
        protocol,
        client_id: client_id.clone(),
        principal,
        keep_alive: (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
        expiry,
        subs: BTreeMap::new(),
        incoming_qos2: BTreeSet::new(),
        incoming_seq: 0,
        unsure: None,
        inherited: Vec::new(),
        held: Vec::new(),
        completed_qos2: BTreeSet::new(),
        inbound_aliases: HashMap::new(),
        will,
        base_cursors: base_cursors.clone(),
        wbuf: BytesMut::new(),
        out: Vec::new(),
    };
    conn.out.push(connack(protocol, session_present, 0, props));
    // The claim is a record to delete when the session ends.
    conn.stored.store(true, Ordering::Relaxed);
    if let Some(state) = stored {
        conn.stored.store(true, Ordering::Relaxed);
        if !Box::pin(conn.resume(state, &resume_to)).await {
            // Refused, the session kept (with what is still to be looked
            // for): its client connects again.
            let code = match protocol {
                Protocol::V5 => reason::SERVER_UNAVAILABLE,
                Protocol::V311 => reason::V3_SERVER_UNAVAILABLE,
            };
            conn.out = vec![connack(protocol, false, code, Properties::default())];
            let _ = conn.flush(&mut io).await;
            let _ = io.shutdown().await;
            drop(io);
            Box::pin(conn.finish(End::Normal, conn_id, rx)).await;
            let _ = done_tx.send(true);
            return;
        }
        debug!(
            client = %client_id,
            in_flight = conn.outbound.in_flight.len(),
            queued = conn.outbound.queue.len(),
            "session resumed"
        );
        // The latest record is this connection's again (the one it took
        // the session over from may have saved after the claim).
        let _ = conn.save().await;
    }
    let mut rx = rx;
    // The big, rare steps (handshake, resume, finish, a batch of input)
    // are boxed: an idle connection's task holds only the loop's state.
    let end = conn.serve(&mut io, &mut rbuf, &mut rx, &kick).await;
    let _ = io.shutdown().await;
    drop(io);
    Box::pin(conn.finish(end, conn_id, rx)).await;
    let _ = done_tx.send(true);
}

impl Connection {
    /// A delivery from the dispatcher, unless it only matches subscriptions
    /// made after it was published.
    pub(super) fn live(&mut self, d: Delivery, now: i64) {
        if self.resumed(&d.at) || self.left_to_catch_up(&d) {
            return;
        }
        if !self.recent.is_empty() && self.before_subscribing(&d) {
            return;
        }
        self.outbound
            .deliver(d, now, &self.gw.metrics, &mut self.out);
    }

    /// True when the resume already handled the message at `at`, or it is
    /// a QoS 2 delivery already completed. Forgets cut-offs the dispatcher
    /// has passed.
    pub(super) fn resumed(&mut self, at: &LogRef) -> bool {
        if !self.completed_qos2.is_empty() && self.completed_qos2.contains(at) {
            return true;
        }
        if self.resumed_below.is_empty() {
            return false;
        }
        let key = (at.topic.clone(), at.partition);
        match self.resumed_below.get(&key) {
            Some(below) if at.offset < *below => true,
            Some(_) => {
                self.resumed_below.remove(&key);
                false
            }
            None => false,
        }
    }

    /// True when the catch-up reads `d` from the log (see `from_log`).
    fn left_to_catch_up(&self, d: &Delivery) -> bool {
        !self.from_log.is_empty()
            && self
                .from_log
                .get(&(d.at.topic.clone(), d.at.partition))
                .is_some_and(|from| d.at.offset >= *from)
    }

    /// True when every own subscription matching `d` was made after `d`
    /// was in the log. Forgets cut-offs the dispatcher has passed.
    fn before_subscribing(&mut self, d: &Delivery) -> bool {
        let key = (d.at.topic.clone(), d.at.partition);
        for (_, since) in &mut self.recent {
            if since.get(&key).is_some_and(|s| *s <= d.at.offset) {
                since.remove(&key);
            }
        }
        self.recent.retain(|(_, since)| !since.is_empty());
        let mut matched = false;
        for (filter, o) in &self.subs {
            if !matches!(topic::parse_shared(filter), Ok(None))
                || !topic::matches(filter, &d.msg.topic)
                || (o.no_local && d.msg.from == self.client_id)
            {
                continue;
            }
            matched = true;
            let recent = self
                .recent
                .iter()
                .any(|(f, since)| f == filter && since.get(&key).is_some_and(|s| *s > d.at.offset));
            if !recent {
                return false;
            }
        }
        matched
    }

    /// True when a QoS 2 message goes out for the first time: a persistent
    /// session saves it in flight first, so that a resume after this node
    /// dies sends it again with the same packet id (which the client knows
    /// as received) rather than as a new message.
    fn sends_new_qos2(&self) -> bool {
        self.out
            .iter()
            .any(|p| matches!(p, Packet::Publish(p) if p.qos == 2 && !p.dup))
    }

    fn send(&mut self, p: Packet) {
        self.out.push(p);
    }

    /// MQTT 5: tell the client why it is being disconnected.
    fn disconnect(&mut self, code: u8) {
        if self.protocol == Protocol::V5 {
            self.send(Packet::Disconnect(Disconnect {
                reason_code: code,
                properties: Properties::default(),
            }));
        }
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        for p in self.out.drain(..) {
            if let Err(e) = codec::encode(&p, self.protocol, &mut self.wbuf, usize::MAX) {
                debug!("packet not sent: {e}");
            }
        }
        io.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        io.flush().await
    }

    /// The packet loop.
    async fn serve<S>(
        &mut self,
        io: &mut S,
        rbuf: &mut BytesMut,
        rx: &mut mpsc::Receiver<Delivery>,
        kick: &CancellationToken,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let shutdown = self.gw.shutdown.clone();
        let mut last_heard = tokio::time::Instant::now();
        let persistent = self.expiry != Some(0);
        let mut checkpoint = tokio::time::interval(CHECKPOINT_EVERY);
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        checkpoint.reset();
        // Packets that arrived with CONNECT.
        if !rbuf.is_empty() {
            match Box::pin(self.input(rbuf)).await {
                Ok(None) => {}
                Ok(Some(end)) => return end,
                Err(code) => {
                    self.disconnect(code);
                    let _ = self.flush(io).await;
                    return End::WithWill;
                }
            }
        }
        loop {
            if persistent && self.sends_new_qos2() && !Box::pin(self.save()).await {
                // Not sent: a resume sends them, from the last save.
                self.out.clear();
                self.disconnect(reason::UNSPECIFIED_ERROR);
                let _ = self.flush(io).await;
                return End::WithWill;
            }
            if self.flush(io).await.is_err() {
                return End::WithWill;
            }
            let keep_alive = async {
                match self.keep_alive {
                    Some(k) => tokio::time::sleep_until(last_heard + k).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.disconnect(reason::SERVER_SHUTTING_DOWN);
                    let _ = self.flush(io).await;
                    return End::Shutdown;
                }
                _ = kick.cancelled() => {
                    self.disconnect(reason::SESSION_TAKEN_OVER);
                    let _ = self.flush(io).await;
                    return End::TakenOver;
                }
                read = io.read_buf(rbuf) => {
                    match read {
                        Ok(0) | Err(_) => return End::WithWill,
                        Ok(_) => {}
                    }
                    // Take in everything the socket already holds, so one
                    // append (one fsync) carries as many PUBLISHes as
                    // arrived meanwhile.
                    while rbuf.len() < MAX_READ_AHEAD {
                        if rbuf.capacity() == rbuf.len() {
                            rbuf.reserve(rbuf.len().clamp(4096, 64 * 1024));
                        }
                        match io.read_buf(rbuf).now_or_never() {
                            Some(Ok(n)) if n > 0 => {}
                            _ => break,
                        }
                    }
                    match Box::pin(self.input(rbuf)).await {
                        Ok(None) => {}
                        Ok(Some(end)) => {
                            let _ = self.flush(io).await;
                            return end;
                        }
                        Err(code) => {
                            self.disconnect(code);
                            let _ = self.flush(io).await;
                            return End::WithWill;
                        }
                    }
                    last_heard = tokio::time::Instant::now();
                }
                d = rx.recv() => {
                    let now = now_ms();
                    if let Some(d) = d {
                        self.live(d, now);
                    }
                    for _ in 0..1024 {
                        match rx.try_recv() {
                            Ok(d) => self.live(d, now),
                            Err(_) => break,
                        }
                    }
                }
                () = self.wake.notified() => {
                    // What the queue holds comes first, then the log.
                    let now = now_ms();
                    while let Ok(d) = rx.try_recv() {
                        self.live(d, now);
                    }
                    Box::pin(self.catch_up()).await;
                }
                _ = checkpoint.tick(), if persistent => {
                    Box::pin(self.checkpoint(rx)).await;
                }
                () = keep_alive => {
                    debug!(client = %self.client_id, "keep-alive expired");
                    self.disconnect(reason::KEEP_ALIVE_TIMEOUT);
                    let _ = self.flush(io).await;
                    return End::WithWill;
                }
            }
        }
    }
}
