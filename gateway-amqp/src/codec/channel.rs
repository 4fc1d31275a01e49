//! The arguments of the channel class (class 20, 0-9-1 §1.5). Close is
//! shared with the connection class (`connection.rs`); open, open-ok and
//! close-ok carry nothing but reserved fields.
//!
//! # Format
//!
//! ```text
//!  open (10)       shortstr reserved
//!  open-ok (11)    longstr reserved
//!  flow (20)       bit active
//!  flow-ok (21)    bit active
//!  close (40)      as connection.close
//!  close-ok (41)   nothing
//! ```

use super::arguments::arguments;

arguments! {
    /// channel.flow (stop or restart sending content) and channel.flow-ok (the
    /// state now in force).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Flow {
        /// `true` to (have the peer) send content, `false` to pause it.
        pub active: bool = bit("active"),
    }
}
