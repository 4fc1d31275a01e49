//! Content headers (0-9-1 §4.2.6.1): the payload of a header frame, which
//! follows a method with content (basic.publish, return, deliver, get-ok) and
//! precedes its body frames.
//!
//! # Format
//!
//! ```text
//!  short     class-id (60, basic: the only class with content)
//!  short     weight (reserved, 0; ignored when read)
//!  longlong  body-size: the sum of the body frames' payloads to follow
//!  short...  property flags: bit 15 is the first property, bit 0 says
//!            another flags word follows
//!  then each property whose flag is set, in flag order:
//!
//!   bit 15  content-type      shortstr   bit 8  expiration  shortstr
//!   bit 14  content-encoding  shortstr   bit 7  message-id  shortstr
//!   bit 13  headers           table      bit 6  timestamp   longlong
//!   bit 12  delivery-mode     octet      bit 5  type        shortstr
//!   bit 11  priority          octet      bit 4  user-id     shortstr
//!   bit 10  correlation-id    shortstr   bit 3  app-id      shortstr
//!   bit 9   reply-to          shortstr   bit 2  cluster-id  shortstr
//! ```
//!
//! # Invariants
//!
//! - Only class 60 decodes ([`DecodeError::UnexpectedContentClass`]
//!   otherwise) and only class 60 encodes.
//! - Flag bit 1 and any flag in a continuation word would announce a
//!   property basic does not have, whose bytes could not be skipped:
//!   [`DecodeError::Syntax`]. Continuation words that are all zero (but for
//!   their own continuation bit) are accepted and not written back.
//! - The properties must fill the payload exactly.

use bytes::Bytes;

use super::class;
use super::data_types::{Reader, Writer};
use super::field_table::FieldTable;
use super::{DecodeError, EncodeError};

/// The payload of a header frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentHeader {
    /// The class of the method the content belongs to: always
    /// [`class::BASIC`].
    pub class_id: u16,
    /// Total size of the body frames that follow; 0 means none follow.
    pub body_size: u64,
    /// The message's properties.
    pub properties: BasicProperties,
}

/// The properties of a basic message; `None` is an absent property (its
/// flag bit clear).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasicProperties {
    /// MIME type of the body, e.g. `application/json`.
    pub content_type: Option<String>,
    /// MIME encoding of the body, e.g. `gzip`.
    pub content_encoding: Option<String>,
    /// Application headers; a headers exchange routes on them.
    pub headers: Option<FieldTable>,
    /// 1 transient, 2 persistent.
    pub delivery_mode: Option<u8>,
    /// 0 to 9 (a priority queue's `x-max-priority` caps it).
    pub priority: Option<u8>,
    /// Ties a reply to its request.
    pub correlation_id: Option<String>,
    /// The queue a reply should go to.
    pub reply_to: Option<String>,
    /// Per-message TTL in milliseconds, as decimal text (RabbitMQ's meaning).
    pub expiration: Option<String>,
    /// Application message id.
    pub message_id: Option<String>,
    /// Seconds since the epoch.
    pub timestamp: Option<u64>,
    /// Application message type name (the `type` property).
    pub message_type: Option<String>,
    /// The publishing user; RabbitMQ checks it against the connection's.
    pub user_id: Option<String>,
    /// The publishing application.
    pub app_id: Option<String>,
    /// Reserved in 0-9-1, still carried.
    pub cluster_id: Option<String>,
}

/// Bit of each property in the first flags word.
mod flag {
    pub(super) const CONTENT_TYPE: u16 = 1 << 15;
    pub(super) const CONTENT_ENCODING: u16 = 1 << 14;
    pub(super) const HEADERS: u16 = 1 << 13;
    pub(super) const DELIVERY_MODE: u16 = 1 << 12;
    pub(super) const PRIORITY: u16 = 1 << 11;
    pub(super) const CORRELATION_ID: u16 = 1 << 10;
    pub(super) const REPLY_TO: u16 = 1 << 9;
    pub(super) const EXPIRATION: u16 = 1 << 8;
    pub(super) const MESSAGE_ID: u16 = 1 << 7;
    pub(super) const TIMESTAMP: u16 = 1 << 6;
    pub(super) const TYPE: u16 = 1 << 5;
    pub(super) const USER_ID: u16 = 1 << 4;
    pub(super) const APP_ID: u16 = 1 << 3;
    pub(super) const CLUSTER_ID: u16 = 1 << 2;
    /// No basic property has this bit.
    pub(super) const UNUSED: u16 = 1 << 1;
    pub(super) const CONTINUATION: u16 = 1;
}

impl ContentHeader {
    /// Reads a whole header frame payload.
    pub(crate) fn read(payload: Bytes) -> Result<Self, DecodeError> {
        Self::read_fields(payload).map_err(|e| e.in_context("content header"))
    }

    fn read_fields(payload: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let class_id = r.short("class-id")?;
        if class_id != class::BASIC {
            return Err(DecodeError::UnexpectedContentClass { class_id });
        }
        r.short("weight")?;
        let body_size = r.longlong("body-size")?;
        let flags = r.short("property flags")?;
        if flags & flag::UNUSED != 0 {
            return Err(DecodeError::Syntax("property flag bit 1 is set".into()));
        }
        let mut more = flags & flag::CONTINUATION != 0;
        while more {
            let word = r.short("property flags")?;
            if word & !flag::CONTINUATION != 0 {
                return Err(DecodeError::Syntax(format!(
                    "property flags {word:#06x} beyond basic's 14 properties"
                )));
            }
            more = word & flag::CONTINUATION != 0;
        }
        let properties = BasicProperties::read(flags, &mut r)?;
        r.finish("properties")?;
        Ok(Self {
            class_id,
            body_size,
            properties,
        })
    }

    /// Writes a whole header frame payload.
    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        write_header(self.class_id, self.body_size, &self.properties, w)
    }
}

/// Writes a header frame payload from its parts (so content can be encoded
/// without building a [`ContentHeader`]).
pub(crate) fn write_header(
    class_id: u16,
    body_size: u64,
    properties: &BasicProperties,
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    if class_id != class::BASIC {
        return Err(EncodeError::Invalid(format!(
            "content header for class {class_id}: only basic (60) has content"
        )));
    }
    w.short(class_id);
    w.short(0);
    w.longlong(body_size);
    properties.write(w)
}

impl BasicProperties {
    fn read(flags: u16, r: &mut Reader) -> Result<Self, DecodeError> {
        let has = |bit: u16| flags & bit != 0;
        let mut p = Self::default();
        if has(flag::CONTENT_TYPE) {
            p.content_type = Some(r.shortstr("content-type")?);
        }
        if has(flag::CONTENT_ENCODING) {
            p.content_encoding = Some(r.shortstr("content-encoding")?);
        }
        if has(flag::HEADERS) {
            p.headers = Some(r.table("headers")?);
        }
        if has(flag::DELIVERY_MODE) {
            p.delivery_mode = Some(r.octet("delivery-mode")?);
        }
        if has(flag::PRIORITY) {
            p.priority = Some(r.octet("priority")?);
        }
        if has(flag::CORRELATION_ID) {
            p.correlation_id = Some(r.shortstr("correlation-id")?);
        }
        if has(flag::REPLY_TO) {
            p.reply_to = Some(r.shortstr("reply-to")?);
        }
        if has(flag::EXPIRATION) {
            p.expiration = Some(r.shortstr("expiration")?);
        }
        if has(flag::MESSAGE_ID) {
            p.message_id = Some(r.shortstr("message-id")?);
        }
        if has(flag::TIMESTAMP) {
            p.timestamp = Some(r.longlong("timestamp")?);
        }
        if has(flag::TYPE) {
            p.message_type = Some(r.shortstr("type")?);
        }
        if has(flag::USER_ID) {
            p.user_id = Some(r.shortstr("user-id")?);
        }
        if has(flag::APP_ID) {
            p.app_id = Some(r.shortstr("app-id")?);
        }
        if has(flag::CLUSTER_ID) {
            p.cluster_id = Some(r.shortstr("cluster-id")?);
        }
        Ok(p)
    }

    /// The flags word for the properties present.
    fn flags(&self) -> u16 {
        [
            (self.content_type.is_some(), flag::CONTENT_TYPE),
            (self.content_encoding.is_some(), flag::CONTENT_ENCODING),
            (self.headers.is_some(), flag::HEADERS),
            (self.delivery_mode.is_some(), flag::DELIVERY_MODE),
            (self.priority.is_some(), flag::PRIORITY),
            (self.correlation_id.is_some(), flag::CORRELATION_ID),
            (self.reply_to.is_some(), flag::REPLY_TO),
            (self.expiration.is_some(), flag::EXPIRATION),
            (self.message_id.is_some(), flag::MESSAGE_ID),
            (self.timestamp.is_some(), flag::TIMESTAMP),
            (self.message_type.is_some(), flag::TYPE),
            (self.user_id.is_some(), flag::USER_ID),
            (self.app_id.is_some(), flag::APP_ID),
            (self.cluster_id.is_some(), flag::CLUSTER_ID),
        ]
        .into_iter()
        .filter(|(present, _)| *present)
        .fold(0, |flags, (_, bit)| flags | bit)
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(self.flags());
        let shortstr = |w: &mut Writer<'_>, v: &Option<String>, what| match v {
            Some(s) => w.shortstr(s, what),
            None => Ok(()),
        };
        shortstr(w, &self.content_type, "content-type")?;
        shortstr(w, &self.content_encoding, "content-encoding")?;
        if let Some(headers) = &self.headers {
            w.table(headers, "headers")?;
        }
        if let Some(mode) = self.delivery_mode {
            w.octet(mode);
        }
        if let Some(priority) = self.priority {
            w.octet(priority);
        }
        shortstr(w, &self.correlation_id, "correlation-id")?;
        shortstr(w, &self.reply_to, "reply-to")?;
        shortstr(w, &self.expiration, "expiration")?;
        shortstr(w, &self.message_id, "message-id")?;
        if let Some(timestamp) = self.timestamp {
            w.longlong(timestamp);
        }
        shortstr(w, &self.message_type, "type")?;
        shortstr(w, &self.user_id, "user-id")?;
        shortstr(w, &self.app_id, "app-id")?;
        shortstr(w, &self.cluster_id, "cluster-id")
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both_ways, cat, decode_all, decode_err, encode_all, encode_err};
    use super::super::{Frame, FramePayload, reply};
    use super::*;

    #[test]
    fn content_header_errors() {
        // A content header for class 50 (queue).
        let bytes = [
            2, 0, 1, 0, 0, 0, 14, 0, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xce,
        ];
        let err = decode_err(&bytes);
        assert_eq!(err, DecodeError::UnexpectedContentClass { class_id: 50 });
        assert_eq!(err.reply_code(), reply::UNEXPECTED_FRAME);
        let header = |flags: &[u8], rest: &[u8]| {
            let mut v = vec![2, 0, 1, 0, 0, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
            v.extend_from_slice(flags);
            v.extend_from_slice(rest);
            v[6] = u8::try_from(v.len() - 7).unwrap();
            v.push(0xce);
            v
        };
        // Flag bit 1: no such property.
        let err = decode_err(&header(&[0, 2], &[]));
        assert!(matches!(err, DecodeError::Syntax(_)), "{err:?}");
        // A continuation word announcing more properties.
        let err = decode_err(&header(&[0, 1, 0x80, 0], &[]));
        assert!(matches!(err, DecodeError::Syntax(_)), "{err:?}");
        // An empty continuation word is fine, and not written back.
        let frame = decode_all(&header(&[0, 1, 0, 0], &[]));
        assert_eq!(encode_all(&frame), header(&[0, 0], &[]));
        // A property past the end, bytes after the last property.
        let err = decode_err(&header(&[0x80, 0], &[4, b'a']));
        assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
        let err = decode_err(&header(&[0x08, 0], &[1, b'a', b'b']));
        assert!(
            matches!(&err, DecodeError::Malformed(m) if m.contains("content header")),
            "{err:?}"
        );
        // Too short for the fixed part.
        assert!(matches!(
            decode_err(&[2, 0, 1, 0, 0, 0, 2, 0, 60, 0xce]),
            DecodeError::Malformed(_)
        ));
        // A class other than basic does not encode either.
        let frame = Frame {
            channel: 1,
            payload: FramePayload::Header(ContentHeader {
                class_id: 50,
                body_size: 0,
                properties: BasicProperties::default(),
            }),
        };
        assert!(matches!(encode_err(&frame), EncodeError::Invalid(_)));
    }

    #[test]
    fn all_basic_properties() {
        let bytes = cat(&[
            &[2, 0, 1, 0, 0, 0, 53],
            &[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xff, 0xfc],
            b"\x01a\x01b\x00\x00\x00\x00\x02\x09\x01c\x01d\x0260\x01e",
            &[0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00],
            b"\x01f\x05guest\x01g\x01h",
            &[0xce],
        ]);
        let properties = BasicProperties {
            content_type: Some("a".into()),
            content_encoding: Some("b".into()),
            headers: Some(FieldTable::new()),
            delivery_mode: Some(2),
            priority: Some(9),
            correlation_id: Some("c".into()),
            reply_to: Some("d".into()),
            expiration: Some("60".into()),
            message_id: Some("e".into()),
            timestamp: Some(1_700_000_000),
            message_type: Some("f".into()),
            user_id: Some("guest".into()),
            app_id: Some("g".into()),
            cluster_id: Some("h".into()),
        };
        let frame = Frame {
            channel: 1,
            payload: FramePayload::Header(ContentHeader {
                class_id: class::BASIC,
                body_size: 0,
                properties,
            }),
        };
        both_ways(&bytes, &frame);
    }
}
