//! The AMQP 0-9-1 codec: the protocol header, frames, methods, content
//! headers and field tables from bytes and back.
//!
//! Pure: bytes in, frames out, no I/O. A connection first calls
//! [`check_protocol_header`] on the first 8 bytes, then, frame after frame,
//! [`check_frame`] (is one whole frame at the front of the buffer? how long
//! is it?) and [`decode_frame`] (parse it and advance the buffer), so a
//! half-received frame never allocates. Sizes are bounded: [`check_frame`]
//! refuses a frame larger than the negotiated `frame-max` as soon as its
//! header is in, every length inside a frame is checked against the bytes
//! actually there, and [`encode_content`] splits a body into frames that fit.
//!
//! # Format
//!
//! The specification is AMQP 0-9-1 (2008) with RabbitMQ's errata and
//! extensions, which is what clients speak:
//!
//! ```text
//!  protocol header   "AMQP" 0 0 9 1                              (§4.2.2)
//!  frame             type, channel, size, payload, 0xCE          (§4.2.3)
//!  method payload    class-id, method-id, arguments              (§4.2.4)
//!  header payload    class-id, weight, body-size, property flags,
//!                    properties                                  (§4.2.6)
//!  body payload      a slice of the message body
//!  heartbeat         empty payload on channel 0                  (§4.2.7)
//! ```
//!
//! Each layer is drawn in its file: `frame.rs` (header and frames),
//! `method.rs` and one file per class for the arguments, `content.rs`
//! (content header and properties), `data_types.rs` (integers, bits,
//! strings), `field_table.rs` (tables and their value types).
//!
//! # Invariants
//!
//! - [`decode_frame`] never panics, never consumes more than one frame, and
//!   never allocates on a length it has not checked against the bytes in
//!   hand; what it accepts, [`encode_frame`] writes back and [`decode_frame`]
//!   reads again equal (reserved fields and unused flag bits are dropped, so
//!   the bytes may differ; never in length upwards).
//! - Direction is not checked here (a server may decode a connection.start):
//!   the caller refuses methods that may not travel its way, or arrive in
//!   the wrong state or on the wrong channel.
//! - Every decoding error maps to one reply code ([`DecodeError::reply_code`])
//!   for the connection.close that answers it.
//!
//! # Concurrency
//!
//! Plain functions over caller-owned buffers; call from anywhere.

mod arguments;
mod auth;
mod basic;
mod channel;
pub mod class;
mod confirm;
mod connection;
mod content;
mod data_types;
mod exchange;
mod field_table;
mod frame;
mod method;
mod queue;
pub mod reply;

pub use auth::{parse_amqplain, parse_plain};
pub use basic::{
    BasicAck, BasicCancel, BasicCancelOk, BasicConsume, BasicConsumeOk, BasicDeliver, BasicGet,
    BasicGetOk, BasicNack, BasicPublish, BasicQos, BasicRecover, BasicReject, BasicReturn,
};
pub use channel::Flow;
pub use confirm::ConfirmSelect;
pub use connection::{
    Close, ConnectionBlocked, ConnectionOpen, ConnectionSecure, ConnectionSecureOk,
    ConnectionStart, ConnectionStartOk, ConnectionUpdateSecret, Tune,
};
pub use content::{BasicProperties, ContentHeader};
pub use exchange::{ExchangeBind, ExchangeDeclare, ExchangeDelete};
pub use field_table::{FieldTable, FieldValue, MAX_NESTING_DEPTH};
pub use frame::{
    FRAME_END, FRAME_MIN_SIZE, FRAME_OVERHEAD, Frame, FramePayload, PROTOCOL_HEADER,
    ProtocolHeader, check_frame, check_protocol_header, decode_frame, encode_content, encode_frame,
};
pub use method::Method;
pub use queue::{
    MessageCount, QueueBind, QueueDeclare, QueueDeclareOk, QueueDelete, QueuePurge, QueueUnbind,
};

/// Why bytes could not be decoded into a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a whole frame yet: at least this many more bytes are needed (a
    /// variant, not a failure).
    #[error("incomplete frame: at least {0} more bytes needed")]
    Incomplete(usize),
    /// The frame (header and frame-end included) is larger than the
    /// negotiated frame-max.
    #[error("frame of {size} bytes exceeds frame-max {max}")]
    FrameTooLarge { size: u64, max: u32 },
    /// A frame type other than method, header, body and heartbeat.
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// The octet after the payload is not 0xCE: the size was wrong or the
    /// stream is out of step.
    #[error("frame-end octet {0:#04x} instead of 0xce")]
    BadFrameEnd(u8),
    /// A heartbeat frame on a channel other than 0.
    #[error("heartbeat frame on channel {0}")]
    HeartbeatChannel(u16),
    /// A frame whose payload cannot be parsed: truncated fields, lengths
    /// past the end, trailing bytes, a heartbeat with a payload.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A parsable frame with an illegal value: a shortstr that is not UTF-8,
    /// an unknown field value type, tables nested too deep, a property flag
    /// basic does not have.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A method this codec does not know (including the access class).
    #[error("unknown method {class_id}/{method_id}")]
    UnknownMethod { class_id: u16, method_id: u16 },
    /// A content header for a class other than basic, the only one with
    /// content.
    #[error("content header for class {class_id}, which has no content")]
    UnexpectedContentClass { class_id: u16 },
}

impl DecodeError {
    /// The reply code of the connection.close that answers this error: 501
    /// FRAME_ERROR for what cannot be framed or parsed, 502 SYNTAX_ERROR for
    /// illegal values, 540 NOT_IMPLEMENTED for unknown methods (a server may
    /// prefer 503 COMMAND_INVALID for an unknown method of a known class),
    /// 505 UNEXPECTED_FRAME for content of a class without content.
    pub fn reply_code(&self) -> u16 {
        match self {
            Self::Incomplete(_)
            | Self::FrameTooLarge { .. }
            | Self::UnknownFrameType(_)
            | Self::BadFrameEnd(_)
            | Self::HeartbeatChannel(_)
            | Self::Malformed(_) => reply::FRAME_ERROR,
            Self::Syntax(_) => reply::SYNTAX_ERROR,
            Self::UnknownMethod { .. } => reply::NOT_IMPLEMENTED,
            Self::UnexpectedContentClass { .. } => reply::UNEXPECTED_FRAME,
        }
    }

    /// The class and method ids the connection.close answering this error
    /// names: those of an unknown method, else (0, 0).
    pub fn method_ids(&self) -> (u16, u16) {
        match *self {
            Self::UnknownMethod {
                class_id,
                method_id,
            } => (class_id, method_id),
            _ => (0, 0),
        }
    }

    /// Prefixes the message of a payload error with where it happened (a
    /// method's name, "content header").
    pub(crate) fn in_context(self, context: &str) -> Self {
        match self {
            Self::Malformed(m) => Self::Malformed(format!("{context}: {m}")),
            Self::Syntax(m) => Self::Syntax(format!("{context}: {m}")),
            other => other,
        }
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The frame would exceed the frame-max it must fit.
    #[error("encoded frame of {size} bytes exceeds frame-max {max}")]
    FrameTooLarge { size: u64, max: u32 },
    /// The frame cannot be expressed on the wire (a shortstr over 255 bytes,
    /// tables nested too deep, ...).
    #[error("invalid frame: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
