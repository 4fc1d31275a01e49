//! One record inside a Kafka v2 batch.
//!
//! # Format (KIP-98, "Record")
//! ```text
//! length: varint          bytes that follow
//! attributes: int8        unused, 0
//! timestampDelta: varlong from the batch's base timestamp
//! offsetDelta: varint     from the batch's base offset
//! keyLength: varint       -1 = null key
//! key: byte[keyLength]
//! valueLength: varint     -1 = null value (a tombstone)
//! value: byte[valueLength]
//! headersCount: varint
//! headers: [headerKeyLength: varint, key: utf8, headerValueLength: varint, value]
//! ```

use bytes::Bytes;

use crate::varint::{get_varint, get_varlong, put_varint, put_varlong};
use crate::{Error, Result};

/// A record header (key is UTF-8 in Kafka; value may be null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One record, with absolute offset and timestamp once decoded from a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// A record with no headers; the offset is assigned when it is appended.
    pub fn new(key: Option<Bytes>, value: Option<Bytes>, timestamp_ms: i64) -> Record {
        Record {
            offset: 0,
            timestamp_ms,
            key,
            value,
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Record {
        self.headers.push(RecordHeader {
            key: key.into(),
            value,
        });
        self
    }

    /// Appends the wire form of this record with the given deltas.
    pub(crate) fn encode(&self, out: &mut Vec<u8>, offset_delta: i32, timestamp_delta: i64) {
        let mut body = Vec::with_capacity(self.body_hint());
        body.push(0); // attributes
        put_varlong(&mut body, timestamp_delta);
        put_varint(&mut body, offset_delta);
        put_bytes(&mut body, self.key.as_deref());
        put_bytes(&mut body, self.value.as_deref());
        put_varint(&mut body, self.headers.len() as i32);
        for header in &self.headers {
            put_bytes(&mut body, Some(header.key.as_bytes()));
            put_bytes(&mut body, header.value.as_deref());
        }
        put_varint(out, body.len() as i32);
        out.extend_from_slice(&body);
    }

    fn body_hint(&self) -> usize {
        16 + self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len)
    }

    /// Decodes one record at `*pos` of `buf` (a records section), advancing
    /// `*pos`. Key, value and header values are zero-copy slices of `buf`.
    ///
    /// # Errors
    /// `CorruptBatch` for any malformed field.
    pub(crate) fn decode(
        buf: &Bytes,
        pos: &mut usize,
        base_offset: i64,
        base_timestamp: i64,
    ) -> Result<Record> {
        let length = get_varint(buf, pos)?;
        let length = usize::try_from(length)
            .map_err(|_| Error::CorruptBatch(format!("negative record length {length}")))?;
        let end = pos
            .checked_add(length)
            .filter(|end| *end <= buf.len())
            .ok_or_else(|| Error::CorruptBatch("record runs past the end of the batch".into()))?;
        let rec = &buf[..end];
        *pos += 1; // attributes
        if *pos > end {
            return Err(Error::CorruptBatch("record too short".into()));
        }
        let timestamp_delta = get_varlong(rec, pos)?;
        let offset_delta = get_varint(rec, pos)?;
        let key = get_bytes(buf, end, pos)?;
        let value = get_bytes(buf, end, pos)?;
        let count = get_varint(rec, pos)?;
        let count = usize::try_from(count)
            .map_err(|_| Error::CorruptBatch(format!("negative header count {count}")))?;
        let mut headers = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let key = get_bytes(buf, end, pos)?
                .ok_or_else(|| Error::CorruptBatch("null header key".into()))?;
            let key = String::from_utf8(key.to_vec())
                .map_err(|_| Error::CorruptBatch("header key is not UTF-8".into()))?;
            let value = get_bytes(buf, end, pos)?;
            headers.push(RecordHeader { key, value });
        }
        if *pos != end {
            return Err(Error::CorruptBatch(format!(
                "record length says {length} bytes but fields use {}",
                length + *pos - end
            )));
        }
        Ok(Record {
            offset: base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp_ms: base_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers,
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

fn get_bytes(buf: &Bytes, end: usize, pos: &mut usize) -> Result<Option<Bytes>> {
    let len = get_varint(&buf[..end], pos)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| Error::CorruptBatch(format!("bad length {len}")))?;
    let stop = pos
        .checked_add(len)
        .filter(|stop| *stop <= end)
        .ok_or_else(|| Error::CorruptBatch("field runs past the end of the record".into()))?;
    let out = buf.slice(*pos..stop);
    *pos = stop;
    Ok(Some(out))
}
