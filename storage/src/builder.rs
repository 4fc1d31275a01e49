//! Builds Kafka v2 record batches (see `batch.rs` for the layout).

use bytes::Bytes;

use crate::batch::{BATCH_HEADER_LEN, CRC_START, LOG_OVERHEAD};
use crate::{Compression, Error, Record, Result};

/// Builds one Kafka v2 record batch (base offset 0; the log assigns offsets).
#[derive(Debug)]
pub struct BatchBuilder {
    compression: Compression,
    records: Vec<Record>,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new(Compression::None)
    }
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> BatchBuilder {
        BatchBuilder {
            compression,
            records: Vec::new(),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    pub fn push(mut self, record: Record) -> BatchBuilder {
        self.records.push(record);
        self
    }

    pub fn add(&mut self, record: Record) {
        self.records.push(record);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Idempotent-producer fields (defaults: -1, -1, -1).
    pub fn producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> BatchBuilder {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Encodes the batch: records get offset deltas `0..n` and timestamp
    /// deltas from the smallest timestamp.
    ///
    /// # Errors
    /// `CorruptBatch` for an empty batch; `UnsupportedCodec` for gzip/snappy.
    pub fn build(self) -> Result<Bytes> {
        self.encode(0, None)
    }

    fn encode(self, base_offset: i64, last_offset_delta: Option<i32>) -> Result<Bytes> {
        if self.records.is_empty() {
            return Err(Error::CorruptBatch(
                "a batch needs at least one record".into(),
            ));
        }
        let base_ts = self
            .records
            .iter()
            .map(|r| r.timestamp_ms)
            .min()
            .unwrap_or(0);
        let max_ts = self
            .records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(0);
        let mut section = Vec::new();
        for (i, record) in self.records.iter().enumerate() {
            let delta = match last_offset_delta {
                Some(_) => (record.offset - base_offset) as i32,
                None => i as i32,
            };
            record.encode(&mut section, delta, record.timestamp_ms - base_ts);
        }
        let section = match self.compression {
            Compression::None => section,
            codec => codec.compress(&section)?,
        };
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + section.len());
        let batch_length = (BATCH_HEADER_LEN - LOG_OVERHEAD + section.len()) as i32;
        let count = self.records.len() as i32;
        out.extend_from_slice(&base_offset.to_be_bytes());
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        out.push(2); // magic
        out.extend_from_slice(&[0; 4]); // crc, filled below
        out.extend_from_slice(&i16::from(self.compression.id()).to_be_bytes());
        out.extend_from_slice(&last_offset_delta.unwrap_or(count - 1).to_be_bytes());
        out.extend_from_slice(&base_ts.to_be_bytes());
        out.extend_from_slice(&max_ts.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&section);
        let crc = crc32c::crc32c(&out[CRC_START..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(Bytes::from(out))
    }
}

/// Re-encodes `records` (a subset of the batch `original`, with their
/// absolute offsets) as one uncompressed batch at the same base offset and
/// last offset delta, keeping the producer fields. Used by compaction.
pub(crate) fn encode_with_offsets(
    records: &[Record],
    original: &crate::BatchHeader,
) -> Result<Bytes> {
    let mut builder = BatchBuilder::new(Compression::None).producer(
        original.producer_id,
        original.producer_epoch,
        original.base_sequence,
    );
    builder.records = records.to_vec();
    let base = original.base_offset;
    let mut bytes = builder
        .encode(base, Some(original.last_offset_delta))?
        .to_vec();
    bytes[12..16].copy_from_slice(&original.partition_leader_epoch.to_be_bytes());
    Ok(Bytes::from(bytes))
}
