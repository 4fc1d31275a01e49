//! The protocol header and frames (0-9-1 §4.2.2, §4.2.3, §4.2.6, §4.2.7):
//! the outer layer of the wire format.
//!
//! # Format
//!
//! A client opens with the protocol header, 8 bytes:
//!
//! ```text
//!  'A' 'M' 'Q' 'P'  0  0  9  1
//! ```
//!
//! A server that speaks another version answers with its own header and
//! closes. Then frames, both ways:
//!
//! ```text
//!  0       1         3          7               7+size
//!  [ type ][ channel ][   size   ][ payload ... ][ 0xCE ]
//!   octet   short      long        size bytes     frame-end
//!
//!  type 1 method     payload: class-id, method-id, arguments (method.rs)
//!       2 header     payload: content header (content.rs)
//!       3 body       payload: a slice of the content body
//!       8 heartbeat  channel 0, no payload
//! ```
//!
//! A negotiated `frame-max` bounds the whole frame, the 8 bytes around the
//! payload included (RabbitMQ's reading); 0 means no limit. Before tuning,
//! peers keep frames within [`FRAME_MIN_SIZE`]. Content is a method frame,
//! one header frame and as many body frames as its size needs, none for an
//! empty body, all on the method's channel.
//!
//! # Invariants
//!
//! - [`check_frame`] looks at no more than the frame it measures and
//!   allocates nothing; [`decode_frame`] consumes exactly what it measured,
//!   and a body frame's payload is a slice of the input (no copy).
//! - A frame over `frame_max`, of an unknown type, without its frame-end, or
//!   a heartbeat on a channel other than 0 or with a payload, is refused as
//!   soon as its 7 header bytes (or its last byte) are in, before parsing.
//! - Which channel a method or content may use (connection methods on 0,
//!   the rest not) is the connection's business, not the codec's.

use bytes::{BufMut, Bytes, BytesMut};

use super::content::{self, BasicProperties, ContentHeader};
use super::data_types::Writer;
use super::method::Method;
use super::{DecodeError, EncodeError};

/// What a 0-9-1 client sends first, and what a server answers a client
/// asking for another version with before closing.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xce;

/// The largest frame every peer accepts before `frame-max` is negotiated, and
/// the least `frame-max` a peer may ask for.
pub const FRAME_MIN_SIZE: u32 = 4096;

/// The bytes of a frame around its payload: type, channel, size, frame-end.
pub const FRAME_OVERHEAD: u32 = 8;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const HEADER_LEN: usize = 7;

/// What the first bytes of a connection say about the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolHeader {
    /// `AMQP 0 0 9 1`: consume 8 bytes and expect frames.
    Valid,
    /// A prefix of it: wait for more bytes.
    Incomplete,
    /// Something else (another AMQP version, HTTP, TLS, ...): answer with
    /// [`PROTOCOL_HEADER`] and close.
    Unsupported,
}

/// Checks the protocol header at the start of `buf`, deciding as early as
/// the first byte that differs.
pub fn check_protocol_header(buf: &[u8]) -> ProtocolHeader {
    let n = buf.len().min(PROTOCOL_HEADER.len());
    if buf.get(..n) != PROTOCOL_HEADER.get(..n) {
        ProtocolHeader::Unsupported
    } else if n < PROTOCOL_HEADER.len() {
        ProtocolHeader::Incomplete
    } else {
        ProtocolHeader::Valid
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// 0 for the connection and heartbeats, 1 to channel-max for channels.
    pub channel: u16,
    /// What the frame carries.
    pub payload: FramePayload,
}

/// What a frame carries, by frame type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramePayload {
    /// Type 1: a method.
    Method(Method),
    /// Type 2: the header of the content the last method announced.
    Header(ContentHeader),
    /// Type 3: the next slice of that content's body.
    Body(Bytes),
    /// Type 8: keeps an idle connection alive; channel 0.
    Heartbeat,
}

/// Reads type, channel and payload size from a frame's first 7 bytes.
fn frame_header(buf: &[u8]) -> Option<(u8, u16, u32)> {
    match *buf {
        [kind, c0, c1, s0, s1, s2, s3, ..] => Some((
            kind,
            u16::from_be_bytes([c0, c1]),
            u32::from_be_bytes([s0, s1, s2, s3]),
        )),
        _ => None,
    }
}

/// Phase 1: is there one whole, well-framed frame at the start of `buf`?
/// Returns its total length (header, payload and frame-end) without
/// allocating. `frame_max` is the negotiated maximum frame size, 0 for none.
///
/// # Errors
///
/// [`DecodeError::Incomplete`] with the least number of bytes still missing;
/// [`DecodeError::UnknownFrameType`], [`DecodeError::HeartbeatChannel`],
/// [`DecodeError::Malformed`] (a heartbeat with a payload) and
/// [`DecodeError::FrameTooLarge`] as soon as the 7 header bytes are in;
/// [`DecodeError::BadFrameEnd`] once the whole frame is.
pub fn check_frame(buf: &[u8], frame_max: u32) -> Result<usize, DecodeError> {
    let Some((kind, channel, size)) = frame_header(buf) else {
        return Err(DecodeError::Incomplete(
            HEADER_LEN + 1 - buf.len().min(HEADER_LEN),
        ));
    };
    match kind {
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY => {}
        FRAME_HEARTBEAT if channel != 0 => return Err(DecodeError::HeartbeatChannel(channel)),
        FRAME_HEARTBEAT if size != 0 => {
            return Err(DecodeError::Malformed(format!(
                "heartbeat frame with a {size}-byte payload"
            )));
        }
        FRAME_HEARTBEAT => {}
        other => return Err(DecodeError::UnknownFrameType(other)),
    }
    let total = u64::from(size) + u64::from(FRAME_OVERHEAD);
    if frame_max != 0 && total > u64::from(frame_max) {
        return Err(DecodeError::FrameTooLarge {
            size: total,
            max: frame_max,
        });
    }
    let Ok(total) = usize::try_from(total) else {
        return Err(DecodeError::FrameTooLarge {
            size: total,
            max: frame_max,
        });
    };
    if buf.len() < total {
        return Err(DecodeError::Incomplete(total - buf.len()));
    }
    match buf.get(total - 1) {
        Some(&FRAME_END) => Ok(total),
        Some(&other) => Err(DecodeError::BadFrameEnd(other)),
        None => Err(DecodeError::Incomplete(1)),
    }
}

/// Phase 2: decodes one frame from the front of `buf` and advances past it;
/// `Ok(None)` when more bytes are needed (nothing is consumed then).
/// `frame_max` is the negotiated maximum frame size, 0 for none: pass
/// [`FRAME_MIN_SIZE`] until connection.tune-ok. Never panics on any input.
///
/// # Errors
///
/// Any [`DecodeError`] but `Incomplete`. After a framing error (those of
/// [`check_frame`]) nothing is consumed; after an error in a method or
/// content header payload the frame has been consumed. Either way the
/// connection is done: close it with [`DecodeError::reply_code`].
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, DecodeError> {
    let total = match check_frame(buf, frame_max) {
        Ok(total) => total,
        Err(DecodeError::Incomplete(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some((kind, channel, _)) = frame_header(buf) else {
        return Ok(None); // check_frame saw the header: not reached
    };
    let mut payload = buf.split_to(total).freeze();
    payload.truncate(total - 1);
    let payload = payload.split_off(HEADER_LEN);
    let payload = match kind {
        FRAME_METHOD => FramePayload::Method(Method::read(payload)?),
        FRAME_HEADER => FramePayload::Header(ContentHeader::read(payload)?),
        FRAME_BODY => FramePayload::Body(payload),
        _ => FramePayload::Heartbeat, // check_frame refused every other type
    };
    Ok(Some(Frame { channel, payload }))
}

/// Encodes one frame onto the end of `out`.
///
/// Not checked against a `frame_max`: the caller's methods are small, and
/// [`encode_content`] splits bodies.
///
/// # Errors
///
/// [`EncodeError::Invalid`] when a field cannot be expressed (a shortstr
/// over 255 bytes, tables nested too deep, a heartbeat on a channel other
/// than 0, a content header for a class other than basic, a payload over
/// 4 GiB). On error `out` is left as it was.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) -> Result<(), EncodeError> {
    let (kind, channel) = (frame_type(&frame.payload), frame.channel);
    if kind == FRAME_HEARTBEAT && channel != 0 {
        return Err(EncodeError::Invalid(format!(
            "heartbeat on channel {channel}"
        )));
    }
    put_frame(out, kind, channel, |w| match &frame.payload {
        FramePayload::Method(m) => m.write(w),
        FramePayload::Header(h) => h.write(w),
        FramePayload::Body(b) => {
            w.raw(b);
            Ok(())
        }
        FramePayload::Heartbeat => Ok(()),
    })
}

fn frame_type(payload: &FramePayload) -> u8 {
    match payload {
        FramePayload::Method(_) => FRAME_METHOD,
        FramePayload::Header(_) => FRAME_HEADER,
        FramePayload::Body(_) => FRAME_BODY,
        FramePayload::Heartbeat => FRAME_HEARTBEAT,
    }
}

/// Writes one frame whose payload `body` writes; leaves `out` as it was on
/// error.
fn put_frame(
    out: &mut BytesMut,
    kind: u8,
    channel: u16,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_u8(kind);
    out.put_u16(channel);
    let written = Writer::new(out).sized("frame payload", body);
    match written {
        Ok(()) => {
            out.put_u8(FRAME_END);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Encodes the content that follows a basic.publish, basic.return,
/// basic.deliver or basic.get-ok: one header frame, then the body in as
/// many body frames as `frame_max` (0 for no limit) requires, none for an
/// empty body. The method frame itself is the caller's to encode first.
///
/// # Errors
///
/// [`EncodeError::FrameTooLarge`] when the header frame exceeds `frame_max`
/// (so `frame_max` always leaves room for body bytes);
/// [`EncodeError::Invalid`] as for [`encode_frame`]. On error `out` is left
/// as it was.
pub fn encode_content(
    channel: u16,
    class_id: u16,
    properties: &BasicProperties,
    body: &[u8],
    frame_max: u32,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = out.len();
    let body_size = u64::try_from(body.len()).unwrap_or(u64::MAX);
    put_frame(out, FRAME_HEADER, channel, |w| {
        content::write_header(class_id, body_size, properties, w)
    })?;
    let header_size = out.len() - start;
    let max = usize::try_from(frame_max).unwrap_or(usize::MAX);
    if frame_max != 0 && header_size > max {
        out.truncate(start);
        return Err(EncodeError::FrameTooLarge {
            size: u64::try_from(header_size).unwrap_or(u64::MAX),
            max: frame_max,
        });
    }
    if body.is_empty() {
        return Ok(());
    }
    let overhead = FRAME_OVERHEAD as usize;
    // The header fitted, so frame_max is over 8 and every chunk holds bytes.
    let chunk = match frame_max {
        0 => u32::MAX as usize,
        _ => max.saturating_sub(overhead).max(1),
    };
    out.reserve(body.len() + body.len().div_ceil(chunk) * overhead);
    for slice in body.chunks(chunk) {
        let written = put_frame(out, FRAME_BODY, channel, |w| {
            w.raw(slice);
            Ok(())
        });
        if let Err(e) = written {
            out.truncate(start);
            return Err(e);
        }
    }
    Ok(())
}
