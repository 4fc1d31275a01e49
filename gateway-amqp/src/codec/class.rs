//! Class ids (0-9-1 §1.2 and RabbitMQ's extensions): the first short of every
//! method payload and of every content header, and the `class-id` of
//! connection.close and channel.close (0 when no method caused the close).

/// connection: negotiation, authentication, tuning, closing.
pub const CONNECTION: u16 = 10;
/// channel: opening, flow control, closing.
pub const CHANNEL: u16 = 20;
/// access: deprecated in 0-9-1, not decoded (its methods are unknown).
pub const ACCESS: u16 = 30;
/// exchange: declare, delete, bind and unbind exchanges.
pub const EXCHANGE: u16 = 40;
/// queue: declare, bind, purge, delete and unbind queues.
pub const QUEUE: u16 = 50;
/// basic: publishing, consuming, acknowledging; the only content class.
pub const BASIC: u16 = 60;
/// confirm: publisher confirms (RabbitMQ extension).
pub const CONFIRM: u16 = 85;
/// tx: transactions.
pub const TX: u16 = 90;
