//! The arguments of the basic class (class 60, 0-9-1 §1.8 and RabbitMQ's
//! nack). Publish, return, deliver and get-ok carry content: a content header
//! frame and body frames follow them on the same channel (`content.rs`).
//!
//! # Format
//!
//! ```text
//!  qos (10)            long prefetch-size, short prefetch-count, bit global
//!  qos-ok (11)         nothing
//!  consume (20)        short reserved, shortstr queue, shortstr consumer-tag,
//!                      bit no-local, bit no-ack, bit exclusive, bit nowait,
//!                      table arguments
//!  consume-ok (21)     shortstr consumer-tag
//!  cancel (30)         shortstr consumer-tag, bit nowait
//!  cancel-ok (31)      shortstr consumer-tag
//!  publish (40)        short reserved, shortstr exchange, shortstr routing-key,
//!                      bit mandatory, bit immediate                 + content
//!  return (50)         short reply-code, shortstr reply-text,
//!                      shortstr exchange, shortstr routing-key      + content
//!  deliver (60)        shortstr consumer-tag, longlong delivery-tag,
//!                      bit redelivered, shortstr exchange,
//!                      shortstr routing-key                         + content
//!  get (70)            short reserved, shortstr queue, bit no-ack
//!  get-ok (71)         longlong delivery-tag, bit redelivered,
//!                      shortstr exchange, shortstr routing-key,
//!                      long message-count                           + content
//!  get-empty (72)      shortstr reserved
//!  ack (80)            longlong delivery-tag, bit multiple
//!  reject (90)         longlong delivery-tag, bit requeue
//!  recover-async (100) bit requeue
//!  recover (110)       bit requeue
//!  recover-ok (111)    nothing
//!  nack (120)          longlong delivery-tag, bit multiple, bit requeue
//! ```

use super::data_types::{Reader, Writer};
use super::field_table::FieldTable;
use super::method::Arguments;
use super::{DecodeError, EncodeError};

/// basic.qos: how many unacknowledged deliveries a consumer (or the channel)
/// may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicQos {
    /// Byte limit on unacknowledged bodies; 0 for none (RabbitMQ refuses
    /// anything else).
    pub prefetch_size: u32,
    /// Message limit; 0 for none.
    pub prefetch_count: u16,
    /// RabbitMQ's meaning: `false` applies to each new consumer on the
    /// channel, `true` to the channel as a whole.
    pub global: bool,
}

impl Arguments for BasicQos {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            prefetch_size: r.long("prefetch-size")?,
            prefetch_count: r.short("prefetch-count")?,
            global: r.bit("global")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.long(self.prefetch_size);
        w.short(self.prefetch_count);
        w.bit(self.global);
        Ok(())
    }
}

/// basic.consume: start a consumer on a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicConsume {
    /// The queue; empty means the channel's last declared queue.
    pub queue: String,
    /// The consumer's tag, unique on the channel; empty asks the server to
    /// generate one.
    pub consumer_tag: String,
    /// Do not deliver messages this connection published (RabbitMQ ignores
    /// it).
    pub no_local: bool,
    /// Deliveries count as acknowledged once sent.
    pub no_ack: bool,
    /// The only consumer of the queue.
    pub exclusive: bool,
    /// No consume-ok wanted.
    pub no_wait: bool,
    /// Optional arguments, e.g. `x-priority`, `x-stream-offset`.
    pub arguments: FieldTable,
}

impl Arguments for BasicConsume {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            queue: r.shortstr("queue")?,
            consumer_tag: r.shortstr("consumer-tag")?,
            no_local: r.bit("no-local")?,
            no_ack: r.bit("no-ack")?,
            exclusive: r.bit("exclusive")?,
            no_wait: r.bit("nowait")?,
            arguments: r.table("arguments")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.queue, "queue")?;
        w.shortstr(&self.consumer_tag, "consumer-tag")?;
        w.bit(self.no_local);
        w.bit(self.no_ack);
        w.bit(self.exclusive);
        w.bit(self.no_wait);
        w.table(&self.arguments, "arguments")
    }
}

/// basic.consume-ok: the consumer runs, under this tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicConsumeOk {
    /// The consumer's tag (generated if the consume left it empty).
    pub consumer_tag: String,
}

impl Arguments for BasicConsumeOk {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            consumer_tag: r.shortstr("consumer-tag")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.shortstr(&self.consumer_tag, "consumer-tag")
    }
}

/// basic.cancel: stop a consumer. The server sends it too, when the queue
/// goes (to clients with the `consumer_cancel_notify` capability).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCancel {
    /// The consumer's tag.
    pub consumer_tag: String,
    /// No cancel-ok wanted.
    pub no_wait: bool,
}

impl Arguments for BasicCancel {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            consumer_tag: r.shortstr("consumer-tag")?,
            no_wait: r.bit("nowait")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.shortstr(&self.consumer_tag, "consumer-tag")?;
        w.bit(self.no_wait);
        Ok(())
    }
}

/// basic.cancel-ok: the consumer is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCancelOk {
    /// The consumer's tag.
    pub consumer_tag: String,
}

impl Arguments for BasicCancelOk {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            consumer_tag: r.shortstr("consumer-tag")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.shortstr(&self.consumer_tag, "consumer-tag")
    }
}

/// basic.publish: a message for an exchange; its content follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicPublish {
    /// The exchange; empty is the default exchange (routing key = queue).
    pub exchange: String,
    /// The routing key the exchange routes by.
    pub routing_key: String,
    /// Return the message (basic.return, 312 NO_ROUTE) if no queue gets it.
    pub mandatory: bool,
    /// Return it if no consumer can take it now (RabbitMQ refuses this).
    pub immediate: bool,
}

impl Arguments for BasicPublish {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            exchange: r.shortstr("exchange")?,
            routing_key: r.shortstr("routing-key")?,
            mandatory: r.bit("mandatory")?,
            immediate: r.bit("immediate")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.exchange, "exchange")?;
        w.shortstr(&self.routing_key, "routing-key")?;
        w.bit(self.mandatory);
        w.bit(self.immediate);
        Ok(())
    }
}

/// basic.return: a mandatory (or immediate) message that could not go
/// anywhere, back to its publisher; its content follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicReturn {
    /// Why: 312 NO_ROUTE or 313 NO_CONSUMERS.
    pub reply_code: u16,
    /// Human-readable detail.
    pub reply_text: String,
    /// The exchange it was published to.
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
}

impl Arguments for BasicReturn {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            reply_code: r.short("reply-code")?,
            reply_text: r.shortstr("reply-text")?,
            exchange: r.shortstr("exchange")?,
            routing_key: r.shortstr("routing-key")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(self.reply_code);
        w.shortstr(&self.reply_text, "reply-text")?;
        w.shortstr(&self.exchange, "exchange")?;
        w.shortstr(&self.routing_key, "routing-key")
    }
}

/// basic.deliver: a message for a consumer; its content follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicDeliver {
    /// The consumer it is for.
    pub consumer_tag: String,
    /// Names the delivery in ack/nack/reject; counts up from 1 per channel.
    pub delivery_tag: u64,
    /// It may have been delivered before (and not acknowledged).
    pub redelivered: bool,
    /// The exchange it was published to.
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
}

impl Arguments for BasicDeliver {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            consumer_tag: r.shortstr("consumer-tag")?,
            delivery_tag: r.longlong("delivery-tag")?,
            redelivered: r.bit("redelivered")?,
            exchange: r.shortstr("exchange")?,
            routing_key: r.shortstr("routing-key")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.shortstr(&self.consumer_tag, "consumer-tag")?;
        w.longlong(self.delivery_tag);
        w.bit(self.redelivered);
        w.shortstr(&self.exchange, "exchange")?;
        w.shortstr(&self.routing_key, "routing-key")
    }
}

/// basic.get: fetch one message without a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicGet {
    /// The queue; empty means the channel's last declared queue.
    pub queue: String,
    /// The message counts as acknowledged once sent.
    pub no_ack: bool,
}

impl Arguments for BasicGet {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            queue: r.shortstr("queue")?,
            no_ack: r.bit("no-ack")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.queue, "queue")?;
        w.bit(self.no_ack);
        Ok(())
    }
}

/// basic.get-ok: the message basic.get asked for; its content follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicGetOk {
    /// Names the delivery in ack/nack/reject.
    pub delivery_tag: u64,
    /// It may have been delivered before.
    pub redelivered: bool,
    /// The exchange it was published to.
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Messages still ready in the queue.
    pub message_count: u32,
}

impl Arguments for BasicGetOk {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            delivery_tag: r.longlong("delivery-tag")?,
            redelivered: r.bit("redelivered")?,
            exchange: r.shortstr("exchange")?,
            routing_key: r.shortstr("routing-key")?,
            message_count: r.long("message-count")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.longlong(self.delivery_tag);
        w.bit(self.redelivered);
        w.shortstr(&self.exchange, "exchange")?;
        w.shortstr(&self.routing_key, "routing-key")?;
        w.long(self.message_count);
        Ok(())
    }
}

/// basic.ack: the client acknowledges deliveries; with publisher confirms,
/// the server confirms publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicAck {
    /// The delivery (or publish sequence number); 0 with `multiple` means
    /// everything outstanding.
    pub delivery_tag: u64,
    /// Every tag up to and including this one.
    pub multiple: bool,
}

impl Arguments for BasicAck {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            delivery_tag: r.longlong("delivery-tag")?,
            multiple: r.bit("multiple")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.longlong(self.delivery_tag);
        w.bit(self.multiple);
        Ok(())
    }
}

/// basic.reject: the client refuses one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicReject {
    /// The delivery.
    pub delivery_tag: u64,
    /// Put it back in the queue rather than dropping (or dead-lettering) it.
    pub requeue: bool,
}

impl Arguments for BasicReject {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            delivery_tag: r.longlong("delivery-tag")?,
            requeue: r.bit("requeue")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.longlong(self.delivery_tag);
        w.bit(self.requeue);
        Ok(())
    }
}

/// basic.recover and basic.recover-async: redeliver every unacknowledged
/// delivery of the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicRecover {
    /// Requeue them (possibly to other consumers) rather than redeliver to
    /// the same ones (RabbitMQ always requeues).
    pub requeue: bool,
}

impl Arguments for BasicRecover {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            requeue: r.bit("requeue")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.bit(self.requeue);
        Ok(())
    }
}

/// basic.nack: a reject for one or many deliveries; with publisher
/// confirms, the server's refusal of publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicNack {
    /// The delivery (or publish sequence number); 0 with `multiple` means
    /// everything outstanding.
    pub delivery_tag: u64,
    /// Every tag up to and including this one.
    pub multiple: bool,
    /// Put them back in the queue rather than dropping them.
    pub requeue: bool,
}

impl Arguments for BasicNack {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            delivery_tag: r.longlong("delivery-tag")?,
            multiple: r.bit("multiple")?,
            requeue: r.bit("requeue")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.longlong(self.delivery_tag);
        w.bit(self.multiple);
        w.bit(self.requeue);
        Ok(())
    }
}
