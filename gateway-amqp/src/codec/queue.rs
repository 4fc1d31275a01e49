//! The arguments of the queue class (class 50, 0-9-1 §1.7).
//!
//! # Format
//!
//! ```text
//!  declare (10)     short reserved, shortstr queue, bit passive,
//!                   bit durable, bit exclusive, bit auto-delete, bit nowait,
//!                   table arguments
//!  declare-ok (11)  shortstr queue, long message-count, long consumer-count
//!  bind (20)        short reserved, shortstr queue, shortstr exchange,
//!                   shortstr routing-key, bit nowait, table arguments
//!  bind-ok (21)     nothing
//!  purge (30)       short reserved, shortstr queue, bit nowait
//!  purge-ok (31)    long message-count
//!  delete (40)      short reserved, shortstr queue, bit if-unused,
//!                   bit if-empty, bit nowait
//!  delete-ok (41)   long message-count
//!  unbind (50)      short reserved, shortstr queue, shortstr exchange,
//!                   shortstr routing-key, table arguments (no nowait)
//!  unbind-ok (51)   nothing
//! ```

use super::data_types::{Reader, Writer};
use super::field_table::FieldTable;
use super::method::Arguments;
use super::{DecodeError, EncodeError};

/// queue.declare: create a queue, or check that it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDeclare {
    /// The queue's name; empty asks the server to generate one.
    pub queue: String,
    /// Only check that it exists (404 if not); create nothing.
    pub passive: bool,
    /// Survives a broker restart.
    pub durable: bool,
    /// Used by this connection only, deleted when it closes.
    pub exclusive: bool,
    /// Deleted once its last consumer cancels.
    pub auto_delete: bool,
    /// No declare-ok wanted.
    pub no_wait: bool,
    /// Optional arguments, e.g. `x-message-ttl`, `x-queue-type`.
    pub arguments: FieldTable,
}

impl Arguments for QueueDeclare {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            queue: r.shortstr("queue")?,
            passive: r.bit("passive")?,
            durable: r.bit("durable")?,
            exclusive: r.bit("exclusive")?,
            auto_delete: r.bit("auto-delete")?,
            no_wait: r.bit("nowait")?,
            arguments: r.table("arguments")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.queue, "queue")?;
        w.bit(self.passive);
        w.bit(self.durable);
        w.bit(self.exclusive);
        w.bit(self.auto_delete);
        w.bit(self.no_wait);
        w.table(&self.arguments, "arguments")
    }
}

/// queue.declare-ok: the queue's name (the generated one, if asked) and
/// counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDeclareOk {
    /// The queue's name.
    pub queue: String,
    /// Messages ready for delivery (not counting unacknowledged ones).
    pub message_count: u32,
    /// Active consumers.
    pub consumer_count: u32,
}

impl Arguments for QueueDeclareOk {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            queue: r.shortstr("queue")?,
            message_count: r.long("message-count")?,
            consumer_count: r.long("consumer-count")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.shortstr(&self.queue, "queue")?;
        w.long(self.message_count);
        w.long(self.consumer_count);
        Ok(())
    }
}

/// queue.bind: route messages from an exchange into a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBind {
    /// The queue; empty means the channel's last declared queue.
    pub queue: String,
    /// The exchange messages come from.
    pub exchange: String,
    /// The binding key, matched as the exchange's type says.
    pub routing_key: String,
    /// No bind-ok wanted.
    pub no_wait: bool,
    /// Binding arguments (a headers exchange matches on them).
    pub arguments: FieldTable,
}

impl Arguments for QueueBind {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            queue: r.shortstr("queue")?,
            exchange: r.shortstr("exchange")?,
            routing_key: r.shortstr("routing-key")?,
            no_wait: r.bit("nowait")?,
            arguments: r.table("arguments")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.queue, "queue")?;
        w.shortstr(&self.exchange, "exchange")?;
        w.shortstr(&self.routing_key, "routing-key")?;
        w.bit(self.no_wait);
        w.table(&self.arguments, "arguments")
    }
}

/// queue.unbind: stop routing from an exchange into a queue (no `nowait`:
/// unbind-ok always follows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUnbind {
    /// The queue; empty means the channel's last declared queue.
    pub queue: String,
    /// The exchange of the binding.
    pub exchange: String,
    /// The binding key of the binding.
    pub routing_key: String,
    /// The arguments of the binding.
    pub arguments: FieldTable,
}

impl Arguments for QueueUnbind {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            queue: r.shortstr("queue")?,
            exchange: r.shortstr("exchange")?,
            routing_key: r.shortstr("routing-key")?,
            arguments: r.table("arguments")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.queue, "queue")?;
        w.shortstr(&self.exchange, "exchange")?;
        w.shortstr(&self.routing_key, "routing-key")?;
        w.table(&self.arguments, "arguments")
    }
}

/// queue.purge: drop every ready message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePurge {
    /// The queue; empty means the channel's last declared queue.
    pub queue: String,
    /// No purge-ok wanted.
    pub no_wait: bool,
}

impl Arguments for QueuePurge {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            queue: r.shortstr("queue")?,
            no_wait: r.bit("nowait")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.queue, "queue")?;
        w.bit(self.no_wait);
        Ok(())
    }
}

/// queue.delete: remove a queue with its messages and bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDelete {
    /// The queue; empty means the channel's last declared queue.
    pub queue: String,
    /// Only if it has no consumers (406 otherwise).
    pub if_unused: bool,
    /// Only if it has no messages (406 otherwise).
    pub if_empty: bool,
    /// No delete-ok wanted.
    pub no_wait: bool,
}

impl Arguments for QueueDelete {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            queue: r.shortstr("queue")?,
            if_unused: r.bit("if-unused")?,
            if_empty: r.bit("if-empty")?,
            no_wait: r.bit("nowait")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.queue, "queue")?;
        w.bit(self.if_unused);
        w.bit(self.if_empty);
        w.bit(self.no_wait);
        Ok(())
    }
}

/// queue.purge-ok and queue.delete-ok: how many messages went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCount {
    /// Messages purged or deleted with the queue.
    pub message_count: u32,
}

impl Arguments for MessageCount {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            message_count: r.long("message-count")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.long(self.message_count);
        Ok(())
    }
}
