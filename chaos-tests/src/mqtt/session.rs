//! One MQTT client's connection to the cluster as a persistent session
//! (clean session false, a fixed client id) that moves to the next node
//! whenever its connection is lost.
//!
//! The rumqttc event loop keeps the client's side of the session across
//! connections (QoS 1/2 messages not yet acknowledged are sent again, a
//! PUBREL not yet completed too); a lost connection only points it at the
//! next node's MQTT address before it connects again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet};

/// The nodes' MQTT addresses (node `i + 1` at index `i`), updated by the
/// nemesis when a restarted node listens elsewhere.
pub type MqttAddresses = Arc<Mutex<Vec<String>>>;

/// Which node each client is connected to (client id → node index), for
/// the nemesis to aim at.
#[derive(Debug, Clone, Default)]
pub struct Connections(Arc<Mutex<BTreeMap<String, usize>>>);

impl Connections {
    /// Records that `client` is connected to node `node` (or to none).
    pub fn set(&self, client: &str, node: Option<usize>) {
        if let Ok(mut c) = self.0.lock() {
            match node {
                Some(n) => c.insert(client.to_string(), n),
                None => c.remove(client),
            };
        }
    }

    /// The clients connected now and their nodes, by client id.
    pub fn snapshot(&self) -> BTreeMap<String, usize> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// Where a session's clients connect, and where they report it.
#[derive(Debug, Clone)]
pub struct Net {
    pub addresses: MqttAddresses,
    pub connections: Connections,
}

/// What [`Session::next`] saw.
#[derive(Debug)]
pub enum Step {
    /// A CONNACK accepting the connection.
    Connected { session_present: bool },
    /// Any other packet from the server.
    Packet(Packet),
    /// The connection was lost or refused; the next attempt goes to the
    /// next node.
    Lost,
    /// Nothing arrived in the time given.
    Idle,
}

/// A persistent session's client, following the nodes.
pub struct Session {
    pub client: AsyncClient,
    pub events: EventLoop,
    id: String,
    node: usize,
    inflight: u16,
    net: Net,
    /// The event loop has a connection (its CONNACK came).
    connected: bool,
}

/// How long a CONNACK may take (a session moving between nodes waits for
/// its hand-over, a few seconds at most).
const CONNECT_TIMEOUT_SECS: u64 = 15;

/// Options for client `id` at `addr` (`host:port`): clean session false,
/// at most `inflight` outgoing QoS 1/2 messages unacknowledged.
fn options(id: &str, addr: &str, inflight: u16) -> Option<MqttOptions> {
    let (host, port) = addr.rsplit_once(':')?;
    let mut o = MqttOptions::new(id, host, port.parse().ok()?);
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_inflight(inflight);
    o.set_max_packet_size(1 << 20, 1 << 20);
    Some(o)
}

impl Session {
    /// A client `id` that first connects to node `node` (it connects on
    /// the first [`Session::next`]); `None` if the address is unusable.
    pub fn new(id: &str, node: usize, inflight: u16, net: Net) -> Option<Session> {
        let addr = net.addresses.lock().ok()?.get(node)?.clone();
        let (client, mut events) = AsyncClient::new(options(id, &addr, inflight)?, 100);
        events
            .network_options
            .set_connection_timeout(CONNECT_TIMEOUT_SECS);
        Some(Session {
            client,
            events,
            id: id.to_string(),
            node,
            inflight,
            net,
            connected: false,
        })
    }

    /// The next packet from the server within `wait`; connects first if
    /// the session has no connection (waiting as long as that takes, up
    /// to the client's connection timeout).
    ///
    /// # Cancel safety
    /// Not cancel safe (the event loop may be cut off mid-write); callers
    /// bound it with `wait` instead.
    pub async fn next(&mut self, wait: Duration) -> Step {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // A connection attempt is never cut short (an attempt given up
            // on may still take the session over): the event loop bounds
            // it by its connection timeout.
            let event = if self.connected {
                match tokio::time::timeout_at(deadline, self.events.poll()).await {
                    Ok(event) => event,
                    Err(_) => return Step::Idle,
                }
            } else {
                self.events.poll().await
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack)))
                    if ack.code == ConnectReturnCode::Success =>
                {
                    self.connected = true;
                    self.net.connections.set(&self.id, Some(self.node));
                    return Step::Connected {
                        session_present: ack.session_present,
                    };
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) | Err(_) => {
                    self.move_on();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Step::Lost;
                }
                Ok(Event::Incoming(packet)) => return Step::Packet(packet),
                Ok(Event::Outgoing(_)) => {}
            }
        }
    }

    /// Drops the connection (what was not acknowledged is kept to be sent
    /// again) and points the client at the next node.
    pub fn move_on(&mut self) {
        self.events.clean();
        self.connected = false;
        self.net.connections.set(&self.id, None);
        let addresses = self
            .net
            .addresses
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        if addresses.is_empty() {
            return;
        }
        self.node = (self.node + 1) % addresses.len();
        if let Some(o) = options(&self.id, &addresses[self.node], self.inflight) {
            self.events.mqtt_options = o;
        }
    }

    /// Forgets where the client is connected (it is done).
    pub fn leave(&self) {
        self.net.connections.set(&self.id, None);
    }
}
