//! MQTT data representation (3.1.1 §1.5, 5.0 §1.5): the field types every
//! packet is built from, read from a whole packet's body and written out.
//!
//! # Format
//!
//! ```text
//!  byte                  1 byte
//!  two-byte integer      big-endian u16
//!  four-byte integer     big-endian u32
//!  variable byte integer 1 to 4 bytes, 7 bits each, least significant first,
//!                        bit 7 set when another byte follows (max 268,435,455)
//!  binary data           two-byte length, then that many bytes
//!  UTF-8 string          two-byte length, then that many bytes of valid UTF-8
//!                        without U+0000
//!  string pair           two UTF-8 strings
//! ```
//!
//! # Invariants
//!
//! - [`Reader`] never reads past its packet: running short is
//!   [`DecodeError::Malformed`], never a panic and never `Incomplete` (the
//!   whole packet is there before parsing starts).
//! - The writers refuse (with [`EncodeError::Invalid`]) what the readers
//!   refuse: over-long strings and binary data, U+0000, packet identifier 0.

use bytes::{BufMut, Bytes, BytesMut};

use super::{DecodeError, EncodeError};

/// A cursor over the body of one whole packet. Running out of bytes here is
/// malformed, not incomplete: the packet is all there is.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<Bytes, DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Malformed(format!(
                "{what} runs past the end of the packet"
            )));
        }
        Ok(self.buf.split_to(n))
    }

    /// Takes every byte left.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        let b = self.take(1, what)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes(
            b.as_ref().try_into().unwrap_or_default(),
        ))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes(
            b.as_ref().try_into().unwrap_or_default(),
        ))
    }

    /// A variable byte integer; non-minimal encodings are accepted.
    pub(crate) fn vbi(&mut self, what: &str) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for shift in [0u32, 7, 14, 21] {
            let byte = self.u8(what)?;
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed(format!(
            "{what}: variable byte integer longer than 4 bytes"
        )))
    }

    /// A two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self, what: &str) -> Result<Bytes, DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// A UTF-8 string: valid UTF-8 and no U+0000 (3.1.1 §1.5.3, 5.0 §1.5.4).
    pub(crate) fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let bytes = self.binary(what)?;
        let s = std::str::from_utf8(&bytes)
            .map_err(|_| DecodeError::Malformed(format!("{what} is not valid UTF-8")))?;
        if s.contains('\0') {
            return Err(DecodeError::Malformed(format!("{what} contains U+0000")));
        }
        Ok(s.to_owned())
    }

    /// A non-zero packet identifier (3.1.1 §2.3.1, 5.0 §2.2.1).
    pub(crate) fn packet_id(&mut self, what: &str) -> Result<u16, DecodeError> {
        match self.u16(what)? {
            0 => Err(DecodeError::Protocol(format!(
                "{what}: packet identifier 0"
            ))),
            id => Ok(id),
        }
    }

    /// Succeeds only when every byte was consumed.
    pub(crate) fn finish(self, what: &str) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::Malformed(format!(
                "{n} unexpected trailing bytes in {what}"
            ))),
        }
    }
}

/// Bytes a variable byte integer takes for `value`.
pub(crate) fn vbi_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a variable byte integer; `value` must be at most
/// [`MAX_VARIABLE_BYTE_INTEGER`] (callers check).
pub(crate) fn put_vbi(out: &mut BytesMut, mut value: u32) {
    loop {
        let low = (value & 0x7f) as u8; // masked to 7 bits: no truncation
        value >>= 7;
        if value == 0 {
            out.put_u8(low);
            return;
        }
        out.put_u8(low | 0x80);
    }
}

/// Writes binary data with its two-byte length.
pub(crate) fn put_binary(out: &mut BytesMut, data: &[u8], what: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len())
        .map_err(|_| EncodeError::Invalid(format!("{what} is longer than 65535 bytes")))?;
    out.put_u16(len);
    out.put_slice(data);
    Ok(())
}

/// Writes a UTF-8 string with its two-byte length, refusing U+0000.
pub(crate) fn put_string(out: &mut BytesMut, s: &str, what: &str) -> Result<(), EncodeError> {
    if s.contains('\0') {
        return Err(EncodeError::Invalid(format!("{what} contains U+0000")));
    }
    put_binary(out, s.as_bytes(), what)
}

/// Writes a packet identifier, refusing 0.
pub(crate) fn put_packet_id(out: &mut BytesMut, id: u16, what: &str) -> Result<(), EncodeError> {
    if id == 0 {
        return Err(EncodeError::Invalid(format!(
            "{what} with packet identifier 0"
        )));
    }
    out.put_u16(id);
    Ok(())
}
