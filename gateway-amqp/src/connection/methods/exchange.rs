//! The exchange class (40): declare, delete, bind, unbind.

use crate::codec::{ExchangeBind, ExchangeDeclare, Method};
use crate::refusal::Answer;
use crate::routing::Destination;

use super::super::Conn;

impl Conn {
    /// exchange.declare, delete, bind and unbind.
    pub(super) async fn exchange_method(&mut self, channel: u16, m: Method) -> Answer<()> {
        match m {
            Method::ExchangeDeclare(d) => self.declare_exchange(channel, d).await,
            Method::ExchangeDelete(d) => {
                let vhost = self.vhost_for(channel)?;
                self.gw
                    .delete_exchange(&vhost, &d.exchange, d.if_unused)
                    .await?;
                if !d.no_wait {
                    self.send(channel, Method::ExchangeDeleteOk);
                }
                Ok(())
            }
            Method::ExchangeBind(b) => self.exchange_binding(channel, b, true).await,
            Method::ExchangeUnbind(b) => self.exchange_binding(channel, b, false).await,
            other => self.not_from_client(channel, &other),
        }
    }

    /// exchange.bind (`bind`) or exchange.unbind.
    async fn exchange_binding(&mut self, channel: u16, b: ExchangeBind, bind: bool) -> Answer<()> {
        let to = Destination::exchange(&b.destination);
        let ok = if bind {
            Method::ExchangeBindOk
        } else {
            Method::ExchangeUnbindOk
        };
        let ok = (!b.no_wait).then_some(ok);
        self.binding(
            channel,
            &b.source,
            to,
            &b.routing_key,
            b.arguments,
            bind,
            ok,
        )
        .await
    }

    async fn declare_exchange(&mut self, channel: u16, d: ExchangeDeclare) -> Answer<()> {
        let vhost = self.vhost_for(channel)?;
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
