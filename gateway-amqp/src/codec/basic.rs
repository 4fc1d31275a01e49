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

use super::arguments::arguments;
use super::field_table::FieldTable;

arguments! {
    /// basic.qos: how many unacknowledged deliveries a consumer (or the channel)
    /// may hold.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct BasicQos {
        /// Byte limit on unacknowledged bodies; 0 for none (RabbitMQ refuses
        /// anything else).
        pub prefetch_size: u32 = long("prefetch-size"),
        /// Message limit; 0 for none.
        pub prefetch_count: u16 = short("prefetch-count"),
        /// RabbitMQ's meaning: `false` applies to each new consumer on the
        /// channel, `true` to the channel as a whole.
        pub global: bool = bit("global"),
    }
}

arguments! {
    /// basic.consume: start a consumer on a queue.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BasicConsume {
        reserved short,
        /// The queue; empty means the channel's last declared queue.
        pub queue: String = shortstr("queue"),
        /// The consumer's tag, unique on the channel; empty asks the server to
        /// generate one.
        pub consumer_tag: String = shortstr("consumer-tag"),
        /// Do not deliver messages this connection published (RabbitMQ ignores
        /// it).
        pub no_local: bool = bit("no-local"),
        /// Deliveries count as acknowledged once sent.
        pub no_ack: bool = bit("no-ack"),
        /// The only consumer of the queue.
        pub exclusive: bool = bit("exclusive"),
        /// No consume-ok wanted.
        pub no_wait: bool = bit("nowait"),
        /// Optional arguments, e.g. `x-priority`, `x-stream-offset`.
        pub arguments: FieldTable = table("arguments"),
    }
}

arguments! {
    /// basic.consume-ok: the consumer runs, under this tag.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BasicConsumeOk {
        /// The consumer's tag (generated if the consume left it empty).
        pub consumer_tag: String = shortstr("consumer-tag"),
    }
}

arguments! {
    /// basic.cancel: stop a consumer. The server sends it too, when the queue
    /// goes (to clients with the `consumer_cancel_notify` capability).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BasicCancel {
        /// The consumer's tag.
        pub consumer_tag: String = shortstr("consumer-tag"),
        /// No cancel-ok wanted.
        pub no_wait: bool = bit("nowait"),
    }
}

arguments! {
    /// basic.cancel-ok: the consumer is gone.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BasicCancelOk {
        /// The consumer's tag.
        pub consumer_tag: String = shortstr("consumer-tag"),
    }
}

arguments! {
    /// basic.publish: a message for an exchange; its content follows.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BasicPublish {
        reserved short,
        /// The exchange; empty is the default exchange (routing key = queue).
        pub exchange: String = shortstr("exchange"),
        /// The routing key the exchange routes by.
        pub routing_key: String = shortstr("routing-key"),
        /// Return the message (basic.return, 312 NO_ROUTE) if no queue gets it.
        pub mandatory: bool = bit("mandatory"),
        /// Return it if no consumer can take it now (RabbitMQ refuses this).
        pub immediate: bool = bit("immediate"),
    }
}

arguments! {
    /// basic.return: a mandatory (or immediate) message that could not go
    /// anywhere, back to its publisher; its content follows.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BasicReturn {
        /// Why: 312 NO_ROUTE or 313 NO_CONSUMERS.
        pub reply_code: u16 = short("reply-code"),
        /// Human-readable detail.
        pub reply_text: String = shortstr("reply-text"),
        /// The exchange it was published to.
        pub exchange: String = shortstr("exchange"),
        /// The routing key it was published with.
        pub routing_key: String = shortstr("routing-key"),
    }
}

arguments! {
    /// basic.deliver: a message for a consumer; its content follows.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BasicDeliver {
        /// The consumer it is for.
        pub consumer_tag: String = shortstr("consumer-tag"),
        /// Names the delivery in ack/nack/reject; counts up from 1 per channel.
        pub delivery_tag: u64 = longlong("delivery-tag"),
        /// It may have been delivered before (and not acknowledged).
        pub redelivered: bool = bit("redelivered"),
        /// The exchange it was published to.
        pub exchange: String = shortstr("exchange"),
        /// The routing key it was published with.
        pub routing_key: String = shortstr("routing-key"),
    }
}

arguments! {
    /// basic.get: fetch one message without a consumer.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BasicGet {
        reserved short,
        /// The queue; empty means the channel's last declared queue.
        pub queue: String = shortstr("queue"),
        /// The message counts as acknowledged once sent.
        pub no_ack: bool = bit("no-ack"),
    }
}

arguments! {
    /// basic.get-ok: the message basic.get asked for; its content follows.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BasicGetOk {
        /// Names the delivery in ack/nack/reject.
        pub delivery_tag: u64 = longlong("delivery-tag"),
        /// It may have been delivered before.
        pub redelivered: bool = bit("redelivered"),
        /// The exchange it was published to.
        pub exchange: String = shortstr("exchange"),
        /// The routing key it was published with.
        pub routing_key: String = shortstr("routing-key"),
        /// Messages still ready in the queue.
        pub message_count: u32 = long("message-count"),
    }
}

arguments! {
    /// basic.ack: the client acknowledges deliveries; with publisher confirms,
    /// the server confirms publishes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct BasicAck {
        /// The delivery (or publish sequence number); 0 with `multiple` means
        /// everything outstanding.
        pub delivery_tag: u64 = longlong("delivery-tag"),
        /// Every tag up to and including this one.
        pub multiple: bool = bit("multiple"),
    }
}

arguments! {
    /// basic.reject: the client refuses one delivery.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct BasicReject {
        /// The delivery.
        pub delivery_tag: u64 = longlong("delivery-tag"),
        /// Put it back in the queue rather than dropping (or dead-lettering) it.
        pub requeue: bool = bit("requeue"),
    }
}

arguments! {
    /// basic.recover and basic.recover-async: redeliver every unacknowledged
    /// delivery of the channel.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct BasicRecover {
        /// Requeue them (possibly to other consumers) rather than redeliver to
        /// the same ones (RabbitMQ always requeues).
        pub requeue: bool = bit("requeue"),
    }
}

arguments! {
    /// basic.nack: a reject for one or many deliveries; with publisher
    /// confirms, the server's refusal of publishes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct BasicNack {
        /// The delivery (or publish sequence number); 0 with `multiple` means
        /// everything outstanding.
        pub delivery_tag: u64 = longlong("delivery-tag"),
        /// Every tag up to and including this one.
        pub multiple: bool = bit("multiple"),
        /// Put them back in the queue rather than dropping them.
        pub requeue: bool = bit("requeue"),
    }
}
