//! Reply codes (0-9-1 §1.1, the `constants` of the specification's XML): the
//! `reply-code` of connection.close, channel.close and basic.return.
//!
//! # Format
//!
//! One short. 2xx is success; 3xx and 4xx are soft errors (channel.close, the
//! connection lives on); 5xx are hard errors (connection.close). The codec's
//! own errors map onto these in [`DecodeError::reply_code`](super::DecodeError::reply_code).

/// Success (connection.close and channel.close that are not errors).
pub const REPLY_SUCCESS: u16 = 200;
/// Soft: the content is too large for the server to accept now.
pub const CONTENT_TOO_LARGE: u16 = 311;
/// Soft: a mandatory message could not be routed to any queue (basic.return).
pub const NO_ROUTE: u16 = 312;
/// Soft: an immediate message had no consumer to go to (basic.return).
pub const NO_CONSUMERS: u16 = 313;
/// Hard: an operator closed the connection.
pub const CONNECTION_FORCED: u16 = 320;
/// Hard: the virtual host does not exist.
pub const INVALID_PATH: u16 = 402;
/// Soft: the user may not do this to that entity.
pub const ACCESS_REFUSED: u16 = 403;
/// Soft: no such exchange or queue.
pub const NOT_FOUND: u16 = 404;
/// Soft: another connection holds the entity (an exclusive queue).
pub const RESOURCE_LOCKED: u16 = 405;
/// Soft: a precondition failed (a redeclare with other arguments, ...).
pub const PRECONDITION_FAILED: u16 = 406;
/// Hard: a frame that could not be decoded.
pub const FRAME_ERROR: u16 = 501;
/// Hard: a well-formed frame with an illegal field value.
pub const SYNTAX_ERROR: u16 = 502;
/// Hard: a method that is not valid here (in this connection or channel state).
pub const COMMAND_INVALID: u16 = 503;
/// Hard: a channel that is not open, or one opened twice.
pub const CHANNEL_ERROR: u16 = 504;
/// Hard: a frame of a type not expected now (a body without a header, ...).
pub const UNEXPECTED_FRAME: u16 = 505;
/// Hard: the server ran out of a resource (channels, memory).
pub const RESOURCE_ERROR: u16 = 506;
/// Hard: not allowed by the server's configuration or the peer's state.
pub const NOT_ALLOWED: u16 = 530;
/// Hard: a method or feature the server does not implement.
pub const NOT_IMPLEMENTED: u16 = 540;
/// Hard: the server failed internally.
pub const INTERNAL_ERROR: u16 = 541;

/// Whether `code` is a hard error, one that closes the connection rather
/// than only the channel.
pub fn is_hard_error(code: u16) -> bool {
    matches!(code, CONNECTION_FORCED | INVALID_PATH | 500..=599)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_and_soft() {
        for code in [
            CONNECTION_FORCED,
            INVALID_PATH,
            FRAME_ERROR,
            NOT_IMPLEMENTED,
        ] {
            assert!(is_hard_error(code), "{code}");
        }
        for code in [
            REPLY_SUCCESS,
            NO_ROUTE,
            ACCESS_REFUSED,
            NOT_FOUND,
            PRECONDITION_FAILED,
        ] {
            assert!(!is_hard_error(code), "{code}");
        }
    }
}
