//! Messages on their way to one client: QoS 1/2 in flight (bounded by the
//! client's Receive Maximum), the queue behind them, packet ids, outgoing
//! topic aliases, expiry and the client's Maximum Packet Size.
//!
//! Sans-IO: every call returns the packets to write.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::codec::{self, Ack, Packet, Protocol, Publish};
use crate::message::Message;
use crate::metrics::{Dropped, Metrics};
use crate::registry::Delivery;
use crate::session::StoredOutgoing;

/// An outgoing QoS 1/2 message not yet acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    pub(crate) delivery: Delivery,
    /// PUBREC received (QoS 2): only PUBREL/PUBCOMP remain.
    pub(crate) released: bool,
}

#[derive(Debug)]
pub(crate) struct Outbound {
    protocol: Protocol,
    /// The client's Receive Maximum.
    receive_maximum: usize,
    /// The client's Maximum Packet Size.
    max_packet_size: usize,
    max_queued: usize,
    /// The client's Topic Alias Maximum, and the aliases given so far.
    alias_maximum: u16,
    aliases: HashMap<String, u16>,
    next_packet_id: u16,
    pub(crate) in_flight: BTreeMap<u16, InFlight>,
    pub(crate) queue: VecDeque<Delivery>,
}

impl Outbound {
    pub(crate) fn new(
        protocol: Protocol,
        receive_maximum: u16,
        max_packet_size: u32,
        alias_maximum: u16,
        max_queued: usize,
    ) -> Outbound {
        Outbound {
            protocol,
            receive_maximum: usize::from(receive_maximum.max(1)),
            max_packet_size: max_packet_size as usize,
            max_queued,
            alias_maximum,
            aliases: HashMap::new(),
            next_packet_id: 1,
            in_flight: BTreeMap::new(),
            queue: VecDeque::new(),
        }
    }

    fn packet_id(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if id != 0 && !self.in_flight.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    fn publish_packet(
        &mut self,
        d: &Delivery,
        packet_id: u16,
        dup: bool,
        now_ms: i64,
    ) -> Option<Publish> {
        let remaining = d.msg.remaining_expiry(now_ms).ok()?;
        let mut properties = d.msg.props.to_publish(remaining);
        if self.protocol == Protocol::V311 {
            properties = codec::Properties::default();
        } else {
            properties.subscription_identifiers = d.subscription_ids.clone();
        }
        let mut topic = d.msg.topic.clone();
        if self.protocol == Protocol::V5 && self.alias_maximum > 0 {
            if let Some(alias) = self.aliases.get(&topic) {
                properties.topic_alias = Some(*alias);
                // Retransmissions carry the topic again (the alias map
                // may be new after a reconnect).
                if !dup {
                    topic = String::new();
                }
            } else if self.aliases.len() < usize::from(self.alias_maximum) {
                let alias = self.aliases.len() as u16 + 1;
                self.aliases.insert(topic.clone(), alias);
                properties.topic_alias = Some(alias);
            }
        }
        Some(Publish {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            payload: d.msg.payload.clone(),
            properties,
        })
    }

    fn too_large(&self, p: &Publish) -> bool {
        codec::encoded_size(&Packet::Publish(p.clone()), self.protocol) > self.max_packet_size
    }

    /// A new message for the client.
    pub(crate) fn deliver(
        &mut self,
        d: Delivery,
        now_ms: i64,
        metrics: &Metrics,
        out: &mut Vec<Packet>,
    ) {
        if d.msg.remaining_expiry(now_ms).is_err() {
            metrics.dropped(Dropped::Expired);
            return;
        }
        if d.qos == 0 {
            if let Some(p) = self.publish_packet(&d, 0, false, now_ms) {
                if self.too_large(&p) {
                    metrics.dropped(Dropped::TooLarge);
                } else {
                    metrics.message_out(0);
                    out.push(Packet::Publish(p));
                }
            }
            return;
        }
        if self.in_flight.len() >= self.receive_maximum || !self.queue.is_empty() {
            if self.queue.len() >= self.max_queued {
                metrics.dropped(Dropped::QueueFull);
            } else {
                self.queue.push_back(d);
            }
            // Keeps the order: queued messages go first, as room allows.
            self.fill(now_ms, metrics, out);
            return;
        }
        self.send_now(d, now_ms, metrics, out);
    }

    fn send_now(&mut self, d: Delivery, now_ms: i64, metrics: &Metrics, out: &mut Vec<Packet>) {
        if d.msg.remaining_expiry(now_ms).is_err() {
            metrics.dropped(Dropped::Expired);
            return;
        }
        let Some(id) = self.packet_id() else {
            self.queue.push_front(d);
            return;
        };
        let Some(p) = self.publish_packet(&d, id, false, now_ms) else {
            metrics.dropped(Dropped::Expired);
            return;
        };
        if self.too_large(&p) {
            metrics.dropped(Dropped::TooLarge);
            return;
        }
        metrics.message_out(d.qos);
        self.in_flight.insert(
            id,
            InFlight {
                delivery: d,
                released: false,
            },
        );
        out.push(Packet::Publish(p));
    }

    /// QoS 1/2 messages the client can take before its window (its receive
    /// maximum, at most 1,000 here) is full.
    pub(crate) fn room(&self) -> usize {
        self.receive_maximum
            .min(1000)
            .saturating_sub(self.in_flight.len() + self.queue.len())
    }

    /// Sends queued messages while the client has room.
    pub(crate) fn fill(&mut self, now_ms: i64, metrics: &Metrics, out: &mut Vec<Packet>) {
        while self.in_flight.len() < self.receive_maximum {
            let Some(d) = self.queue.pop_front() else {
                break;
            };
            self.send_now(d, now_ms, metrics, out);
        }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): done. The message it settles,
    /// if it was in flight.
    pub(crate) fn acknowledged(
        &mut self,
        packet_id: u16,
        now_ms: i64,
        metrics: &Metrics,
        out: &mut Vec<Packet>,
    ) -> Option<InFlight> {
        let done = self.in_flight.remove(&packet_id);
        self.fill(now_ms, metrics, out);
        done
    }

    /// PUBREC: answer PUBREL (`0x92` when the id is unknown, MQTT 5).
    pub(crate) fn received(
        &mut self,
        packet_id: u16,
        reason: u8,
        out: &mut Vec<Packet>,
        now_ms: i64,
        metrics: &Metrics,
    ) {
        let known = match self.in_flight.get_mut(&packet_id) {
            Some(f) if f.delivery.qos == 2 => {
                f.released = true;
                true
            }
            _ => false,
        };
        // A PUBREC with an error reason ends the exchange (MQTT 5 4.3.3).
        if known && reason >= 0x80 {
            self.in_flight.remove(&packet_id);
            self.fill(now_ms, metrics, out);
            return;
        }
        out.push(Packet::PubRel(Ack {
            packet_id,
            reason_code: if known {
                0
            } else {
                codec::reason::PACKET_IDENTIFIER_NOT_FOUND
            },
            properties: codec::Properties::default(),
        }));
    }

    /// On resume: everything in flight again, PUBLISH with DUP or PUBREL.
    pub(crate) fn resend(&mut self, now_ms: i64, metrics: &Metrics, out: &mut Vec<Packet>) {
        let ids: Vec<u16> = self.in_flight.keys().copied().collect();
        for id in ids {
            let Some(f) = self.in_flight.get(&id).cloned() else {
                continue;
            };
            if f.released {
                out.push(Packet::PubRel(Ack {
                    packet_id: id,
                    reason_code: 0,
                    properties: codec::Properties::default(),
                }));
            } else if let Some(p) = self.publish_packet(&f.delivery, id, true, now_ms) {
                out.push(Packet::Publish(p));
            } else {
                metrics.dropped(Dropped::Expired);
                self.in_flight.remove(&id);
            }
        }
        self.fill(now_ms, metrics, out);
    }

    /// Takes back in-flight messages kept by a previous connection.
    pub(crate) fn restore(&mut self, kept: Vec<(StoredOutgoing, std::sync::Arc<Message>)>) {
        for (o, msg) in kept {
            self.next_packet_id = self.next_packet_id.max(o.packet_id.wrapping_add(1).max(1));
            self.in_flight.insert(
                o.packet_id,
                InFlight {
                    delivery: Delivery {
                        msg,
                        at: o.at,
                        qos: o.qos,
                        retain: o.retain,
                        subscription_ids: o.subscription_ids,
                    },
                    released: o.released,
                },
            );
        }
    }

    /// The in-flight messages in stored form.
    pub(crate) fn stored(&self) -> Vec<StoredOutgoing> {
        self.in_flight
            .iter()
            .map(|(id, f)| StoredOutgoing {
                packet_id: *id,
                at: f.delivery.at.clone(),
                qos: f.delivery.qos,
                retain: f.delivery.retain,
                subscription_ids: f.delivery.subscription_ids.clone(),
                released: f.released,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::message::MessageProps;
    use crate::session::LogRef;

    fn delivery(offset: i64, qos: u8, payload: &'static [u8], expiry: Option<u32>) -> Delivery {
        Delivery {
            msg: Arc::new(Message {
                topic: "t/1".into(),
                payload: Bytes::from_static(payload),
                qos,
                retain: false,
                from: "p".into(),
                timestamp_ms: 1_000,
                props: MessageProps {
                    message_expiry_interval: expiry,
                    ..MessageProps::default()
                },
                receipt: None,
            }),
            at: LogRef {
                topic: "mqtt".into(),
                partition: 0,
                offset,
            },
            qos,
            retain: false,
            subscription_ids: vec![3],
        }
    }

    fn ids(out: &[Packet]) -> Vec<u16> {
        out.iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p.packet_id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_receive_maximum_holds_and_acks_release_the_queue_in_order() {
        let m = Metrics::default();
        let mut o = Outbound::new(Protocol::V5, 2, u32::MAX, 0, 2);
        let mut out = Vec::new();
        for i in 0..5 {
            o.deliver(delivery(i, 1, b"x", None), 1_000, &m, &mut out);
        }
        // Two in flight, two queued, one over the queue bound.
        assert_eq!(ids(&out), [1, 2]);
        assert_eq!(m.dropped_count(Dropped::QueueFull), 1);
        out.clear();
        o.acknowledged(1, 1_000, &m, &mut out);
        assert_eq!(ids(&out), [3]);
        let offsets: Vec<i64> = o.in_flight.values().map(|f| f.delivery.at.offset).collect();
        assert_eq!(offsets, [1, 2]);
        // QoS 0 is not held back by flow control.
        out.clear();
        o.deliver(delivery(9, 0, b"y", None), 1_000, &m, &mut out);
        assert_eq!(ids(&out), [0]);
    }

    #[test]
    fn expired_and_oversized_messages_are_dropped_and_expiry_counts_down() {
        let m = Metrics::default();
        let mut o = Outbound::new(Protocol::V5, 10, 40, 0, 10);
        let mut out = Vec::new();
        o.deliver(delivery(0, 1, b"x", Some(5)), 7_000, &m, &mut out);
        assert!(out.is_empty());
        assert_eq!(m.dropped_count(Dropped::Expired), 1);
        o.deliver(delivery(1, 1, &[0u8; 64], None), 1_000, &m, &mut out);
        assert!(out.is_empty());
        assert_eq!(m.dropped_count(Dropped::TooLarge), 1);
        assert!(
            o.in_flight.is_empty(),
            "no packet id is kept for a dropped message"
        );
        o.deliver(delivery(2, 1, b"x", Some(5)), 3_500, &m, &mut out);
        let Some(Packet::Publish(p)) = out.first() else {
            panic!("{out:?}");
        };
        assert_eq!(p.properties.message_expiry_interval, Some(3));
        assert_eq!(p.properties.subscription_identifiers, [3]);
    }

    #[test]
    fn topic_aliases_are_given_then_used_and_resends_carry_the_topic() {
        let m = Metrics::default();
        let mut o = Outbound::new(Protocol::V5, 10, u32::MAX, 1, 10);
        let mut out = Vec::new();
        o.deliver(delivery(0, 1, b"a", None), 1_000, &m, &mut out);
        o.deliver(delivery(1, 1, b"b", None), 1_000, &m, &mut out);
        let sent: Vec<(String, Option<u16>)> = out
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some((p.topic.clone(), p.properties.topic_alias)),
                _ => None,
            })
            .collect();
        assert_eq!(
            sent,
            [("t/1".to_string(), Some(1)), (String::new(), Some(1))]
        );
        out.clear();
        o.resend(1_000, &m, &mut out);
        let Some(Packet::Publish(p)) = out.first() else {
            panic!("{out:?}");
        };
        assert!(p.dup);
        assert_eq!(p.topic, "t/1");
    }
}
