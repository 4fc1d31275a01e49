//! A subscriber: a persistent session (clean session false, a fixed client
//! id) subscribed once to `chaos/#` or to a shared subscription, that
//! moves to the next node when its connection is lost and records every
//! PUBLISH it is given (acknowledged by the client as it arrives).
//!
//! It subscribes again only when a reconnect finds no session on the
//! server (counted: the server lost the session).
//!
//! # QoS 2 on the receiving side
//! A QoS 2 PUBLISH sent again before its PUBREL (the server never got the
//! PUBREC) is acknowledged but not given to the application twice, as MQTT
//! 3.1.1 §4.3.3 asks of a receiver. rumqttc forgets, on a lost connection,
//! the packet ids it is waiting to see released (and then takes the
//! server's PUBREL for a protocol error, forever): the subscriber keeps
//! them itself and hands them back to the client's state after every lost
//! connection.
//!
//! A server whose node died may also send PUBREL again for a message the
//! client already completed (it saved the release, not the PUBCOMP). MQTT
//! asks the receiver to answer PUBCOMP to any PUBREL (§4.3.3); rumqttc
//! takes an unknown one for a protocol error, so the subscriber hands the
//! client back the ids it has seen released as well.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{Packet, Publish, QoS};
use tokio::sync::oneshot;

use crate::mqtt::history::{Delivery, MqttHistory, SubscriberLog};
use crate::mqtt::session::{Net, Session, Step};
use crate::stop::Stop;

/// One subscriber of the workload.
#[derive(Debug, Clone)]
pub struct SubscriberSpec {
    /// Its index among the history's subscribers.
    pub index: usize,
    pub client_id: String,
    /// `chaos/#`, or `$share/<group>/chaos/#`.
    pub filter: String,
    pub qos: QoS,
    /// The node it first connects to.
    pub node: usize,
}

/// A subscriber's state between steps.
struct Subscriber {
    spec: SubscriberSpec,
    session: Session,
    history: Arc<Mutex<MqttHistory>>,
    /// QoS 2 messages given but not yet released: packet id → payload.
    unreleased: BTreeMap<u16, String>,
    /// Packet ids of QoS 2 messages released (PUBREL seen).
    released: BTreeSet<u16>,
    connected: bool,
    first: bool,
    /// Fired at the first SUBACK.
    subscribed: Option<oneshot::Sender<()>>,
}

/// Records until stopped; `subscribed` fires once the first SUBACK came.
pub async fn subscriber(
    spec: SubscriberSpec,
    net: Net,
    history: Arc<Mutex<MqttHistory>>,
    subscribed: oneshot::Sender<()>,
    stop: Stop,
) {
    let Some(session) = Session::new(&spec.client_id, spec.node, 10, net) else {
        return;
    };
    let mut s = Subscriber {
        spec,
        session,
        history,
        unreleased: BTreeMap::new(),
        released: BTreeSet::new(),
        connected: false,
        first: true,
        subscribed: Some(subscribed),
    };
    while !stop.stopped() {
        let step = s.session.next(Duration::from_millis(200)).await;
        if !s.on(step).await {
            break;
        }
    }
    s.session.leave();
}

impl Subscriber {
    fn record(&self, update: impl FnOnce(&mut SubscriberLog)) {
        if let Ok(mut h) = self.history.lock()
            && let Some(s) = h.subscribers.get_mut(self.spec.index)
        {
            update(s);
        }
    }

    /// Handles one step; false if the client is gone.
    async fn on(&mut self, step: Step) -> bool {
        match step {
            Step::Connected { session_present } => {
                self.connected = true;
                if self.first || !session_present {
                    if !self.first {
                        self.record(|s| s.sessions_lost += 1);
                        self.unreleased.clear();
                    }
                    self.first = false;
                    let filter = self.spec.filter.clone();
                    return self
                        .session
                        .client
                        .subscribe(filter, self.spec.qos)
                        .await
                        .is_ok();
                }
            }
            Step::Packet(Packet::SubAck(_)) => {
                if let Some(tx) = self.subscribed.take() {
                    let _ = tx.send(());
                }
            }
            Step::Packet(Packet::Publish(p)) => self.given(&p),
            Step::Packet(Packet::PubRel(r)) => {
                self.unreleased.remove(&r.pkid);
                self.released.insert(r.pkid);
            }
            Step::Lost => {
                if std::mem::take(&mut self.connected) {
                    self.record(|s| s.reconnects += 1);
                }
                self.restore_unreleased();
            }
            Step::Packet(_) | Step::Idle => {}
        }
        true
    }

    /// Records a PUBLISH, unless it is a QoS 2 message sent again before
    /// its release.
    fn given(&mut self, p: &Publish) {
        let payload = String::from_utf8_lossy(&p.payload).into_owned();
        if p.qos == QoS::ExactlyOnce {
            if self.unreleased.get(&p.pkid) == Some(&payload) {
                self.record(|s| s.retransmissions += 1);
                return;
            }
            self.unreleased.insert(p.pkid, payload.clone());
        }
        let delivery = Delivery {
            topic: p.topic.clone(),
            payload,
            dup: p.dup,
            qos: p.qos as u8,
        };
        self.record(|s| s.deliveries.push(delivery));
    }

    /// Gives the client's state back the QoS 2 packet ids awaiting their
    /// PUBREL, and those already released (see the module header),
    /// without sending or reporting anything.
    fn restore_unreleased(&mut self) {
        let state = &mut self.session.events.state;
        for pkid in self.unreleased.keys().chain(&self.released) {
            let mut publish = Publish::new("", QoS::ExactlyOnce, Vec::<u8>::new());
            publish.pkid = *pkid;
            let (written, events) = (state.write.len(), state.events.len());
            // Notes the id as received (and would answer PUBREC: undone).
            let _ = state.handle_incoming_packet(Packet::Publish(publish));
            state.write.truncate(written);
            state.events.truncate(events);
        }
    }
}
