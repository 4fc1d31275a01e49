//! A publisher: numbered messages (`p<id>-<seq>`) to its own topic
//! `chaos/p<id>`, at QoS 1 or 2, one at a time, as a persistent session
//! that moves to the next node when its connection is lost.
//!
//! One message is in flight at a time: message `n + 1` is handed to the
//! client only once `n` was acknowledged (PUBACK, or PUBCOMP at QoS 2), so
//! the log holds the messages of one publisher in order. A message not
//! acknowledged when the connection is lost is sent again on the next
//! connection with the same packet id (by the client's session state): at
//! QoS 1 the log may then hold it twice, at QoS 2 the server must store it
//! once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{Packet, QoS};
use tokio::time::Instant;

use crate::mqtt::history::{MqttHistory, PublisherLog, payload_of, topic_of};
use crate::mqtt::session::{Net, Session, Step};
use crate::stop::Stop;

/// How long a message may wait for its acknowledgement before the
/// connection is given up on (a node that accepts but never answers).
const ACK_TIMEOUT: Duration = Duration::from_secs(15);

/// How long, once stopped, the message in flight may still take.
const FINISH_TIMEOUT: Duration = Duration::from_secs(15);

/// One publisher of the workload.
#[derive(Debug, Clone)]
pub struct PublisherSpec {
    /// Its index in the history; its client id is `pub-<id>`.
    pub id: usize,
    pub qos: QoS,
    /// Publishes with the retain flag.
    pub retain: bool,
    /// The node it first connects to.
    pub node: usize,
}

/// The acknowledgement that completes a message at `qos`.
fn completes(qos: QoS, packet: &Packet) -> bool {
    match qos {
        QoS::AtLeastOnce => matches!(packet, Packet::PubAck(_)),
        QoS::ExactlyOnce => matches!(packet, Packet::PubComp(_)),
        QoS::AtMostOnce => false,
    }
}

/// Runs with `update` on this publisher's record in `history`.
fn record(history: &Mutex<MqttHistory>, id: usize, update: impl FnOnce(&mut PublisherLog)) {
    if let Ok(mut h) = history.lock()
        && let Some(p) = h.publishers.get_mut(id)
    {
        update(p);
    }
}

/// Publishes until stopped, then waits (bounded) for the message in
/// flight; records what it handed over and what was acknowledged.
pub async fn publisher(
    spec: PublisherSpec,
    net: Net,
    history: Arc<Mutex<MqttHistory>>,
    stop: Stop,
) {
    let Some(session) = Session::new(&format!("pub-{}", spec.id), spec.node, 1, net) else {
        return;
    };
    let mut p = Publisher {
        topic: topic_of(spec.id),
        spec,
        session,
        history,
        next_seq: 0,
        in_flight: None,
        connected: false,
        first: true,
    };
    let mut stopped_at: Option<Instant> = None;
    loop {
        if stop.stopped() {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if p.in_flight.is_none() || since.elapsed() > FINISH_TIMEOUT {
                break;
            }
        } else if p.in_flight.is_none() && p.connected && !p.send_next().await {
            break;
        }
        let step = p.session.next(Duration::from_millis(200)).await;
        p.on(step);
        p.give_up_if_unanswered();
    }
    p.session.leave();
}

/// A publisher's state between steps.
struct Publisher {
    spec: PublisherSpec,
    topic: String,
    session: Session,
    history: Arc<Mutex<MqttHistory>>,
    next_seq: u64,
    /// The message in flight and when it was (last) sent.
    in_flight: Option<(u64, Instant)>,
    connected: bool,
    /// No connection was made yet.
    first: bool,
}

impl Publisher {
    fn record(&self, update: impl FnOnce(&mut PublisherLog)) {
        record(&self.history, self.spec.id, update);
    }

    /// Hands the next message to the client; false if the client is gone.
    async fn send_next(&mut self) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        let published = self.next_seq;
        self.record(|p| p.published = published);
        let payload = payload_of(self.spec.id, seq);
        let sent = self
            .session
            .client
            .publish(&self.topic, self.spec.qos, self.spec.retain, payload)
            .await;
        self.in_flight = Some((seq, Instant::now()));
        sent.is_ok()
    }

    fn on(&mut self, step: Step) {
        match step {
            Step::Connected { session_present } => {
                if !self.first && !session_present {
                    self.record(|p| p.sessions_lost += 1);
                }
                self.connected = true;
                self.first = false;
                // Sent again on this connection: its wait starts now.
                self.in_flight = self.in_flight.map(|(seq, _)| (seq, Instant::now()));
            }
            Step::Packet(packet) if completes(self.spec.qos, &packet) => {
                if let Some((seq, _)) = self.in_flight.take() {
                    self.record(|p| {
                        p.acked.insert(seq);
                    });
                }
            }
            Step::Lost => {
                if std::mem::take(&mut self.connected) {
                    self.record(|p| p.reconnects += 1);
                }
            }
            Step::Packet(_) | Step::Idle => {}
        }
    }

    /// A message unacknowledged for too long on a live connection: the
    /// connection is dropped and the message sent again on the next node.
    fn give_up_if_unanswered(&mut self) {
        let Some((seq, at)) = self.in_flight else {
            return;
        };
        if self.connected && at.elapsed() > ACK_TIMEOUT {
            self.in_flight = Some((seq, Instant::now()));
            self.session.move_on();
            self.connected = false;
            self.record(|p| p.reconnects += 1);
        }
    }
}
