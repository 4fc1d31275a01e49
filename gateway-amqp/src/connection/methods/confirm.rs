//! The confirm class (85, RabbitMQ's publisher confirms): select.

use crate::codec::{Method, reply};
use crate::refusal::{Answer, Refusal};

use super::super::Conn;

impl Conn {
    /// confirm.select: the channel's publishes are confirmed from now on
    /// (refused on a transactional channel).
    pub(super) fn confirm_method(&mut self, channel: u16, m: Method) -> Answer<()> {
        let Method::ConfirmSelect(c) = m else {
            return self.not_from_client(channel, &m);
        };
        let ch = self.channel_mut(channel)?;
        if ch.tx {
            return Err(Refusal::new(
                reply::PRECONDITION_FAILED,
                "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
            ));
        }
        ch.confirm = true;
        if !c.no_wait {
            self.send(channel, Method::ConfirmSelectOk);
        }
        Ok(())
    }
}
