use bytes::Bytes;

use crate::{Compression, Record, Result};

/// Builds one Kafka v2 record batch (base offset 0; the log assigns offsets).
#[derive(Debug, Default)]
pub struct BatchBuilder {
    compression: Compression,
    records: Vec<Record>,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> BatchBuilder {
        BatchBuilder { compression, records: Vec::new() }
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
    pub fn producer(self, _producer_id: i64, _producer_epoch: i16, _base_sequence: i32) -> BatchBuilder {
        self
    }
    pub fn build(self) -> Result<Bytes> {
        let _ = (self.compression, self.records);
        todo!("storage: build")
    }
}
