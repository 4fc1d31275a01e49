//! Wills and the retained message under the schedule.
//!
//! The will publisher (its messages `p<id>-<k>` on `chaos/p<id>`, so every
//! subscriber of `chaos/#` gets them) is a series of short connections,
//! each with will `p<id>-<k>`:
//! - while the faults are under way, each ends with DISCONNECT: its will
//!   must never be published (a rule of the checker);
//! - once they are over, each is dropped without DISCONNECT: its will must
//!   be published, so it counts as an acknowledged message of the will
//!   publisher (missing if it never arrives).
//!
//! A connection a fault broke before its DISCONNECT went out is neither
//! (its will may or may not come). At the end a new client reads the
//! retained message of the retaining publisher's topic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};

use crate::mqtt::history::{MqttHistory, PublisherLog, payload_of, topic_of};
use crate::mqtt::session::Net;
use crate::stop::Stop;

/// How long a will connection lasts before it ends, at least.
const CONNECTED_FOR: Duration = Duration::from_millis(200);

/// How long a CONNACK, a DISCONNECT on its way or a retained message may
/// take, at most.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// During the faults: connections with a will that end with DISCONNECT,
/// one after the other over the nodes, until `stop`.
pub async fn graceful(id: usize, net: Net, history: Arc<Mutex<MqttHistory>>, stop: Stop) {
    let mut k = 0u64;
    while !stop.stopped() {
        let attempt = next(id, &mut k, &history);
        let Some((client, mut events)) = connect(id, attempt, &net).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        tokio::time::sleep(CONNECTED_FOR).await;
        if client.disconnect().await.is_ok() && disconnect_sent(&mut events).await {
            record(&history, id, |p| {
                p.forbidden.insert(attempt);
            });
        }
    }
}

/// After the faults: `count` connections with a will, each dropped
/// without DISCONNECT; each will must be published.
pub async fn dropped(id: usize, count: u64, net: &Net, history: &Arc<Mutex<MqttHistory>>) {
    let mut k = history
        .lock()
        .ok()
        .and_then(|h| h.publishers.get(id).map(|p| p.published))
        .unwrap_or(0);
    let mut made = 0;
    let mut tries = 0;
    while made < count && tries < count * 5 {
        tries += 1;
        let attempt = next(id, &mut k, history);
        let Some((client, mut events)) = connect(id, attempt, net).await else {
            continue;
        };
        // Serve the connection a while, then drop it: no DISCONNECT.
        let _ = tokio::time::timeout(CONNECTED_FOR, events.poll()).await;
        drop(client);
        drop(events);
        record(history, id, |p| {
            p.acked.insert(attempt);
        });
        made += 1;
    }
}

/// The retained message of `topic` as a new subscriber gets it (`None`
/// when none came in time), from the first node that answers.
pub async fn retained(topic: &str, net: &Net) -> Option<String> {
    for addr in addresses(net) {
        let Some(o) = options("retained-reader", &addr) else {
            continue;
        };
        let (client, mut events) = AsyncClient::new(o, 10);
        if !connected(&mut events).await || client.subscribe(topic, QoS::AtLeastOnce).await.is_err()
        {
            continue;
        }
        let mut deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.poll()).await {
            match event {
                Event::Incoming(Packet::Publish(p)) if p.retain => {
                    return Some(String::from_utf8_lossy(&p.payload).into_owned());
                }
                // Subscribed: the retained message follows at once, if any.
                Event::Incoming(Packet::SubAck(_)) => {
                    deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                }
                _ => {}
            }
        }
        return None;
    }
    None
}

/// The next will number of publisher `id`, counted as published.
fn next(id: usize, k: &mut u64, history: &Mutex<MqttHistory>) -> u64 {
    let attempt = *k;
    *k += 1;
    let published = *k;
    record(history, id, |p| p.published = published);
    attempt
}

/// A clean session with will `p<id>-<attempt>` on the next node in turn.
async fn connect(id: usize, attempt: u64, net: &Net) -> Option<(AsyncClient, EventLoop)> {
    let addrs = addresses(net);
    let addr = addrs.get(usize::try_from(attempt).ok()? % addrs.len().max(1))?;
    // An id of its own: never a takeover of the connection before.
    let mut o = options(&format!("will-{id}-{attempt}"), addr)?;
    o.set_last_will(LastWill::new(
        topic_of(id),
        payload_of(id, attempt),
        QoS::AtLeastOnce,
        false,
    ));
    let (client, mut events) = AsyncClient::new(o, 10);
    connected(&mut events).await.then_some((client, events))
}

fn options(id: &str, addr: &str) -> Option<MqttOptions> {
    let (host, port) = addr.rsplit_once(':')?;
    let mut o = MqttOptions::new(id, host, port.parse().ok()?);
    o.set_clean_session(true);
    o.set_keep_alive(Duration::from_secs(5));
    Some(o)
}

/// True once the CONNACK accepted the connection.
async fn connected(events: &mut EventLoop) -> bool {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                return ack.code == rumqttc::ConnectReturnCode::Success;
            }
            Ok(Ok(_)) => {}
            _ => return false,
        }
    }
}

/// True once the DISCONNECT was written to the connection.
async fn disconnect_sent(events: &mut EventLoop) -> bool {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) => return true,
            Ok(Ok(_)) => {}
            _ => return false,
        }
    }
}

fn addresses(net: &Net) -> Vec<String> {
    net.addresses.lock().map(|a| a.clone()).unwrap_or_default()
}

fn record(history: &Mutex<MqttHistory>, id: usize, update: impl FnOnce(&mut PublisherLog)) {
    if let Ok(mut h) = history.lock()
        && let Some(p) = h.publishers.get_mut(id)
    {
        update(p);
    }
}
