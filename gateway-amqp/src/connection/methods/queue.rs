//! The queue class (50): declare, bind, unbind, purge, delete.

use crate::codec::{MessageCount, Method, QueueDeclare, QueueDeclareOk, QueueDelete};
use crate::refusal::Answer;
use crate::routing::Destination;

use super::super::Conn;

impl Conn {
    /// queue.declare, bind, unbind, purge and delete.
    pub(super) async fn queue_method(&mut self, channel: u16, m: Method) -> Answer<()> {
        match m {
            Method::QueueDeclare(d) => self.declare_queue(channel, d).await,
            Method::QueueBind(b) => {
                let to = Destination::queue(&b.queue);
                let ok = (!b.no_wait).then_some(Method::QueueBindOk);
                self.binding(
                    channel,
                    &b.exchange,
                    to,
                    &b.routing_key,
                    b.arguments,
                    true,
                    ok,
                )
                .await
            }
            Method::QueueUnbind(b) => {
                let to = Destination::queue(&b.queue);
                let ok = Some(Method::QueueUnbindOk);
                self.binding(
                    channel,
                    &b.exchange,
                    to,
                    &b.routing_key,
                    b.arguments,
                    false,
                    ok,
                )
                .await
            }
            Method::QueuePurge(p) => {
                self.channel_mut(channel)?;
                let vhost = self.vhost.clone();
                let q = self.gw.queue(&vhost, &p.queue, self.id).await?;
                let n = q.purge().await;
                if !p.no_wait {
                    self.send(
                        channel,
                        Method::QueuePurgeOk(MessageCount { message_count: n }),
                    );
                }
                Ok(())
            }
            Method::QueueDelete(d) => self.delete_queue(channel, d).await,
            other => self.not_from_client(channel, &other),
        }
    }

    async fn declare_queue(&mut self, channel: u16, d: QueueDeclare) -> Answer<()> {
        self.channel_mut(channel)?;
        let vhost = self.vhost.clone();
        let declared = self
            .gw
            .declare_queue(
                &vhost,
                &d.queue,
                d.passive,
                d.durable,
                d.exclusive,
                d.auto_delete,
                d.arguments,
                self.id,
            )
            .await?;
        if !d.no_wait {
            self.send(
                channel,
                Method::QueueDeclareOk(QueueDeclareOk {
                    queue: declared.name,
                    message_count: declared.messages,
                    consumer_count: declared.consumers,
                }),
            );
        }
        Ok(())
    }

    async fn delete_queue(&mut self, channel: u16, d: QueueDelete) -> Answer<()> {
        self.channel_mut(channel)?;
        let vhost = self.vhost.clone();
        let n = self
            .gw
            .delete_queue(&vhost, &d.queue, d.if_unused, d.if_empty, Some(self.id))
            .await?;
        if !d.no_wait {
            self.send(
                channel,
                Method::QueueDeleteOk(MessageCount { message_count: n }),
            );
        }
        Ok(())
    }
}
