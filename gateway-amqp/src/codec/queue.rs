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

use super::arguments::arguments;
use super::field_table::FieldTable;

arguments! {
    /// queue.declare: create a queue, or check that it exists.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct QueueDeclare {
        reserved short,
        /// The queue's name; empty asks the server to generate one.
        pub queue: String = shortstr("queue"),
        /// Only check that it exists (404 if not); create nothing.
        pub passive: bool = bit("passive"),
        /// Survives a broker restart.
        pub durable: bool = bit("durable"),
        /// Used by this connection only, deleted when it closes.
        pub exclusive: bool = bit("exclusive"),
        /// Deleted once its last consumer cancels.
        pub auto_delete: bool = bit("auto-delete"),
        /// No declare-ok wanted.
        pub no_wait: bool = bit("nowait"),
        /// Optional arguments, e.g. `x-message-ttl`, `x-queue-type`.
        pub arguments: FieldTable = table("arguments"),
    }
}

arguments! {
    /// queue.declare-ok: the queue's name (the generated one, if asked) and
    /// counts.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct QueueDeclareOk {
        /// The queue's name.
        pub queue: String = shortstr("queue"),
        /// Messages ready for delivery (not counting unacknowledged ones).
        pub message_count: u32 = long("message-count"),
        /// Active consumers.
        pub consumer_count: u32 = long("consumer-count"),
    }
}

arguments! {
    /// queue.bind: route messages from an exchange into a queue.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct QueueBind {
        reserved short,
        /// The queue; empty means the channel's last declared queue.
        pub queue: String = shortstr("queue"),
        /// The exchange messages come from.
        pub exchange: String = shortstr("exchange"),
        /// The binding key, matched as the exchange's type says.
        pub routing_key: String = shortstr("routing-key"),
        /// No bind-ok wanted.
        pub no_wait: bool = bit("nowait"),
        /// Binding arguments (a headers exchange matches on them).
        pub arguments: FieldTable = table("arguments"),
    }
}

arguments! {
    /// queue.unbind: stop routing from an exchange into a queue (no `nowait`:
    /// unbind-ok always follows).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct QueueUnbind {
        reserved short,
        /// The queue; empty means the channel's last declared queue.
        pub queue: String = shortstr("queue"),
        /// The exchange of the binding.
        pub exchange: String = shortstr("exchange"),
        /// The binding key of the binding.
        pub routing_key: String = shortstr("routing-key"),
        /// The arguments of the binding.
        pub arguments: FieldTable = table("arguments"),
    }
}

arguments! {
    /// queue.purge: drop every ready message.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct QueuePurge {
        reserved short,
        /// The queue; empty means the channel's last declared queue.
        pub queue: String = shortstr("queue"),
        /// No purge-ok wanted.
        pub no_wait: bool = bit("nowait"),
    }
}

arguments! {
    /// queue.delete: remove a queue with its messages and bindings.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct QueueDelete {
        reserved short,
        /// The queue; empty means the channel's last declared queue.
        pub queue: String = shortstr("queue"),
        /// Only if it has no consumers (406 otherwise).
        pub if_unused: bool = bit("if-unused"),
        /// Only if it has no messages (406 otherwise).
        pub if_empty: bool = bit("if-empty"),
        /// No delete-ok wanted.
        pub no_wait: bool = bit("nowait"),
    }
}

arguments! {
    /// queue.purge-ok and queue.delete-ok: how many messages went.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct MessageCount {
        /// Messages purged or deleted with the queue.
        pub message_count: u32 = long("message-count"),
    }
}
