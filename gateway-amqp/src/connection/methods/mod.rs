//! The methods of channels: what each does and answers, one file per AMQP
//! class (0-9-1 §1.2); `method` sorts them by class.
//!
//! # Errors
//! Every refusal is an [`Answer`] error with its reply code and text;
//! `Conn::refuse` closes the channel or (5xx) the connection with it.

use std::collections::HashMap;

use crate::codec::{FieldTable, Method, class, reply};
use crate::queue::QueueHandle;
use crate::refusal::{Answer, Refusal};
use crate::routing::Destination;

use super::{Channel, Conn, Step, TxAck};

mod basic;
mod channel;
mod confirm;
mod connection;
mod exchange;
mod queue;
mod tx;

impl Conn {
    /// Handles one method the client sent on `channel`, by its class.
    pub(super) async fn method(&mut self, channel: u16, m: Method) -> Answer<Step> {
        // Connection class on channel 0 only, others never on channel 0.
        if channel == 0 {
            return self.connection_method(m);
        }
        if m.class_id() == class::CONNECTION {
            return Err(Refusal::new(
                reply::COMMAND_INVALID,
                format!("COMMAND_INVALID - {} on channel {channel}", m.name()),
            ));
        }
        // A channel the server closed ignores all but close and close-ok.
        if let Some(ch) = self.channels.get(&channel)
            && ch.closing
        {
            self.closing_channel_method(channel, &m);
            return Ok(Step::Go);
        }
        match m.class_id() {
            class::CHANNEL => self.channel_method(channel, m).await?,
            class::EXCHANGE => self.exchange_method(channel, m).await?,
            class::QUEUE => self.queue_method(channel, m).await?,
            class::BASIC => self.basic_method(channel, m).await?,
            class::CONFIRM => self.confirm_method(channel, m)?,
            class::TX => self.tx_method(channel, m).await?,
            _ => self.not_from_client(channel, &m)?,
        }
        Ok(Step::Go)
    }

    /// A method only a server sends (an `-ok`, a delivery, ...): 503
    /// COMMAND_INVALID, or 504 CHANNEL_ERROR first on a channel not open.
    fn not_from_client(&mut self, channel: u16, m: &Method) -> Answer<()> {
        self.channel_mut(channel)?;
        Err(Refusal::new(
            reply::COMMAND_INVALID,
            format!("COMMAND_INVALID - a client does not send {}", m.name()),
        ))
    }

    /// Binds (`bind`) or unbinds `to` and `source`; sends `ok` after.
    #[allow(clippy::too_many_arguments)]
    async fn binding(
        &mut self,
        channel: u16,
        source: &str,
        to: Destination,
        routing_key: &str,
        arguments: FieldTable,
        bind: bool,
        ok: Option<Method>,
    ) -> Answer<()> {
        let vhost = self.vhost_for(channel)?;
        self.gw
            .bind(&vhost, source, to, routing_key, arguments, bind, self.id)
            .await?;
        if let Some(ok) = ok {
            self.send(channel, ok);
        }
        Ok(())
    }
}

/// Acknowledges or rejects what `ack` names (one a transaction held back,
/// or one that just arrived).
fn settle_ack(ch: &mut Channel, ack: TxAck) -> Answer<()> {
    match ack {
        TxAck::Ack(tag, multiple) => settle(ch, tag, multiple, None),
        TxAck::Nack(tag, multiple, requeue) => settle(ch, tag, multiple, Some(requeue)),
    }
}

/// Acknowledges (`requeue` None) or rejects delivery `tag` (and with
/// `multiple` every earlier one; tag 0 with `multiple`: all).
fn settle(ch: &mut Channel, tag: u64, multiple: bool, requeue: Option<bool>) -> Answer<()> {
    let tags: Vec<u64> = if multiple {
        let upto = if tag == 0 { u64::MAX } else { tag };
        ch.unacked.range(..=upto).map(|(t, _)| *t).collect()
    } else if ch.unacked.contains_key(&tag) {
        vec![tag]
    } else {
        Vec::new()
    };
    if tags.is_empty() && !(multiple && tag == 0) {
        return Err(Refusal::new(
            reply::PRECONDITION_FAILED,
            format!("PRECONDITION_FAILED - unknown delivery tag {tag}"),
        ));
    }
    let mut by_queue: HashMap<String, (QueueHandle, Vec<i64>)> = HashMap::new();
    let mut freed = 0u32;
    for t in tags {
        if let Some((q, offset, budgeted)) = ch.unacked.remove(&t) {
            freed += u32::from(budgeted);
            by_queue
                .entry(q.topic.to_string())
                .or_insert_with(|| (q, Vec::new()))
                .1
                .push(offset);
        }
    }
    for (_, (q, offsets)) in by_queue {
        match requeue {
            None => q.ack(offsets),
            Some(requeue) => q.reject(offsets, requeue),
        }
    }
    // Room given back: every queue the channel consumes from may deliver.
    if freed > 0
        && let Some(b) = &ch.budget
    {
        b.release(freed);
        for (_, q) in ch.consumers.values() {
            q.poke();
        }
    }
    Ok(())
}
