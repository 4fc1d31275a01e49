//! The exchange class (40): declare, delete, bind, unbind.

use crate::codec::{ExchangeDeclare, Method};
use crate::refusal::Answer;
use crate::routing::Destination;

use super::super::Conn;

impl Conn {
    /// exchange.declare, delete, bind and unbind.
    pub(super) async fn exchange_method(&mut self, channel: u16, m: Method) -> Answer<()> {
        match m {
            Method::ExchangeDeclare(d) => self.declare_exchange(channel, d).await,
            Method::ExchangeDelete(d) => {
                self.channel_mut(channel)?;
                let vhost = self.vhost.clone();
                self.gw
                    .delete_exchange(&vhost, &d.exchange, d.if_unused)
                    .await?;
                if !d.no_wait {
                    self.send(channel, Method::ExchangeDeleteOk);
                }
                Ok(())
            }
            Method::ExchangeBind(b) => {
                let to = Destination::exchange(&b.destination);
                let ok = (!b.no_wait).then_some(Method::ExchangeBindOk);
                self.binding(
                    channel,
                    &b.source,
                    to,
                    &b.routing_key,
                    b.arguments,
                    true,
                    ok,
                )
                .await
            }
            Method::ExchangeUnbind(b) => {
                let to = Destination::exchange(&b.destination);
                let ok = (!b.no_wait).then_some(Method::ExchangeUnbindOk);
                self.binding(
                    channel,
                    &b.source,
                    to,
                    &b.routing_key,
                    b.arguments,
                    false,
                    ok,
                )
                .await
            }
            other => self.not_from_client(channel, &other),
        }
    }

    async fn declare_exchange(&mut self, channel: u16, d: ExchangeDeclare) -> Answer<()> {
        self.channel_mut(channel)?;
        let vhost = self.vhost.clone();
        self.gw
            .declare_exchange(
                &vhost,
                &d.exchange,
                &d.exchange_type,
                d.passive,
                d.durable,
                d.auto_delete,
                d.internal,
                d.arguments,
            )
            .await?;
        if !d.no_wait {
            self.send(channel, Method::ExchangeDeclareOk);
        }
        Ok(())
    }
}
