//! The arguments of the connection class (class 10, 0-9-1 §1.4 and
//! RabbitMQ's blocked/update-secret extensions), and of close, which
//! channel.close shares.
//!
//! # Format
//!
//! ```text
//!  start (10)          octet version-major, octet version-minor,
//!                      table server-properties, longstr mechanisms,
//!                      longstr locales
//!  start-ok (11)       table client-properties, shortstr mechanism,
//!                      longstr response, shortstr locale
//!  secure (20)         longstr challenge
//!  secure-ok (21)      longstr response
//!  tune (30), tune-ok (31)
//!                      short channel-max, long frame-max, short heartbeat
//!  open (40)           shortstr virtual-host, shortstr reserved, bit reserved
//!  open-ok (41)        shortstr reserved
//!  close (50)          short reply-code, shortstr reply-text,
//!                      short class-id, short method-id
//!  close-ok (51)       nothing
//!  blocked (60)        shortstr reason
//!  unblocked (61)      nothing
//!  update-secret (70)  longstr new-secret, shortstr reason
//!  update-secret-ok (71) nothing
//! ```
//!
//! # Invariants
//!
//! Reserved fields are read past and written as zero or empty; they are not
//! part of the types.

use bytes::Bytes;

use super::arguments::{Arguments, arguments};
use super::data_types::{Reader, Writer};
use super::field_table::FieldTable;
use super::{DecodeError, EncodeError};

arguments! {
    /// connection.start: the server's first method, offering versions,
    /// authentication mechanisms and locales.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ConnectionStart {
        /// 0 for 0-9-1.
        pub version_major: u8 = octet("version-major"),
        /// 9 for 0-9-1.
        pub version_minor: u8 = octet("version-minor"),
        /// What the server is (`product`, `version`, `platform`) and which
        /// extensions it supports (`capabilities`, a nested table).
        pub server_properties: FieldTable = table("server-properties"),
        /// Space-separated SASL mechanism names, e.g. `PLAIN AMQPLAIN`.
        pub mechanisms: Bytes = longstr("mechanisms"),
        /// Space-separated locales, e.g. `en_US`.
        pub locales: Bytes = longstr("locales"),
    }
}

arguments! {
    /// connection.start-ok: the client picks a mechanism and answers it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ConnectionStartOk {
        /// What the client is, and its `capabilities` (which server extensions
        /// it understands, e.g. `consumer_cancel_notify`).
        pub client_properties: FieldTable = table("client-properties"),
        /// One of the offered mechanisms, e.g. `PLAIN`.
        pub mechanism: String = shortstr("mechanism"),
        /// The mechanism's response: for PLAIN `\0user\0password` (see
        /// [`parse_plain`](super::parse_plain)).
        pub response: Bytes = longstr("response"),
        /// One of the offered locales.
        pub locale: String = shortstr("locale"),
    }
}

arguments! {
    /// connection.secure: a further SASL challenge.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ConnectionSecure {
        /// Mechanism-specific challenge data.
        pub challenge: Bytes = longstr("challenge"),
    }
}

arguments! {
    /// connection.secure-ok: the answer to a challenge.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ConnectionSecureOk {
        /// Mechanism-specific response data.
        pub response: Bytes = longstr("response"),
    }
}

arguments! {
    /// connection.tune (the server's limits) and connection.tune-ok (what the
    /// client settles on, each at most the server's unless that was 0).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Tune {
        /// Highest channel number; 0 for no limit but the protocol's 65535.
        pub channel_max: u16 = short("channel-max"),
        /// Largest frame in bytes, header and frame-end included (the
        /// `frame_max` of [`decode_frame`](super::decode_frame)); 0 for no limit.
        pub frame_max: u32 = long("frame-max"),
        /// Heartbeat interval in seconds; 0 for none.
        pub heartbeat: u16 = short("heartbeat"),
    }
}

/// connection.open: the client names the virtual host to work in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionOpen {
    /// The virtual host, e.g. `/`.
    pub virtual_host: String,
}

impl Arguments for ConnectionOpen {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let virtual_host = r.shortstr("virtual-host")?;
        r.skip_shortstr("reserved-1 (capabilities)")?;
        r.bit("reserved-2 (insist)")?;
        Ok(Self { virtual_host })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.shortstr(&self.virtual_host, "virtual-host")?;
        w.shortstr("", "reserved-1")?;
        w.bit(false);
        Ok(())
    }
}

arguments! {
    /// connection.close and channel.close: why the sender closes, and which
    /// method caused it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Close {
        /// A [`reply`](super::reply) code.
        pub reply_code: u16 = short("reply-code"),
        /// Human-readable detail, e.g. `NOT_FOUND - no queue 'q'`.
        pub reply_text: String = shortstr("reply-text"),
        /// Class of the method that caused the close; 0 if none.
        pub class_id: u16 = short("class-id"),
        /// Id of the method that caused the close; 0 if none.
        pub method_id: u16 = short("method-id"),
    }
}

arguments! {
    /// connection.blocked: the server stops reading publishes (a resource alarm);
    /// sent to clients whose `capabilities` include `connection.blocked`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ConnectionBlocked {
        /// Why, e.g. `low on memory`.
        pub reason: String = shortstr("reason"),
    }
}

arguments! {
    /// connection.update-secret: the client replaces its credential (an
    /// expiring token) without reconnecting.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ConnectionUpdateSecret {
        /// The new secret, in the connection's mechanism's terms.
        pub new_secret: Bytes = longstr("new-secret"),
        /// Why, for logs.
        pub reason: String = shortstr("reason"),
    }
}
