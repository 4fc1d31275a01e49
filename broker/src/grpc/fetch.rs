//! `FetchService`: long-poll fetch, a streaming tail, and offset lookups.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use fjord_proto::v1 as pb;
use fjord_proto::v1::fetch_service_server::FetchService;
use fjord_storage::RecordBatch;
use futures::Stream;
use tonic::{Request, Response, Status};

use super::status::{GrpcResult, to_status};
use crate::{Broker, Error, FetchRequest, FetchResult, OffsetSpec, Route};

pub(crate) struct Fetch(pub(crate) Broker);

/// Largest `max_bytes` honoured (a single larger batch is still returned
/// whole); keeps responses well under the message size limit.
const MAX_FETCH_BYTES: usize = 16 << 20;

/// How long one step of a tail waits before checking the client is there.
const TAIL_WAIT: Duration = Duration::from_secs(1);

fn decode(records: &Bytes, from: i64) -> Result<Vec<pb::ConsumedRecord>, Status> {
    let mut out = Vec::new();
    for batch in RecordBatch::iter_batches(records.clone()) {
        let records = batch
            .and_then(|b| b.records())
            .map_err(|e| Status::internal(format!("stored batch does not decode: {e}")))?;
        for r in records.into_iter().filter(|r| r.offset >= from) {
            out.push(pb::ConsumedRecord {
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|h| pb::Header {
                        key: h.key,
                        value: h.value,
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}

fn response(
    partition: u32,
    from: i64,
    result: FetchResult,
    want_decoded: bool,
) -> Result<pb::FetchResponse, Status> {
    let decoded = if want_decoded {
        decode(&result.records, from)?
    } else {
        Vec::new()
    };
    Ok(pb::FetchResponse {
        partition,
        high_watermark: result.high_watermark,
        log_start_offset: result.log_start_offset,
        records: result.records,
        decoded,
        next_offset: result.next_offset,
    })
}

type TailStream = Pin<Box<dyn Stream<Item = Result<pb::FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl FetchService for Fetch {
    async fn fetch(&self, request: Request<pb::FetchRequest>) -> GrpcResult<pb::FetchResponse> {
        let r = request.into_inner();
        let result = self
            .0
            .fetch(FetchRequest {
                topic: r.topic,
                partition: r.partition,
                offset: r.offset,
                max_bytes: (r.max_bytes as usize).min(MAX_FETCH_BYTES),
                min_bytes: r.min_bytes as usize,
                max_wait: Duration::from_millis(u64::from(r.max_wait_ms.min(60_000))),
                route: Route::Local,
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(response(
            r.partition,
            r.offset,
            result,
            r.decode,
        )?))
    }

    type TailStream = TailStream;

    async fn tail(&self, request: Request<pb::TailRequest>) -> GrpcResult<Self::TailStream> {
        let r = request.into_inner();
        let broker = self.0.clone();
        // Fail fast on a bad topic, partition or offset.
        broker
            .list_offset(&r.topic, r.partition, OffsetSpec::Latest, Route::Local)
            .await
            .map_err(to_status)?;
        let stream = async_stream::try_stream! {
            let mut offset = r.offset;
            loop {
                let fetched = broker
                    .fetch(FetchRequest {
                        topic: r.topic.clone(),
                        partition: r.partition,
                        offset,
                        max_bytes: (r.max_bytes as usize).min(MAX_FETCH_BYTES),
                        min_bytes: 1,
                        max_wait: TAIL_WAIT,
                        route: Route::Local,
                    })
                    .await;
                let result = match fetched {
                    Ok(result) => result,
                    Err(Error::ShuttingDown) => break,
                    Err(e) => Err(to_status(e))?,
                };
                if result.records.is_empty() {
                    continue;
                }
                let next = result.next_offset;
                yield response(r.partition, offset, result, r.decode)?;
                offset = next;
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_offsets(
        &self,
        request: Request<pb::ListOffsetsRequest>,
    ) -> GrpcResult<pb::ListOffsetsResponse> {
        let r = request.into_inner();
        let spec = match pb::OffsetSpec::try_from(r.spec) {
            Ok(pb::OffsetSpec::Latest) => OffsetSpec::Latest,
            Ok(pb::OffsetSpec::Earliest) => OffsetSpec::Earliest,
            Ok(pb::OffsetSpec::Timestamp) => OffsetSpec::Timestamp(r.timestamp_ms),
            Ok(pb::OffsetSpec::LogEnd) => OffsetSpec::LogEnd,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown offset spec {}",
                    r.spec
                )));
            }
        };
        let found = self
            .0
            .list_offset(&r.topic, r.partition, spec, Route::Local)
            .await
            .map_err(to_status)?;
        let (offset, timestamp_ms) = found.unwrap_or((-1, -1));
        Ok(Response::new(pb::ListOffsetsResponse {
            offset,
            timestamp_ms,
        }))
    }
}
