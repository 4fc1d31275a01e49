//! The queue class (50): declare, bind, unbind, purge, delete.

use crate::codec::{MessageCount, Method, QueueDeclare, QueueDeclareOk, QueueDelete, QueueUnbind};
use crate::refusal::Answer;
use crate::routing::Destination;

use super::super::Conn;

impl Conn {
    /// queue.declare, bind, unbind, purge and delete.
    pub(super) async fn queue_method(&mut self, channel: u16, m: Method) -> Answer<()> {
        match m {
            Method::QueueDeclare(d) => self.declare_queue(channel, d).await,
            Method::QueueBind(b) => {
                let ok = (!b.no_wait).then_some(Method::QueueBindOk);
                let binding = QueueUnbind {
                    queue: b.queue,
                    exchange: b.exchange,
                    routing_key: b.routing_key,
                    arguments: b.arguments,
                };
                self.queue_binding(channel, binding, true, ok).await
            }
            Method::QueueUnbind(b) => {
                let ok = Some(Method::QueueUnbindOk);
                self.queue_binding(channel, b, false, ok).await
            }
            Method::QueuePurge(p) => {
                let vhost = self.vhost_for(channel)?;
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

    /// Makes (`bind`) or removes the binding a queue.unbind names (a
    /// queue.bind names the same, and nowait), answering with `ok`.
    async fn queue_binding(
        &mut self,
        channel: u16,
        b: QueueUnbind,
        bind: bool,
        ok: Option<Method>,
    ) -> Answer<()> {
        let to = Destination::queue(&b.queue);
        self.binding(
            channel,
            &b.exchange,
            to,
            &b.routing_key,
            b.arguments,
            bind,
            ok,
        )
        .await
    }

    async fn declare_queue(&mut self, channel: u16, d: QueueDeclare) -> Answer<()> {
        let vhost = self.vhost_for(channel)?;
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
        let vhost = self.vhost_for(channel)?;
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
