//! The connection class (10) after the handshake: on channel 0 only.

use crate::codec::{Method, reply};
use crate::refusal::{Answer, Refusal};

use super::super::{Conn, Step};

impl Conn {
    /// A method on channel 0: close, close-ok and update-secret; any other
    /// is 503 COMMAND_INVALID.
    pub(super) fn connection_method(&mut self, m: Method) -> Answer<Step> {
        Ok(match m {
            Method::ConnectionClose(_) => {
                self.send(0, Method::ConnectionCloseOk);
                Step::Closed
            }
            Method::ConnectionCloseOk => Step::Closed,
            Method::ConnectionUpdateSecret(_) => {
                self.send(0, Method::ConnectionUpdateSecretOk);
                Step::Go
            }
            other => {
                return Err(Refusal::new(
                    reply::COMMAND_INVALID,
                    format!("COMMAND_INVALID - {} on channel 0", other.name()),
                ));
            }
        })
    }
}
