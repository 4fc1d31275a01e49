//! The packets a client sends once connected: PUBLISHes appended to the
//! log in batches and acknowledged once committed (QoS 2 receipts saved
//! before PUBREC), acknowledgements of deliveries (PUBRELs held until the
//! release is saved), subscriptions, pings and DISCONNECT.

use super::*;
use crate::Error;

impl Connection {
    /// Handles every whole packet in `rbuf`. `Ok(Some)`: the client asked
    /// to end; `Err(code)`: a violation, to answer with DISCONNECT.
    pub(super) async fn input(&mut self, rbuf: &mut BytesMut) -> Result<Option<End>, u8> {
        let mut packets = Vec::new();
        let mut failed = None;
        loop {
            match codec::decode(rbuf, Some(self.protocol), self.gw.config.max_packet_size) {
                Ok(Some(p)) => packets.push(p),
                Ok(None) | Err(DecodeError::Incomplete(_)) => break,
                Err(e) => {
                    debug!(client = %self.client_id, "bad packet: {e}");
                    failed = Some(e.reason_code());
                    break;
                }
            }
        }
        let mut batch: Vec<(Publish, Pending)> = Vec::new();
        let mut messages: Vec<Message> = Vec::new();
        for p in packets {
            if let Packet::Publish(publish) = p {
                let pending = self.prepare(&publish, &mut messages, batch.len())?;
                batch.push((publish, pending));
                continue;
            }
            self.commit(std::mem::take(&mut batch), std::mem::take(&mut messages))
                .await?;
            if let Some(end) = self.handle(p).await? {
                return Ok(Some(end));
            }
        }
        self.commit(batch, messages).await?;
        self.release_held().await?;
        match failed {
            Some(code) => Err(code),
            None => Ok(None),
        }
    }

    /// Checks one PUBLISH and queues its message for the batch's append.
    fn prepare(
        &mut self,
        p: &Publish,
        messages: &mut Vec<Message>,
        queued: usize,
    ) -> Result<Pending, u8> {
        // Subscription identifiers travel only toward clients (5.0 3.3.4).
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(reason::PROTOCOL_ERROR);
        }
        let mut topic_name = p.topic.clone();
        if let Some(alias) = p.properties.topic_alias {
            if alias == 0 || alias > self.gw.config.topic_alias_maximum {
                return Err(reason::TOPIC_ALIAS_INVALID);
            }
            if topic_name.is_empty() {
                topic_name = self
                    .inbound_aliases
                    .get(&alias)
                    .cloned()
                    .ok_or(reason::PROTOCOL_ERROR)?;
            } else {
                self.inbound_aliases.insert(alias, topic_name.clone());
            }
        }
        if topic_name.is_empty() || topic::validate_name(&topic_name).is_err() {
            return Err(reason::TOPIC_NAME_INVALID);
        }
        if p.qos > 0
            && self.protocol == Protocol::V5
            && queued + self.incoming_qos2.len() >= usize::from(self.gw.config.receive_maximum)
        {
            return Err(reason::RECEIVE_MAXIMUM_EXCEEDED);
        }
        let pending = |outcome| Pending {
            qos: p.qos,
            packet_id: p.packet_id,
            outcome,
        };
        if p.qos == 2 && self.incoming_qos2.contains(&p.packet_id) {
            // A retransmission of a message already stored.
            return Ok(pending(Err(reason::SUCCESS)));
        }
        if !self.principal.allows(Action::Publish, &topic_name) {
            self.gw.metrics.dropped(Dropped::NotAuthorized);
            return Ok(pending(Err(reason::NOT_AUTHORIZED)));
        }
        if p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&p.payload).is_err()
        {
            if p.qos == 0 {
                return Err(reason::PAYLOAD_FORMAT_INVALID);
            }
            return Ok(pending(Err(reason::PAYLOAD_FORMAT_INVALID)));
        }
        messages.push(Message {
            topic: topic_name,
            payload: p.payload.clone(),
            qos: p.qos,
            retain: p.retain,
            from: self.client_id.clone(),
            timestamp_ms: now_ms(),
            props: MessageProps::from_publish(&p.properties),
            receipt: (p.qos == 2).then(|| self.next_receipt(p.packet_id)),
        });
        Ok(pending(Ok(messages.len() - 1)))
    }

    /// Appends a batch's messages, then acknowledges each PUBLISH. QoS 2
    /// receipts are saved before their PUBRECs go out; when that save
    /// fails, or an append's outcome is unknown, the connection closes
    /// without an answer: the client sends them again, and the session's
    /// next connection finds out what was stored (see [`Receipt`]).
    async fn commit(
        &mut self,
        batch: Vec<(Publish, Pending)>,
        messages: Vec<Message>,
    ) -> Result<(), u8> {
        if batch.is_empty() {
            return Ok(());
        }
        let receipts: Vec<Option<u64>> =
            messages.iter().map(|m| m.receipt.map(|r| r.seq)).collect();
        let results = if messages.is_empty() {
            Vec::new()
        } else {
            self.gw.publish(messages).await
        };
        let (mut recs, mut stored) = (Vec::new(), Vec::new());
        for (_, pending) in batch {
            let code = self.outcome(&pending, &results, &receipts)?;
            let ack = |reason_code| Ack {
                packet_id: pending.packet_id,
                reason_code,
                properties: Properties::default(),
            };
            match pending.qos {
                1 => self.send(Packet::PubAck(ack(code))),
                2 => {
                    if code < 0x80 && self.incoming_qos2.insert(pending.packet_id) {
                        stored.extend(
                            pending
                                .outcome
                                .ok()
                                .and_then(|i| receipts.get(i).copied().flatten()),
                        );
                    }
                    recs.push(Packet::PubRec(ack(code)));
                }
                _ => {}
            }
        }
        // A clean session's receipts end with its connection: no need to
        // close when they cannot be saved.
        if !stored.is_empty() && !self.save().await && self.expiry != Some(0) {
            for seq in stored {
                self.unsure(seq);
            }
            return Err(reason::UNSPECIFIED_ERROR);
        }
        self.out.append(&mut recs);
        Ok(())
    }

    /// The reason code for one PUBLISH of a batch; `Err` closes the
    /// connection (3.1.1 has no way to refuse one message, and an append
    /// whose outcome is unknown is not answered).
    fn outcome(
        &mut self,
        pending: &Pending,
        results: &[crate::Result<()>],
        receipts: &[Option<u64>],
    ) -> Result<u8, u8> {
        let code = match pending.outcome {
            Ok(i) => match results.get(i) {
                Some(Ok(())) => {
                    self.gw.metrics.message_in(pending.qos);
                    reason::SUCCESS
                }
                Some(Err(e)) => {
                    debug!(client = %self.client_id, "publish failed: {e}");
                    if let (
                        Some(Some(seq)),
                        Error::Publish {
                            uncertain: true, ..
                        },
                    ) = (receipts.get(i), e)
                    {
                        self.unsure(*seq);
                        return Err(reason::UNSPECIFIED_ERROR);
                    }
                    reason::UNSPECIFIED_ERROR
                }
                None => reason::UNSPECIFIED_ERROR,
            },
            Err(code) => code,
        };
        if code >= 0x80 && self.protocol == Protocol::V311 && code != reason::NOT_AUTHORIZED {
            return Err(code);
        }
        Ok(code)
    }

    async fn handle(&mut self, p: Packet) -> Result<Option<End>, u8> {
        let now = now_ms();
        match p {
            Packet::PubAck(a) | Packet::PubComp(a) => {
                let done =
                    self.outbound
                        .acknowledged(a.packet_id, now, &self.gw.metrics, &mut self.out);
                if let Some(f) = done.filter(|f| f.delivery.qos == 2 && self.expiry != Some(0)) {
                    self.completed_qos2.insert(f.delivery.at);
                }
                if self.catching_up {
                    self.wake.notify_one();
                }
            }
            Packet::PubRec(a) => {
                // A persistent session's PUBREL waits until the release is
                // saved: a resume after this node dies sends PUBREL again,
                // never the message.
                let out = if self.expiry == Some(0) {
                    &mut self.out
                } else {
                    &mut self.held
                };
                self.outbound
                    .received(a.packet_id, a.reason_code, out, now, &self.gw.metrics);
            }
            Packet::PubRel(a) => {
                let known = self.incoming_qos2.remove(&a.packet_id);
                // PUBCOMP only once the release is saved: a session whose
                // record still holds the id would take the client's next
                // message with it for a retransmission.
                if known && !self.save().await && self.expiry != Some(0) {
                    return Err(reason::UNSPECIFIED_ERROR);
                }
                self.send(Packet::PubComp(Ack {
                    packet_id: a.packet_id,
                    reason_code: if known {
                        reason::SUCCESS
                    } else {
                        reason::PACKET_IDENTIFIER_NOT_FOUND
                    },
                    properties: Properties::default(),
                }));
            }
            Packet::Subscribe(s) => self.subscribe(s).await?,
            Packet::Unsubscribe(u) => self.unsubscribe(u).await,
            Packet::PingReq => self.send(Packet::PingResp),
            Packet::Disconnect(d) => {
                if let Some(secs) = d.properties.session_expiry_interval {
                    if self.expiry == Some(0) && secs != 0 {
                        return Err(reason::PROTOCOL_ERROR);
                    }
                    self.expiry = (secs != u32::MAX).then_some(secs);
                }
                return Ok(Some(if d.reason_code == reason::DISCONNECT_WITH_WILL {
                    End::WithWill
                } else {
                    End::Normal
                }));
            }
            // A second CONNECT, AUTH without an authentication method, or
            // a packet only a server sends.
            _ => return Err(reason::PROTOCOL_ERROR),
        }
        Ok(None)
    }

    /// The receipt of the next QoS 2 message this connection stores.
    fn next_receipt(&mut self, packet_id: u16) -> Receipt {
        let seq = self.incoming_seq;
        self.incoming_seq += 1;
        Receipt {
            epoch: self.claim,
            seq,
            packet_id,
        }
    }

    /// Notes that the QoS 2 message of receipt `seq` may have been stored
    /// though its append failed: the session's next connection looks for
    /// it in the log from the cursors of now (below anything this append
    /// wrote), as for a connection whose node died.
    fn unsure(&mut self, seq: u64) {
        match &mut self.unsure {
            Some((_, first)) => *first = (*first).min(seq),
            None => self.unsure = Some((self.cursors(), seq)),
        }
    }

    /// Saves the releases of the QoS 2 deliveries PUBREC'd in this batch,
    /// then sends their PUBRELs (the connection closes when the save
    /// fails). Packets other than PUBREL (an error reason's answer) need
    /// no save.
    async fn release_held(&mut self) -> Result<(), u8> {
        if self.held.is_empty() {
            return Ok(());
        }
        let releases = self
            .held
            .iter()
            .any(|p| matches!(p, Packet::PubRel(a) if a.reason_code == 0));
        if releases && !self.save().await {
            self.held.clear();
            return Err(reason::UNSPECIFIED_ERROR);
        }
        self.out.append(&mut self.held);
        Ok(())
    }
}
