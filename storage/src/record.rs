use bytes::Bytes;

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
    pub fn new(key: Option<Bytes>, value: Option<Bytes>, timestamp_ms: i64) -> Record {
        Record { offset: 0, timestamp_ms, key, value, headers: Vec::new() }
    }
}
