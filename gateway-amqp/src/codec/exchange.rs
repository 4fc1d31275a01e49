//! The arguments of the exchange class (class 40, 0-9-1 §1.6 and RabbitMQ's
//! exchange-to-exchange bindings).
//!
//! # Format
//!
//! ```text
//!  declare (10)     short reserved, shortstr exchange, shortstr type,
//!                   bit passive, bit durable, bit auto-delete, bit internal,
//!                   bit nowait, table arguments
//!  declare-ok (11)  nothing
//!  delete (20)      short reserved, shortstr exchange, bit if-unused,
//!                   bit nowait
//!  delete-ok (21)   nothing
//!  bind (30), unbind (40)
//!                   short reserved, shortstr destination, shortstr source,
//!                   shortstr routing-key, bit nowait, table arguments
//!  bind-ok (31)     nothing
//!  unbind-ok (51)   nothing (51, not 41: so numbered by RabbitMQ)
//! ```
//!
//! The five bits of declare share one octet: passive is its low bit.

use super::arguments::arguments;
use super::field_table::FieldTable;

arguments! {
    /// exchange.declare: create an exchange, or check that it exists.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ExchangeDeclare {
        reserved short,
        /// The exchange's name; may not be empty or start with `amq.`.
        pub exchange: String = shortstr("exchange"),
        /// `direct`, `fanout`, `topic`, `headers` (or a plugin's type).
        pub exchange_type: String = shortstr("type"),
        /// Only check that it exists (404 if not); create nothing.
        pub passive: bool = bit("passive"),
        /// Survives a broker restart.
        pub durable: bool = bit("durable"),
        /// Deleted once its last binding (as a source) goes.
        pub auto_delete: bool = bit("auto-delete"),
        /// Clients may not publish to it; only other exchanges route into it.
        pub internal: bool = bit("internal"),
        /// No declare-ok wanted.
        pub no_wait: bool = bit("nowait"),
        /// Optional arguments, e.g. `alternate-exchange`.
        pub arguments: FieldTable = table("arguments"),
    }
}

arguments! {
    /// exchange.delete: remove an exchange and its bindings.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ExchangeDelete {
        reserved short,
        /// The exchange's name.
        pub exchange: String = shortstr("exchange"),
        /// Only if nothing is bound to it (406 otherwise).
        pub if_unused: bool = bit("if-unused"),
        /// No delete-ok wanted.
        pub no_wait: bool = bit("nowait"),
    }
}

arguments! {
    /// exchange.bind and exchange.unbind: route (or stop routing) messages from
    /// one exchange into another.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ExchangeBind {
        reserved short,
        /// The exchange messages are routed into.
        pub destination: String = shortstr("destination"),
        /// The exchange messages come from.
        pub source: String = shortstr("source"),
        /// The binding key, matched as the source's type says.
        pub routing_key: String = shortstr("routing-key"),
        /// No bind-ok (unbind-ok) wanted.
        pub no_wait: bool = bit("nowait"),
        /// Binding arguments (a headers exchange matches on them).
        pub arguments: FieldTable = table("arguments"),
    }
}
