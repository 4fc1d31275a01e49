//! The Kafka v2 record batch ("magic 2"), byte for byte.
//!
//! # Format (big-endian; KIP-98 "RecordBatch")
//! ```text
//!  0 baseOffset: int64
//!  8 batchLength: int32           bytes after this field (total = 12 + batchLength)
//! 12 partitionLeaderEpoch: int32
//! 16 magic: int8                  2
//! 17 crc: uint32                  CRC-32C (Castagnoli) of bytes 21..end
//! 21 attributes: int16            bits 0-2 codec, 3 timestamp type,
//!                                 4 transactional, 5 control
//! 23 lastOffsetDelta: int32
//! 27 baseTimestamp: int64
//! 35 maxTimestamp: int64
//! 43 producerId: int64
//! 51 producerEpoch: int16
//! 53 baseSequence: int32
//! 57 recordsCount: int32
//! 61 records                      compressed as one stream when codec != 0
//! ```
//!
//! # Invariants
//! Base offset and leader epoch lie outside the CRC, so the log rewrites them
//! on append without recomputing it. A `RecordBatch` returned by `parse` has a
//! valid length, magic, CRC, codec and records.

use bytes::Bytes;

use crate::record::Record;
use crate::{Compression, Error, Result};

/// Size of the fixed header before the records.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s payload starts (baseOffset + batchLength).
pub(crate) const LOG_OVERHEAD: usize = 12;
pub(crate) const CRC_START: usize = 21;

/// The fixed 61-byte header of a Kafka v2 record batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without checking the CRC.
    ///
    /// # Errors
    /// `Incomplete` when `buf` is shorter than the header or the batch;
    /// `CorruptBatch` for a bad length or magic.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(Error::Incomplete(BATCH_HEADER_LEN - buf.len()));
        }
        let header = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if header.magic != 2 {
            return Err(Error::CorruptBatch(format!(
                "magic {} (only 2 is supported)",
                header.magic
            )));
        }
        let total = header.total_len()?;
        if buf.len() < total {
            return Err(Error::Incomplete(total - buf.len()));
        }
        if header.records_count < 0 || header.last_offset_delta < 0 {
            return Err(Error::CorruptBatch(
                "negative record count or offset delta".into(),
            ));
        }
        Ok(header)
    }

    /// Total bytes of the batch including the 12-byte log overhead.
    ///
    /// # Errors
    /// `CorruptBatch` when the length field is below the header size.
    pub fn total_len(&self) -> Result<usize> {
        let len = usize::try_from(self.batch_length).unwrap_or(0);
        if len < BATCH_HEADER_LEN - LOG_OVERHEAD {
            return Err(Error::CorruptBatch(format!(
                "batch length {} is too small",
                self.batch_length
            )));
        }
        Ok(len + LOG_OVERHEAD)
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The codec named by the attributes.
    ///
    /// # Errors
    /// `UnsupportedCodec` for codec bits 5..=7.
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_id((self.attributes & 0x07) as u8)
    }

    /// Whether this is a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// A validated batch: the header and the bytes it came from.
#[derive(Debug, Clone)]
pub struct RecordBatch {
    pub header: BatchHeader,
    pub bytes: Bytes,
}

impl RecordBatch {
    /// Parses and fully validates one batch at the start of `bytes`
    /// (length, magic, CRC-32C, codec, every record). `bytes` beyond the batch
    /// are ignored; `self.bytes` holds exactly the batch.
    ///
    /// # Errors
    /// `Incomplete` if `bytes` holds less than one batch, `CorruptBatch` or
    /// `UnsupportedCodec` if it does not validate.
    pub fn parse(bytes: Bytes) -> Result<RecordBatch> {
        let batch = RecordBatch::parse_unverified(bytes)?;
        batch.verify_crc()?;
        batch.records()?;
        Ok(batch)
    }

    /// Parses the header and checks the CRC, but does not decode records.
    ///
    /// # Errors
    /// As `parse`, less the record checks.
    pub fn parse_checked(bytes: Bytes) -> Result<RecordBatch> {
        let batch = RecordBatch::parse_unverified(bytes)?;
        batch.verify_crc()?;
        Ok(batch)
    }

    fn parse_unverified(bytes: Bytes) -> Result<RecordBatch> {
        let header = BatchHeader::parse(&bytes)?;
        let total = header.total_len()?;
        Ok(RecordBatch {
            header,
            bytes: bytes.slice(..total),
        })
    }

    /// Checks the stored CRC-32C against the bytes.
    ///
    /// # Errors
    /// `CorruptBatch` on a mismatch.
    pub fn verify_crc(&self) -> Result<()> {
        let actual = crc32c::crc32c(&self.bytes[CRC_START..]);
        if actual != self.header.crc {
            return Err(Error::CorruptBatch(format!(
                "CRC mismatch at offset {}: stored {:#010x}, computed {actual:#010x}",
                self.header.base_offset, self.header.crc
            )));
        }
        Ok(())
    }

    /// The codec of the records section.
    ///
    /// # Errors
    /// `UnsupportedCodec` for unknown codec bits.
    pub fn compression(&self) -> Result<Compression> {
        self.header.compression()
    }

    /// Decodes (decompressing if needed) the records with absolute offsets
    /// and timestamps. Uncompressed keys and values are zero-copy slices.
    ///
    /// # Errors
    /// `CorruptBatch` for a malformed record, a count mismatch or an offset
    /// delta beyond `lastOffsetDelta`; `UnsupportedCodec`.
    pub fn records(&self) -> Result<Vec<Record>> {
        let h = &self.header;
        let section = self.bytes.slice(BATCH_HEADER_LEN..);
        let section = match self.compression()? {
            Compression::None => section,
            codec => Bytes::from(codec.decompress(&section)?),
        };
        let count = usize::try_from(h.records_count).unwrap_or(0);
        // Each record takes at least 7 bytes, which bounds the allocation.
        let mut records = Vec::with_capacity(count.min(section.len() / 7 + 1));
        let mut pos = 0;
        for i in 0..count {
            if pos >= section.len() {
                return Err(Error::CorruptBatch(format!(
                    "batch says {count} records but holds {i}"
                )));
            }
            let record = Record::decode(&section, &mut pos, h.base_offset, h.base_timestamp)?;
            let delta = record.offset.wrapping_sub(h.base_offset);
            if !(0..=i64::from(h.last_offset_delta)).contains(&delta) {
                return Err(Error::CorruptBatch(format!(
                    "record offset delta {delta} out of range"
                )));
            }
            records.push(record);
        }
        if pos != section.len() {
            return Err(Error::CorruptBatch(format!(
                "{} bytes after the last of {count} records",
                section.len() - pos
            )));
        }
        Ok(records)
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    /// Splits a buffer of concatenated batches (as `Log::read` returns). A
    /// trailing partial batch ends the iteration; a corrupt one yields `Err`
    /// and ends it.
    pub fn iter_batches(bytes: Bytes) -> impl Iterator<Item = Result<RecordBatch>> {
        let mut rest = bytes;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || rest.is_empty() {
                return None;
            }
            match RecordBatch::parse_checked(rest.clone()) {
                Ok(batch) => {
                    rest = rest.slice(batch.bytes.len()..);
                    Some(Ok(batch))
                }
                Err(Error::Incomplete(_)) => None,
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
            }
        })
    }
}

/// The header bytes [`stamp`] writes (base offset, batch length, leader
/// epoch); the CRC covers none of them.
pub(crate) const STAMPED_LEN: usize = 16;

/// Writes base offset and leader epoch into a batch's header bytes.
pub(crate) fn stamp(buf: &mut [u8], base_offset: i64, leader_epoch: i32) {
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
    buf[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
