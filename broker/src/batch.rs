//! Record batches the broker builds (from [`NewRecord`]s) and decodes (for
//! those who need single records of fetched batches).

use bytes::Bytes;
use fjord_storage::{BatchBuilder, Compression, Record, RecordBatch};

use crate::api::NewRecord;
use crate::clock::now_ms;
use crate::{Error, Result};

/// Decodes the records of fetched batches (a `FetchResult`'s `records`),
/// dropping those below `from` (a fetch returns whole batches).
///
/// # Errors
/// `InvalidRequest` when a batch does not decode (a corrupt copy).
pub fn decode_records(data: Bytes, from: i64) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for batch in RecordBatch::iter_batches(data) {
        let records = batch
            .and_then(|b| b.records())
            .map_err(|e| Error::InvalidRequest(format!("a fetched batch does not decode: {e}")))?;
        out.extend(records.into_iter().filter(|r| r.offset >= from));
    }
    Ok(out)
}

/// Encodes `records` as one batch for `topic`-`partition`, stamping
/// missing timestamps with now.
///
/// # Errors
/// `InvalidRequest` for no records; `InvalidBatch` when they do not
/// encode.
pub(crate) fn build_batch(
    topic: &str,
    partition: u32,
    records: Vec<NewRecord>,
    compression: Compression,
) -> Result<Bytes> {
    if records.is_empty() {
        return Err(Error::InvalidRequest("no records to produce".into()));
    }
    let now = now_ms();
    let mut builder = BatchBuilder::new(compression);
    for r in records {
        let ts = if r.timestamp_ms == 0 {
            now
        } else {
            r.timestamp_ms
        };
        let mut record = Record::new(r.key, r.value, ts);
        record.headers = r.headers;
        builder.add(record);
    }
    builder.build().map_err(|source| Error::InvalidBatch {
        topic: topic.to_string(),
        partition,
        source,
    })
}
