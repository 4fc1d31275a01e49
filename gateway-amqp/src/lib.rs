//! Fjord's AMQP 0-9-1 gateway.
//!
//! - [`codec`]: the wire format, pure (no I/O): frames, methods, content
//!   headers and field tables.
//! - [`routing`]: exchanges and bindings: which queues a message goes to.

pub mod codec;
pub mod routing;
