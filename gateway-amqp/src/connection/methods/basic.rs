//! The basic class (60): qos, consume, cancel, publish, get, the
//! acknowledgements (ack, nack, reject) and recover.
//!
//! A publish only starts here: its content header and body follow in
//! frames of their own (see `publish.rs`).

use std::sync::Arc;

use bytes::BytesMut;

use crate::codec::{
    BasicCancel, BasicCancelOk, BasicConsume, BasicConsumeOk, BasicGet, BasicGetOk, BasicQos,
    Method, reply,
};
use crate::queue::{self, Consumer, QueueHandle};
use crate::refusal::{Answer, Refusal};

use super::super::{Conn, Incoming, TxAck};
use super::settle_ack;

impl Conn {
    /// basic.qos, consume, cancel, publish, get, ack, nack, reject and
    /// recover.
    pub(super) async fn basic_method(&mut self, channel: u16, m: Method) -> Answer<()> {
        match m {
            Method::BasicQos(q) => self.qos(channel, &q),
            Method::BasicConsume(c) => self.consume(channel, c).await,
            Method::BasicCancel(c) => self.cancel(channel, c),
            Method::BasicPublish(p) => {
                let ch = self.channel_mut(channel)?;
                ch.incoming = Some(Incoming {
                    publish: p,
                    header: None,
                    body: BytesMut::new(),
                });
                Ok(())
            }
            Method::BasicGet(g) => self.get(channel, g).await,
            Method::BasicAck(a) => {
                self.acknowledge(channel, TxAck::Ack(a.delivery_tag, a.multiple))
            }
            Method::BasicNack(n) => {
                self.acknowledge(channel, TxAck::Nack(n.delivery_tag, n.multiple, n.requeue))
            }
            Method::BasicReject(r) => {
                self.acknowledge(channel, TxAck::Nack(r.delivery_tag, false, r.requeue))
            }
            Method::BasicRecover(_) | Method::BasicRecoverAsync(_) => self.recover(channel),
            other => self.not_from_client(channel, &other),
        }
    }

    fn qos(&mut self, channel: u16, q: &BasicQos) -> Answer<()> {
        let ch = self.channel_mut(channel)?;
        if q.global {
            // Shared by the consumers the channel starts from now.
            ch.budget = (q.prefetch_count > 0).then(|| {
                Arc::new(queue::Budget {
                    held: std::sync::atomic::AtomicU32::new(0),
                    limit: u32::from(q.prefetch_count),
                })
            });
        } else {
            ch.prefetch = q.prefetch_count;
        }
        self.send(channel, Method::BasicQosOk);
        Ok(())
    }

    async fn consume(&mut self, channel: u16, c: BasicConsume) -> Answer<()> {
        let vhost = self.vhost_for(channel)?;
        let q = self.gw.queue(&vhost, &c.queue, self.id).await?;
        let ch = self.channel_mut(channel)?;
        let tag = if c.consumer_tag.is_empty() {
            format!("amq.ctag-{}-{}", channel, ch.consumers.len() + 1)
        } else {
            c.consumer_tag.clone()
        };
        if ch.consumers.contains_key(&tag) {
            return Err(Refusal::new(
                reply::NOT_ALLOWED,
                format!("NOT_ALLOWED - attempt to reuse consumer tag '{tag}'"),
            ));
        }
        let prefetch = ch.prefetch;
        let budget = ch.budget.clone();
        ch.consumers
            .insert(tag.clone(), (c.queue.clone(), q.clone()));
        ch.used.insert(q.topic.to_string(), q.clone());
        // consume-ok goes before any delivery.
        if !c.no_wait {
            self.send(
                channel,
                Method::BasicConsumeOk(BasicConsumeOk {
                    consumer_tag: tag.clone(),
                }),
            );
        }
        let refused = q
            .consume(Consumer {
                connection: self.id,
                channel,
                tag: tag.clone(),
                prefetch,
                no_ack: c.no_ack,
                exclusive: c.exclusive,
                tx: self.events.clone(),
                budget,
            })
            .await;
        if refused.is_err() {
            if let Ok(ch) = self.channel_mut(channel) {
                ch.consumers.remove(&tag);
            }
            return Err(Refusal::new(
                reply::ACCESS_REFUSED,
                format!(
                    "ACCESS_REFUSED - queue '{}' in vhost '{vhost}' in exclusive use",
                    c.queue
                ),
            ));
        }
        Ok(())
    }

    fn cancel(&mut self, channel: u16, c: BasicCancel) -> Answer<()> {
        let ch = self.channel_mut(channel)?;
        if let Some((name, q)) = ch.consumers.remove(&c.consumer_tag) {
            q.cancel(self.id, channel, &c.consumer_tag);
            self.consumer_gone(name);
        }
        if !c.no_wait {
            self.send(
                channel,
                Method::BasicCancelOk(BasicCancelOk {
                    consumer_tag: c.consumer_tag,
                }),
            );
        }
        Ok(())
    }

    async fn get(&mut self, channel: u16, g: BasicGet) -> Answer<()> {
        self.channel_mut(channel)?;
        // Earlier publishes of this connection are in the queue first.
        self.flush_publishes().await;
        let vhost = self.vhost.clone();
        let q = self.gw.queue(&vhost, &g.queue, self.id).await?;
        let Some(d) = q.get(self.id, channel, g.no_ack).await else {
            self.send(channel, Method::BasicGetEmpty);
            return Ok(());
        };
        let ch = self.channel_mut(channel)?;
        ch.next_tag += 1;
        let tag = ch.next_tag;
        ch.used.insert(q.topic.to_string(), q.clone());
        if !d.settled {
            ch.unacked.insert(tag, (q.clone(), d.offset, false));
        }
        self.send_content(
            channel,
            Method::BasicGetOk(BasicGetOk {
                delivery_tag: tag,
                redelivered: d.redelivered,
                exchange: d.message.exchange.clone(),
                routing_key: d.message.routing_key.clone(),
                message_count: d.remaining,
            }),
            &d.message.properties,
            &d.message.body.clone(),
        );
        Ok(())
    }

    /// ack, nack or reject: settled now, or held back until a
    /// transaction commits.
    fn acknowledge(&mut self, channel: u16, ack: TxAck) -> Answer<()> {
        let ch = self.channel_mut(channel)?;
        if ch.tx {
            ch.tx_acks.push(ack);
            Ok(())
        } else {
            settle_ack(ch, ack)
        }
    }

    /// basic.recover (and recover-async): everything unacknowledged goes
    /// back to its queue, to be delivered again.
    fn recover(&mut self, channel: u16) -> Answer<()> {
        let ch = self.channel_mut(channel)?;
        ch.unacked.clear();
        if let Some(b) = &ch.budget {
            b.release(u32::MAX);
        }
        let used: Vec<QueueHandle> = ch.used.values().cloned().collect();
        for q in used {
            q.recover(self.id, channel);
        }
        self.send(channel, Method::BasicRecoverOk);
        Ok(())
    }
}
