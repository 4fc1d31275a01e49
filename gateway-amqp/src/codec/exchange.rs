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

use super::data_types::{Reader, Writer};
use super::field_table::FieldTable;
use super::method::Arguments;
use super::{DecodeError, EncodeError};

/// exchange.declare: create an exchange, or check that it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDeclare {
    /// The exchange's name; may not be empty or start with `amq.`.
    pub exchange: String,
    /// `direct`, `fanout`, `topic`, `headers` (or a plugin's type).
    pub exchange_type: String,
    /// Only check that it exists (404 if not); create nothing.
    pub passive: bool,
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted once its last binding (as a source) goes.
    pub auto_delete: bool,
    /// Clients may not publish to it; only other exchanges route into it.
    pub internal: bool,
    /// No declare-ok wanted.
    pub no_wait: bool,
    /// Optional arguments, e.g. `alternate-exchange`.
    pub arguments: FieldTable,
}

impl Arguments for ExchangeDeclare {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            exchange: r.shortstr("exchange")?,
            exchange_type: r.shortstr("type")?,
            passive: r.bit("passive")?,
            durable: r.bit("durable")?,
            auto_delete: r.bit("auto-delete")?,
            internal: r.bit("internal")?,
            no_wait: r.bit("nowait")?,
            arguments: r.table("arguments")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.exchange, "exchange")?;
        w.shortstr(&self.exchange_type, "type")?;
        w.bit(self.passive);
        w.bit(self.durable);
        w.bit(self.auto_delete);
        w.bit(self.internal);
        w.bit(self.no_wait);
        w.table(&self.arguments, "arguments")
    }
}

/// exchange.delete: remove an exchange and its bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDelete {
    /// The exchange's name.
    pub exchange: String,
    /// Only if nothing is bound to it (406 otherwise).
    pub if_unused: bool,
    /// No delete-ok wanted.
    pub no_wait: bool,
}

impl Arguments for ExchangeDelete {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            exchange: r.shortstr("exchange")?,
            if_unused: r.bit("if-unused")?,
            no_wait: r.bit("nowait")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.exchange, "exchange")?;
        w.bit(self.if_unused);
        w.bit(self.no_wait);
        Ok(())
    }
}

/// exchange.bind and exchange.unbind: route (or stop routing) messages from
/// one exchange into another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeBind {
    /// The exchange messages are routed into.
    pub destination: String,
    /// The exchange messages come from.
    pub source: String,
    /// The binding key, matched as the source's type says.
    pub routing_key: String,
    /// No bind-ok (unbind-ok) wanted.
    pub no_wait: bool,
    /// Binding arguments (a headers exchange matches on them).
    pub arguments: FieldTable,
}

impl Arguments for ExchangeBind {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.short("reserved-1")?;
        Ok(Self {
            destination: r.shortstr("destination")?,
            source: r.shortstr("source")?,
            routing_key: r.shortstr("routing-key")?,
            no_wait: r.bit("nowait")?,
            arguments: r.table("arguments")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(0);
        w.shortstr(&self.destination, "destination")?;
        w.shortstr(&self.source, "source")?;
        w.shortstr(&self.routing_key, "routing-key")?;
        w.bit(self.no_wait);
        w.table(&self.arguments, "arguments")
    }
}
