//! AMQP data fields (0-9-1 §4.2.5): the types every method argument and
//! content property is built from, read from a whole frame's payload and
//! written out.
//!
//! # Format
//!
//! ```text
//!  octet      1 byte
//!  short      big-endian u16                                (§4.2.5.1)
//!  long       big-endian u32
//!  longlong   big-endian u64; also a timestamp (seconds)    (§4.2.5.4)
//!  bit        packed: consecutive bit arguments share octets, the first
//!             in the low bit; any other field ends the octet (§4.2.5.2)
//!  shortstr   octet length, then that many bytes            (§4.2.5.3)
//!  longstr    long length, then that many bytes
//!  table      long length, then that many bytes of entries  (§4.2.5.5,
//!             drawn in `field_table.rs`)
//! ```
//!
//! A shortstr is octets on the wire. Every shortstr a client sends in
//! practice (names, tags, keys, property values) is UTF-8, so it is decoded as
//! a `String` and invalid UTF-8 is [`DecodeError::Syntax`] (502 SYNTAX_ERROR:
//! an illegal value in a well-formed frame). Longstrs stay bytes.
//!
//! # Invariants
//!
//! - [`Reader`] never reads past its payload: running short is
//!   [`DecodeError::Malformed`], never a panic and never `Incomplete` (the
//!   whole frame is there before parsing starts). It never allocates more
//!   than the bytes it was given.
//! - The writers refuse (with [`EncodeError::Invalid`]) what the readers
//!   refuse: a shortstr over 255 bytes, a longstr or table over 4 GiB, tables
//!   nested deeper than [`MAX_NESTING_DEPTH`](super::MAX_NESTING_DEPTH).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::field_table::{self, FieldTable};
use super::{DecodeError, EncodeError};

/// A cursor over the payload of one whole frame (or one field table). Running
/// out of bytes here is malformed, not incomplete: the frame is all there is.
pub(crate) struct Reader {
    buf: Bytes,
    /// The octet the last bit came from and how many of its bits are used;
    /// `None` when the previous field was not a bit.
    bits: Option<(u8, u8)>,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf, bits: None }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<Bytes, DecodeError> {
        self.bits = None;
        if n > self.buf.len() {
            let left = self.buf.len();
            return Err(DecodeError::Malformed(format!(
                "{what}: needs {n} bytes, {left} left"
            )));
        }
        Ok(self.buf.split_to(n))
    }

    /// Takes exactly `N` bytes.
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    pub(crate) fn octet(&mut self, what: &str) -> Result<u8, DecodeError> {
        self.array::<1>(what).map(|[b]| b)
    }

    pub(crate) fn short(&mut self, what: &str) -> Result<u16, DecodeError> {
        self.array(what).map(u16::from_be_bytes)
    }

    pub(crate) fn long(&mut self, what: &str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    pub(crate) fn longlong(&mut self, what: &str) -> Result<u64, DecodeError> {
        self.array(what).map(u64::from_be_bytes)
    }

    /// Eight bytes of a signed or floating-point field value.
    pub(crate) fn bytes8(&mut self, what: &str) -> Result<[u8; 8], DecodeError> {
        self.array(what)
    }

    /// Four bytes of a signed or floating-point field value.
    pub(crate) fn bytes4(&mut self, what: &str) -> Result<[u8; 4], DecodeError> {
        self.array(what)
    }

    /// Two bytes of a signed field value.
    pub(crate) fn bytes2(&mut self, what: &str) -> Result<[u8; 2], DecodeError> {
        self.array(what)
    }

    /// One bit argument: the next bit of the current octet, or the low bit
    /// of a new one after a non-bit field or eight bits.
    pub(crate) fn bit(&mut self, what: &str) -> Result<bool, DecodeError> {
        let (octet, used) = match self.bits {
            Some((octet, used)) if used < 8 => (octet, used),
            _ => (self.octet(what)?, 0),
        };
        self.bits = Some((octet, used + 1));
        Ok(octet & (1 << used) != 0)
    }

    /// A shortstr that must be UTF-8.
    pub(crate) fn shortstr(&mut self, what: &str) -> Result<String, DecodeError> {
        let len = self.octet(what)?;
        let bytes = self.take(usize::from(len), what)?;
        match std::str::from_utf8(&bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError::Syntax(format!("{what} is not valid UTF-8"))),
        }
    }

    /// A reserved shortstr: read past without looking at its bytes.
    pub(crate) fn skip_shortstr(&mut self, what: &str) -> Result<(), DecodeError> {
        let len = self.octet(what)?;
        self.take(usize::from(len), what).map(drop)
    }

    pub(crate) fn longstr(&mut self, what: &str) -> Result<Bytes, DecodeError> {
        let len = self.long(what)?;
        // A length that does not fit usize cannot fit the payload either.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.take(len, what)
    }

    /// A field table at nesting depth `depth` (1 for a method argument).
    pub(crate) fn table_at(&mut self, depth: usize, what: &str) -> Result<FieldTable, DecodeError> {
        let bytes = self.longstr(what)?;
        field_table::read_entries(bytes, depth, what)
    }

    pub(crate) fn table(&mut self, what: &str) -> Result<FieldTable, DecodeError> {
        self.table_at(1, what)
    }

    /// Succeeds only when every byte was consumed.
    pub(crate) fn finish(self, what: &str) -> Result<(), DecodeError> {
        match self.buf.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Malformed(format!(
                "{n} unexpected trailing bytes after {what}"
            ))),
        }
    }
}

/// Appends fields to a buffer, packing consecutive bits into shared octets.
pub(crate) struct Writer<'a> {
    out: &'a mut BytesMut,
    /// Where the current bit octet is in `out` and how many of its bits are
    /// used; `None` when the previous field was not a bit.
    bits: Option<(usize, u8)>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut BytesMut) -> Self {
        Self { out, bits: None }
    }

    pub(crate) fn octet(&mut self, v: u8) {
        self.bits = None;
        self.out.put_u8(v);
    }

    pub(crate) fn short(&mut self, v: u16) {
        self.bits = None;
        self.out.put_u16(v);
    }

    pub(crate) fn long(&mut self, v: u32) {
        self.bits = None;
        self.out.put_u32(v);
    }

    pub(crate) fn longlong(&mut self, v: u64) {
        self.bits = None;
        self.out.put_u64(v);
    }

    /// Raw bytes without a length (fixed-width field values).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.bits = None;
        self.out.put_slice(bytes);
    }

    pub(crate) fn bit(&mut self, v: bool) {
        match self.bits {
            Some((at, used)) if used < 8 => {
                if let (true, Some(octet)) = (v, self.out.get_mut(at)) {
                    *octet |= 1 << used;
                }
                self.bits = Some((at, used + 1));
            }
            _ => {
                let at = self.out.len();
                self.out.put_u8(u8::from(v));
                self.bits = Some((at, 1));
            }
        }
    }

    pub(crate) fn shortstr(&mut self, s: &str, what: &str) -> Result<(), EncodeError> {
        let len = u8::try_from(s.len()).map_err(|_| {
            EncodeError::Invalid(format!(
                "{what} is {} bytes, a shortstr holds at most 255",
                s.len()
            ))
        })?;
        self.octet(len);
        self.raw(s.as_bytes());
        Ok(())
    }

    pub(crate) fn longstr(&mut self, bytes: &[u8], what: &str) -> Result<(), EncodeError> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| EncodeError::Invalid(format!("{what} is longer than 4 GiB")))?;
        self.long(len);
        self.raw(bytes);
        Ok(())
    }

    /// A field table at nesting depth `depth` (1 for a method argument): its
    /// length is written once its entries are.
    pub(crate) fn table_at(
        &mut self,
        table: &FieldTable,
        depth: usize,
        what: &str,
    ) -> Result<(), EncodeError> {
        self.sized(what, |w| field_table::write_entries(w, table, depth, what))
    }

    pub(crate) fn table(&mut self, table: &FieldTable, what: &str) -> Result<(), EncodeError> {
        self.table_at(table, 1, what)
    }

    /// Writes a long length, then what `body` writes, then patches the length.
    pub(crate) fn sized(
        &mut self,
        what: &str,
        body: impl FnOnce(&mut Self) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        self.long(0);
        let start = self.out.len();
        body(self)?;
        self.bits = None;
        let len = u32::try_from(self.out.len() - start)
            .map_err(|_| EncodeError::Invalid(format!("{what} is longer than 4 GiB")))?;
        if let Some(slot) = self.out.get_mut(start - 4..start) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_pack_low_bit_first_and_restart_after_other_fields() {
        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out);
        for b in [true, false, true] {
            w.bit(b);
        }
        w.short(0x0102);
        for i in 0..9 {
            w.bit(i % 4 == 0);
        }
        // 0b101, short, then 9 bits: 0b0001_0001 and 0b1.
        assert_eq!(&out[..], [0b101, 0x01, 0x02, 0b0001_0001, 0b1]);

        let mut r = Reader::new(out.freeze());
        assert_eq!(
            [
                r.bit("a").unwrap(),
                r.bit("b").unwrap(),
                r.bit("c").unwrap()
            ],
            [true, false, true]
        );
        assert_eq!(r.short("s").unwrap(), 0x0102);
        for i in 0..9 {
            assert_eq!(r.bit("bit").unwrap(), i % 4 == 0);
        }
        r.finish("bits").unwrap();
    }

    #[test]
    fn short_reads_are_malformed() {
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 1]));
        assert!(matches!(r.long("long"), Err(DecodeError::Malformed(_))));
        let mut r = Reader::new(Bytes::from_static(&[5, b'a', b'b']));
        assert!(matches!(r.shortstr("name"), Err(DecodeError::Malformed(_))));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 1]));
        assert!(matches!(r.longstr("data"), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn shortstrs_are_utf8() {
        let mut r = Reader::new(Bytes::from_static(&[2, 0xc3, 0x28]));
        let err = r.shortstr("queue").unwrap_err();
        assert!(matches!(err, DecodeError::Syntax(_)));
        assert_eq!(err.reply_code(), super::super::reply::SYNTAX_ERROR);
        // A reserved shortstr is skipped whatever its bytes.
        let mut r = Reader::new(Bytes::from_static(&[2, 0xc3, 0x28]));
        r.skip_shortstr("reserved").unwrap();
        r.finish("reserved").unwrap();
    }

    #[test]
    fn writer_refuses_long_shortstrs() {
        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out);
        assert!(w.shortstr(&"x".repeat(255), "ok").is_ok());
        assert!(matches!(
            w.shortstr(&"x".repeat(256), "too long"),
            Err(EncodeError::Invalid(_))
        ));
    }
}
