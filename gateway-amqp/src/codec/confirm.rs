//! The arguments of the confirm class (class 85, RabbitMQ's publisher
//! confirms). The tx class (90) has no arguments at all.
//!
//! # Format
//!
//! ```text
//!  select (10)     bit nowait
//!  select-ok (11)  nothing
//! ```

use super::arguments::arguments;

arguments! {
    /// confirm.select: from now on the server acks (or nacks) every publish on
    /// this channel.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ConfirmSelect {
        /// No confirm.select-ok wanted.
        pub no_wait: bool = bit("nowait"),
    }
}
