//! A method's arguments (0-9-1 §4.2.5): the fields after the class and
//! method ids, in the order the specification lists them.
//!
//! # Format
//!
//! Each field is one of the domains of `data_types.rs` (octet, short, long,
//! longlong, bit, shortstr, longstr, table); consecutive bits share octets.
//! The methods' own layouts are drawn in their class's file.
//!
//! # Invariants
//!
//! - A struct declared with [`arguments!`] reads and writes exactly the
//!   fields it lists, in the order it lists them, so decode and encode
//!   cannot drift apart.
//! - Each field's specification name (e.g. `routing-key`) is what decode
//!   and encode errors cite.

use super::data_types::{Reader, Writer};
use super::{DecodeError, EncodeError};

/// The arguments of one method, as read from and written to its payload.
pub(crate) trait Arguments: Sized {
    fn read(r: &mut Reader) -> Result<Self, DecodeError>;
    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError>;
}

/// Declares a method's arguments struct and its [`Arguments`] impl from one
/// field list. Each field names the domain it is read and written as and
/// its specification name:
///
/// ```text
/// arguments! {
///     /// queue.purge: drop every ready message.
///     #[derive(Debug, Clone, PartialEq, Eq)]
///     pub struct QueuePurge {
///         reserved short,
///         /// The queue; empty means the channel's last declared queue.
///         pub queue: String = shortstr("queue"),
///         /// No purge-ok wanted.
///         pub no_wait: bool = bit("nowait"),
///     }
/// }
/// ```
///
/// `reserved short` first stands for the reserved short (`ticket` in
/// 0-8) many methods start with: read past as `reserved-1`, written as 0;
/// no field carries it.
macro_rules! arguments {
    (@write $w:ident, bit, $v:expr, $name:literal) => { $w.bit($v) };
    (@write $w:ident, octet, $v:expr, $name:literal) => { $w.octet($v) };
    (@write $w:ident, short, $v:expr, $name:literal) => { $w.short($v) };
    (@write $w:ident, long, $v:expr, $name:literal) => { $w.long($v) };
    (@write $w:ident, longlong, $v:expr, $name:literal) => { $w.longlong($v) };
    // shortstr, longstr and table: sized, so they can fail.
    (@write $w:ident, $domain:ident, $v:expr, $name:literal) => { $w.$domain(&$v, $name)? };
    (
        $(#[$meta:meta])*
        pub struct $type:ident {
            $(reserved $reserved:ident,)?
            $(
                $(#[$doc:meta])*
                pub $field:ident: $ty:ty = $domain:ident($name:literal),
            )*
        }
    ) => {
        $(#[$meta])*
        pub struct $type {
            $( $(#[$doc])* pub $field: $ty, )*
        }

        impl $crate::codec::arguments::Arguments for $type {
            fn read(
                r: &mut $crate::codec::data_types::Reader,
            ) -> Result<Self, $crate::codec::DecodeError> {
                $( r.$reserved("reserved-1")?; )?
                Ok(Self {
                    $( $field: r.$domain($name)?, )*
                })
            }

            fn write(
                &self,
                w: &mut $crate::codec::data_types::Writer<'_>,
            ) -> Result<(), $crate::codec::EncodeError> {
                $( w.$reserved(0); )?
                $( arguments!(@write w, $domain, self.$field, $name); )*
                Ok(())
            }
        }
    };
}

pub(super) use arguments;
