//! Why an exchange, binding or routing operation was refused, and the AMQP reply code for it.

/// A refused exchange, binding or routing operation.
///
/// `Display` gives the reply text in RabbitMQ's style (`NOT_FOUND - no exchange 'x' in vhost
/// '/'`), ready for `channel.close` / `connection.close`; the caller truncates it to the 255
/// bytes of a short string. [`RoutingError::reply_code`] gives the reply code and
/// [`RoutingError::is_connection_error`] whether it closes the connection or only the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The vhost does not exist (530 NOT_ALLOWED, as for `connection.open`).
    #[error("NOT_ALLOWED - vhost '{vhost}' not found")]
    VhostNotFound { vhost: String },
    /// The exchange does not exist (404 NOT_FOUND).
    #[error("NOT_FOUND - no exchange '{exchange}' in vhost '{vhost}'")]
    ExchangeNotFound { vhost: String, exchange: String },
    /// The queue does not exist (404 NOT_FOUND).
    #[error("NOT_FOUND - no queue '{queue}' in vhost '{vhost}'")]
    QueueNotFound { vhost: String, queue: String },
    /// Declaring, deleting, binding or unbinding the default exchange `""` (403 ACCESS_REFUSED).
    #[error("ACCESS_REFUSED - operation not permitted on the default exchange")]
    DefaultExchange,
    /// Declaring a new exchange whose name starts with `amq.` (403 ACCESS_REFUSED).
    #[error("ACCESS_REFUSED - exchange name '{exchange}' contains reserved prefix 'amq.*'")]
    ReservedName { exchange: String },
    /// Deleting a pre-declared `amq.*` exchange (403 ACCESS_REFUSED).
    #[error(
        "ACCESS_REFUSED - deletion of system exchange '{exchange}' in vhost '{vhost}' not allowed"
    )]
    SystemExchange { vhost: String, exchange: String },
    /// Publishing to an internal exchange, which only other exchanges may route to
    /// (403 ACCESS_REFUSED).
    #[error("ACCESS_REFUSED - cannot publish to internal exchange '{exchange}' in vhost '{vhost}'")]
    InternalExchange { vhost: String, exchange: String },
    /// Redeclaring an exchange with another type, flag or argument (406 PRECONDITION_FAILED).
    /// `received` and `current` are rendered values (`'true'`, `'topic'`, `none`).
    #[error(
        "PRECONDITION_FAILED - inequivalent arg '{arg}' for exchange '{exchange}' in vhost \
         '{vhost}': received {received} but current is {current}"
    )]
    Inequivalent {
        vhost: String,
        exchange: String,
        arg: String,
        received: String,
        current: String,
    },
    /// Deleting with if-unused an exchange that is the source of bindings
    /// (406 PRECONDITION_FAILED).
    #[error("PRECONDITION_FAILED - exchange '{exchange}' in vhost '{vhost}' in use")]
    InUse { vhost: String, exchange: String },
    /// A headers binding whose `x-match` is not one of the four known strings
    /// (406 PRECONDITION_FAILED). `value` is the rendered value.
    #[error(
        "PRECONDITION_FAILED - invalid x-match value {value}: expected 'all', 'any', \
         'all-with-x' or 'any-with-x'"
    )]
    InvalidXMatch { value: String },
    /// An `alternate-exchange` argument that is not a string (406 PRECONDITION_FAILED).
    #[error(
        "PRECONDITION_FAILED - invalid value {value} for arg 'alternate-exchange' of exchange \
         '{exchange}' in vhost '{vhost}': expected a string"
    )]
    InvalidAlternateExchange {
        vhost: String,
        exchange: String,
        value: String,
    },
    /// An exchange type other than direct, fanout, topic and headers (503 COMMAND_INVALID).
    #[error("COMMAND_INVALID - unknown exchange type '{kind}'")]
    UnknownExchangeType { kind: String },
}

impl RoutingError {
    /// The AMQP 0-9-1 reply code: the one place these errors map onto the wire.
    pub fn reply_code(&self) -> u16 {
        match self {
            Self::VhostNotFound { .. } => 530,
            Self::ExchangeNotFound { .. } | Self::QueueNotFound { .. } => 404,
            Self::DefaultExchange
            | Self::ReservedName { .. }
            | Self::SystemExchange { .. }
            | Self::InternalExchange { .. } => 403,
            Self::Inequivalent { .. }
            | Self::InUse { .. }
            | Self::InvalidXMatch { .. }
            | Self::InvalidAlternateExchange { .. } => 406,
            Self::UnknownExchangeType { .. } => 503,
        }
    }

    /// True when the code is a connection exception (503, 530: answered with
    /// `connection.close`), false for a channel exception (`channel.close`).
    pub fn is_connection_error(&self) -> bool {
        matches!(self.reply_code(), 503 | 530)
    }
}
