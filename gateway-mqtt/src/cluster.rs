//! Sessions across nodes: a client may connect to any node of its cluster
//! (a node alone is a cluster of one), and reconnect to another one.
//!
//! Every node follows `__mqtt_sessions` and knows each client's latest
//! record (`Hub::known`). A connection *claims* its client id with a
//! record of its own (node, connection, online) before it is accepted;
//! the log orders claims. On seeing another node's claim, a node
//!
//! - takes its own connection for that client over (DISCONNECT 0x8E),
//!   unless that connection claimed later; its last state is written as a
//!   hand-over record, which the claimant waits for (a few seconds at
//!   most: a node that is down hands nothing over, and the claimant goes
//!   on from the latest record it has);
//! - forgets the session if it kept it offline (its expiry timer and a
//!   pending delayed will with it).
//!
//! Delivery positions are log offsets, the same on every node: a session
//! that moves resumes from its stored cursors wherever it lands.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fjord_broker::Record;

use tracing::debug;

use crate::hub::{Hub, Known, lock, now_ms};
use crate::session::{SessionState, handover_key};
use crate::store::{self, SESSIONS_TOPIC};
use crate::topic;
use crate::{Error, Result};

/// Which other nodes have online members of each shared subscription, as
/// their session records say.
#[derive(Debug, Default)]
pub(crate) struct Shares {
    /// Client → (its node, its shared filters), while online elsewhere.
    by_client: HashMap<String, (u32, Vec<String>)>,
    /// Shared filter → node → online members there.
    nodes: HashMap<String, BTreeMap<u32, usize>>,
    /// (client, shared filter) pairs in `by_client`.
    members: usize,
}

impl Shares {
    /// Replaces what `client` contributes; returns the number of members.
    fn set(&mut self, client: &str, now: Option<(u32, Vec<String>)>) -> usize {
        if let Some((node, filters)) = self.by_client.remove(client) {
            self.members -= filters.len();
            for f in filters {
                if let Some(nodes) = self.nodes.get_mut(&f) {
                    if let Some(n) = nodes.get_mut(&node) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            nodes.remove(&node);
                        }
                    }
                    if nodes.is_empty() {
                        self.nodes.remove(&f);
                    }
                }
            }
        }
        if let Some((node, filters)) = now.filter(|(_, f)| !f.is_empty()) {
            for f in &filters {
                *self
                    .nodes
                    .entry(f.clone())
                    .or_default()
                    .entry(node)
                    .or_default() += 1;
            }
            self.members += filters.len();
            self.by_client.insert(client.to_string(), (node, filters));
        }
        self.members
    }
}

/// What a claimant got from the node that had the session.
enum Handover {
    Handed(Box<SessionState>),
    Ended,
    TimedOut,
}

/// How long a claimant waits for the session's previous node.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

/// How long a claim is tried again while the session store cannot take it
/// (its leader failing over), at most.
const CLAIM_WAIT: Duration = Duration::from_secs(4);

/// Runs `op` again while it fails, for [`CLAIM_WAIT`] at most: a client
/// connecting while the session store's leader fails over is answered
/// once a new leader takes the claim, not refused (CONNACK 0x03) at once.
async fn patiently<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
    let mut pause = Duration::from_millis(50);
    loop {
        match op().await {
            Err(e)
                if tokio::time::Instant::now() + pause < deadline
                    && !matches!(e, Error::Broker(fjord_broker::Error::ShuttingDown)) =>
            {
                debug!("session store busy, trying again: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// How often a claimant waiting for a hand-over checks that the previous
/// node is still live.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

impl Hub {
    /// Applies one `__mqtt_sessions` record written by any node.
    pub(crate) fn apply_session(self: &Arc<Self>, r: &Record) {
        let Some(client) = store::key_of(r) else {
            return;
        };
        let state = r.value.as_deref().and_then(SessionState::decode);
        {
            let mut known = self.known();
            let k = known.entry(client.to_string()).or_insert_with(|| Known {
                offset: -1,
                latest_claim: -1,
                ..Known::default()
            });
            match &state {
                Some(s) if s.claim => k.latest_claim = k.latest_claim.max(r.offset),
                // A connection's record after another one claimed the
                // client id (it had not heard of the claim yet).
                Some(s) if s.epoch < k.latest_claim && !client.starts_with('\0') => {
                    k.stale = Some(s.clone());
                    return;
                }
                _ => {}
            }
            k.offset = r.offset;
            k.state = state.clone();
        }
        if client.starts_with('\0') {
            // A hand-over record: its claimant reads it from `known`.
            return;
        }
        self.note_shares(client, state.as_ref());
        match state {
            // Ended (by whichever node): a copy kept here is stale.
            None => self.drop_offline(client, r.offset),
            Some(s) if s.node == self.node => {}
            Some(s) => {
                // Another node has the session now.
                self.drop_offline(client, r.offset);
                if s.claim {
                    let mut reg = self.registry();
                    if let Some(o) = reg.online.get_mut(client)
                        && !o.closing
                        && o.claim < r.offset
                    {
                        o.handed_to = Some(r.offset);
                        o.kick.cancel();
                    }
                }
            }
        }
    }

    /// Notes the shared subscriptions of `client` if it is online on
    /// another node (from its latest record).
    pub(crate) fn note_shares(&self, client: &str, state: Option<&SessionState>) {
        let sharing = state.filter(|s| s.online && s.node != self.node).map(|s| {
            let filters = s
                .subscriptions
                .iter()
                .filter(|sub| matches!(topic::parse_shared(&sub.filter), Ok(Some(_))))
                .map(|sub| sub.filter.clone())
                .collect();
            (s.node, filters)
        });
        let members = lock(&self.shares).set(client, sharing);
        self.metrics.remote_shared_members.store(
            i64::try_from(members).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Whether this node delivers the message at `offset` of a partition
    /// to the shared subscription `filter`: when other nodes have online
    /// members too, each message goes to the members of one node, chosen
    /// by its offset, so the group gets it once.
    pub(crate) fn delivers_share(&self, filter: &str, partition: u32, offset: i64) -> bool {
        let shares = lock(&self.shares);
        let Some(others) = shares.nodes.get(filter) else {
            return true;
        };
        let mut nodes: Vec<u32> = others.keys().copied().filter(|n| *n != self.node).collect();
        nodes.push(self.node);
        nodes.sort_unstable();
        let spread = u64::try_from(offset).unwrap_or(0) ^ u64::from(partition).rotate_left(32);
        let pick = usize::try_from(spread % nodes.len() as u64).unwrap_or(0);
        nodes[pick] == self.node
    }

    /// Forgets a session kept offline here whose record is older than
    /// `offset`, with its pending will.
    fn drop_offline(&self, client: &str, offset: i64) {
        let dropped = {
            let mut offline = self.offline();
            match offline.get(client) {
                Some(o) if o.offset < offset => offline.remove(client).is_some(),
                _ => false,
            }
        };
        if dropped {
            let online_here = self.registry().online.contains_key(client);
            if !online_here {
                self.drop_local(client);
            }
            self.cancel_will(client);
        }
    }

    /// Claims `client` for connection `connection` of this node: returns
    /// the claim's offset and the session to resume (`None` for a clean
    /// start or a session that does not exist).
    ///
    /// # Errors
    /// When the claim cannot be written (the client is refused).
    pub(crate) async fn claim(
        &self,
        client: &str,
        connection: u64,
        clean_start: bool,
        expiry: Option<u32>,
    ) -> Result<(i64, Option<SessionState>)> {
        // The latest record of the client, whichever node wrote it: every
        // record the leader holds, committed or about to be (a record of a
        // connection whose node just died may commit only now).
        let end = patiently(|| store::log_end(&self.broker, SESSIONS_TOPIC)).await?;
        if !self.await_applied(SESSIONS_TOPIC, end, HANDOVER_WAIT).await {
            return Err(Error::Broker(fjord_broker::Error::Timeout(format!(
                "{SESSIONS_TOPIC} not read up to {end} in {HANDOVER_WAIT:?}"
            ))));
        }
        let (previous, previous_epoch) = match self.known().get(client) {
            Some(k) => (
                k.state.clone().filter(|s| !expired(s)),
                k.state
                    .as_ref()
                    .map_or(-1, |s| if s.claim { k.offset } else { s.epoch }),
            ),
            None => (None, -1),
        };
        // The epoch of the connection that wrote it (a claim's is its own
        // offset).
        let previous = previous.map(|mut s| {
            s.epoch = previous_epoch;
            s
        });
        let mut state = match &previous {
            Some(s) if !clean_start => s.clone(),
            _ => SessionState::default(),
        };
        state.expiry_secs = expiry;
        state.node = self.node;
        state.online = true;
        state.connection = connection;
        state.claim = true;
        state.incoming_seq = 0;
        // What the connection before may have stored unknown to its
        // record stays to be found, whichever connection resumes next.
        state.unsure = match &previous {
            Some(s) if !clean_start => s.receipts_to_find(),
            _ => Vec::new(),
        };
        state.handed_over = false;
        state.disconnected_at_ms = None;
        let offset = patiently(|| self.save_session(client, &state)).await?;
        // Its shared subscriptions are served here from now on: this node
        // stops leaving a share of their messages to the node it was on
        // (before the claim comes back to it through the log).
        self.note_shares(client, None);
        debug!(client, claim = offset, previous_epoch, "client id claimed");
        let Some(previous) = previous else {
            return Ok((offset, None));
        };
        // Its connection, online here or elsewhere, is taken over; if the
        // session outlives it, wait for its last state.
        let lives_on = previous.expiry_secs != Some(0);
        if clean_start || !lives_on {
            return Ok((offset, None));
        }
        if !previous.online {
            return Ok((offset, Some(previous)));
        }
        let handover = self
            .await_handover(client, offset, previous_epoch, previous.node)
            .await;
        Ok(match handover {
            Handover::Handed(state) => {
                debug!(client, claim = offset, "session handed over");
                (offset, Some(*state))
            }
            Handover::Ended => (offset, None),
            // Its node is down or cut off: go on from its latest save.
            Handover::TimedOut => {
                debug!(
                    client,
                    claim = offset,
                    node = previous.node,
                    "no hand-over: the session goes on from its latest save"
                );
                (offset, Some(previous))
            }
        })
    }

    /// The last state of the connection of epoch `epoch` on node
    /// `node`, handed to the claim at `claim`, if it comes in time: a
    /// node that is down (fenced) hands nothing over.
    async fn await_handover(&self, client: &str, claim: i64, epoch: i64, node: u32) -> Handover {
        let mut rx = self.sessions_applied.subscribe();
        let deadline = tokio::time::Instant::now() + HANDOVER_WAIT;
        let key = handover_key(client);
        loop {
            {
                let known = self.known();
                if let Some(s) = known.get(&key).and_then(|k| k.state.as_ref())
                    && s.handed_over
                    && s.for_claim == claim
                {
                    return Handover::Handed(Box::new(s.clone()));
                }
                if let Some(k) = known.get(client) {
                    // It went away before it heard of the claim.
                    if let Some(s) = &k.stale
                        && s.epoch == epoch
                        && !s.online
                    {
                        return Handover::Handed(Box::new(s.clone()));
                    }
                    // A later claim, or the session ended.
                    if k.offset > claim {
                        return Handover::Ended;
                    }
                }
            }
            if !self.may_hand_over(client, node) {
                return Handover::TimedOut;
            }
            let step = tokio::time::Instant::now() + LIVENESS_CHECK;
            match tokio::time::timeout_at(deadline.min(step), rx.changed()).await {
                Ok(Ok(())) => {}
                Err(_) if step < deadline => {}
                _ => return Handover::TimedOut,
            }
        }
    }
}

impl Hub {
    /// Whether node `node` may still hand `client`'s session over: it is
    /// live, or it is this node and a connection of the client is still
    /// finishing here (a record of this node's previous run has nobody
    /// left to hand it over).
    fn may_hand_over(&self, client: &str, node: u32) -> bool {
        if node == self.node {
            self.registry().online.contains_key(client)
        } else {
            self.broker.is_live(node)
        }
    }
}

/// True for an offline session whose expiry has passed.
fn expired(s: &SessionState) -> bool {
    match (s.online, s.expiry_secs, s.disconnected_at_ms) {
        (false, Some(secs), Some(at)) => now_ms() - at >= i64::from(secs) * 1000,
        _ => false,
    }
}
