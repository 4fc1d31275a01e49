//! A client's request refused in AMQP's terms: the reply code and text
//! that close its channel or (5xx) its connection.
//!
//! Every operation a channel or the admin API calls answers with an
//! [`Answer`]; routing errors and the gateway's own errors become
//! refusals here (the latter as 541 INTERNAL_ERROR).

use crate::Error;
use crate::codec::reply;
use crate::routing::RoutingError;

/// A refusal in AMQP's terms: a reply code and text, closing the channel
/// or (for the 5xx codes) the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: u16,
    pub(crate) text: String,
}

impl Refusal {
    pub(crate) fn new(code: u16, text: impl Into<String>) -> Refusal {
        Refusal {
            code,
            text: text.into(),
        }
    }

    pub(crate) fn closes_connection(&self) -> bool {
        reply::is_hard_error(self.code)
    }
}

impl From<RoutingError> for Refusal {
    fn from(e: RoutingError) -> Refusal {
        Refusal::new(e.reply_code(), e.to_string())
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::new(reply::INTERNAL_ERROR, format!("INTERNAL_ERROR - {e}"))
    }
}

/// What an operation gives back: its result, or the refusal to answer
/// the client with.
pub(crate) type Answer<T> = std::result::Result<T, Refusal>;
