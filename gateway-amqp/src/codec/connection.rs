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

use super::data_types::{Reader, Writer};
use super::field_table::FieldTable;
use super::method::Arguments;
use super::{DecodeError, EncodeError};

/// connection.start: the server's first method, offering versions,
/// authentication mechanisms and locales.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStart {
    /// 0 for 0-9-1.
    pub version_major: u8,
    /// 9 for 0-9-1.
    pub version_minor: u8,
    /// What the server is (`product`, `version`, `platform`) and which
    /// extensions it supports (`capabilities`, a nested table).
    pub server_properties: FieldTable,
    /// Space-separated SASL mechanism names, e.g. `PLAIN AMQPLAIN`.
    pub mechanisms: Bytes,
    /// Space-separated locales, e.g. `en_US`.
    pub locales: Bytes,
}

impl Arguments for ConnectionStart {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            version_major: r.octet("version-major")?,
            version_minor: r.octet("version-minor")?,
            server_properties: r.table("server-properties")?,
            mechanisms: r.longstr("mechanisms")?,
            locales: r.longstr("locales")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.octet(self.version_major);
        w.octet(self.version_minor);
        w.table(&self.server_properties, "server-properties")?;
        w.longstr(&self.mechanisms, "mechanisms")?;
        w.longstr(&self.locales, "locales")
    }
}

/// connection.start-ok: the client picks a mechanism and answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStartOk {
    /// What the client is, and its `capabilities` (which server extensions
    /// it understands, e.g. `consumer_cancel_notify`).
    pub client_properties: FieldTable,
    /// One of the offered mechanisms, e.g. `PLAIN`.
    pub mechanism: String,
    /// The mechanism's response: for PLAIN `\0user\0password` (see
    /// [`parse_plain`](super::parse_plain)).
    pub response: Bytes,
    /// One of the offered locales.
    pub locale: String,
}

impl Arguments for ConnectionStartOk {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            client_properties: r.table("client-properties")?,
            mechanism: r.shortstr("mechanism")?,
            response: r.longstr("response")?,
            locale: r.shortstr("locale")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.table(&self.client_properties, "client-properties")?;
        w.shortstr(&self.mechanism, "mechanism")?;
        w.longstr(&self.response, "response")?;
        w.shortstr(&self.locale, "locale")
    }
}

/// connection.secure: a further SASL challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSecure {
    /// Mechanism-specific challenge data.
    pub challenge: Bytes,
}

impl Arguments for ConnectionSecure {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            challenge: r.longstr("challenge")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.longstr(&self.challenge, "challenge")
    }
}

/// connection.secure-ok: the answer to a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSecureOk {
    /// Mechanism-specific response data.
    pub response: Bytes,
}

impl Arguments for ConnectionSecureOk {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            response: r.longstr("response")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.longstr(&self.response, "response")
    }
}

/// connection.tune (the server's limits) and connection.tune-ok (what the
/// client settles on, each at most the server's unless that was 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tune {
    /// Highest channel number; 0 for no limit but the protocol's 65535.
    pub channel_max: u16,
    /// Largest frame in bytes, header and frame-end included (the
    /// `frame_max` of [`decode_frame`](super::decode_frame)); 0 for no limit.
    pub frame_max: u32,
    /// Heartbeat interval in seconds; 0 for none.
    pub heartbeat: u16,
}

impl Arguments for Tune {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            channel_max: r.short("channel-max")?,
            frame_max: r.long("frame-max")?,
            heartbeat: r.short("heartbeat")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(self.channel_max);
        w.long(self.frame_max);
        w.short(self.heartbeat);
        Ok(())
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

/// connection.close and channel.close: why the sender closes, and which
/// method caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// A [`reply`](super::reply) code.
    pub reply_code: u16,
    /// Human-readable detail, e.g. `NOT_FOUND - no queue 'q'`.
    pub reply_text: String,
    /// Class of the method that caused the close; 0 if none.
    pub class_id: u16,
    /// Id of the method that caused the close; 0 if none.
    pub method_id: u16,
}

impl Arguments for Close {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            reply_code: r.short("reply-code")?,
            reply_text: r.shortstr("reply-text")?,
            class_id: r.short("class-id")?,
            method_id: r.short("method-id")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(self.reply_code);
        w.shortstr(&self.reply_text, "reply-text")?;
        w.short(self.class_id);
        w.short(self.method_id);
        Ok(())
    }
}

/// connection.blocked: the server stops reading publishes (a resource alarm);
/// sent to clients whose `capabilities` include `connection.blocked`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionBlocked {
    /// Why, e.g. `low on memory`.
    pub reason: String,
}

impl Arguments for ConnectionBlocked {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            reason: r.shortstr("reason")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.shortstr(&self.reason, "reason")
    }
}

/// connection.update-secret: the client replaces its credential (an
/// expiring token) without reconnecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionUpdateSecret {
    /// The new secret, in the connection's mechanism's terms.
    pub new_secret: Bytes,
    /// Why, for logs.
    pub reason: String,
}

impl Arguments for ConnectionUpdateSecret {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            new_secret: r.longstr("new-secret")?,
            reason: r.shortstr("reason")?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.longstr(&self.new_secret, "new-secret")?;
        w.shortstr(&self.reason, "reason")
    }
}
