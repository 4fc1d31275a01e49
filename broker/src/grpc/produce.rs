//! `ProduceService`: validate every batch of a request, then append.

use std::collections::BTreeMap;

use bytes::Bytes;
use fjord_proto::v1 as pb;
use fjord_proto::v1::produce_service_server::ProduceService;
use fjord_storage::{Compression, RecordHeader};
use tonic::{Request, Response, Status};

use super::status::{GrpcResult, to_status};
use crate::{Acks, Broker, Error, NewRecord, ProduceRequest};

pub(crate) struct Produce(pub(crate) Broker);

pub(super) fn acks(value: i32) -> Result<Acks, Status> {
    match pb::Acks::try_from(value) {
        Ok(pb::Acks::Leader) => Ok(Acks::Leader),
        Ok(pb::Acks::None) => Ok(Acks::None),
        Ok(pb::Acks::All) => Ok(Acks::All),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown acks value {value}"
        ))),
    }
}

fn compression(value: i32) -> Result<Compression, Status> {
    match pb::Compression::try_from(value) {
        Ok(pb::Compression::None) => Ok(Compression::None),
        Ok(pb::Compression::Lz4) => Ok(Compression::Lz4),
        Ok(pb::Compression::Zstd) => Ok(Compression::Zstd),
        Ok(other) => Err(Status::invalid_argument(format!(
            "compression {other:?} is not supported (use none, lz4 or zstd)"
        ))),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown compression value {value}"
        ))),
    }
}

pub(super) fn result_for(
    partition: u32,
    outcome: Result<crate::ProduceResult, Error>,
) -> pb::PartitionProduceResult {
    match outcome {
        Ok(r) => pb::PartitionProduceResult {
            partition,
            error: pb::ErrorCode::ErrorNone as i32,
            error_message: String::new(),
            base_offset: r.base_offset,
            last_offset: r.last_offset,
            log_append_time_ms: r.log_append_time_ms,
            log_start_offset: r.log_start_offset,
        },
        Err(e) => {
            let code = match &e {
                Error::Storage { .. } => pb::ErrorCode::ErrorStorage,
                Error::NotLeader { .. } => pb::ErrorCode::ErrorNotLeader,
                Error::NotEnoughReplicas { .. } => pb::ErrorCode::ErrorNotEnoughReplicas,
                Error::Timeout(_) => pb::ErrorCode::ErrorTimeout,
                Error::Sequence {
                    source: fjord_storage::Error::ProducerFenced { .. },
                    ..
                } => pb::ErrorCode::ErrorProducerFenced,
                Error::Sequence { .. } => pb::ErrorCode::ErrorOutOfOrderSequence,
                Error::InvalidBatch {
                    source: fjord_storage::Error::BatchTooLarge { .. },
                    ..
                } => pb::ErrorCode::ErrorRecordTooLarge,
                _ => pb::ErrorCode::ErrorUnknown,
            };
            pb::PartitionProduceResult {
                partition,
                error: code as i32,
                error_message: e.to_string(),
                base_offset: -1,
                last_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
            }
        }
    }
}

#[tonic::async_trait]
impl ProduceService for Produce {
    async fn init_producer_id(
        &self,
        _: Request<pb::InitProducerIdRequest>,
    ) -> GrpcResult<pb::InitProducerIdResponse> {
        let (producer_id, epoch) = self
            .0
            .groups()
            .init_producer_id()
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::InitProducerIdResponse {
            producer_id,
            producer_epoch: i32::from(epoch),
        }))
    }

    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> GrpcResult<pb::ProduceResponse> {
        let r = request.into_inner();
        let acks = acks(r.acks)?;
        let broker = &self.0;
        if r.batches.is_empty() && r.records.is_empty() {
            return Err(Status::invalid_argument(
                "a produce request needs batches or records",
            ));
        }
        if r.topic.starts_with("__") {
            return Err(Status::invalid_argument(format!(
                "clients cannot produce to internal topic {}",
                r.topic
            )));
        }
        let parts = broker.parts();
        parts.quorum.await_topic(&r.topic).await;
        let count = parts.quorum.partition_count(&r.topic).map_err(to_status)?;
        // Group convenience records by partition, in order.
        let mut by_partition: BTreeMap<u32, Vec<NewRecord>> = BTreeMap::new();
        for record in r.records {
            let partition = match record.partition {
                Some(p) => p,
                None => parts.router.pick_partition(record.key.as_deref(), count),
            };
            by_partition.entry(partition).or_default().push(NewRecord {
                key: record.key,
                value: record.value,
                headers: record
                    .headers
                    .into_iter()
                    .map(|h| RecordHeader {
                        key: h.key,
                        value: h.value,
                    })
                    .collect(),
                timestamp_ms: record.timestamp_ms,
            });
        }
        let codec = compression(r.compression)?;
        let mut batches: Vec<(u32, Bytes)> = r
            .batches
            .into_iter()
            .map(|b| (b.partition, b.batch))
            .collect();
        for (partition, records) in by_partition {
            let batch = crate::batch::build_batch(&r.topic, partition, records, codec)
                .map_err(to_status)?;
            batches.push((partition, batch));
        }
        // Nothing is appended unless every batch validates.
        for (partition, batch) in &batches {
            parts
                .replicas
                .validate_batch(&r.topic, *partition, batch)
                .map_err(to_status)?;
        }
        let mut results = Vec::with_capacity(batches.len());
        for (partition, batch) in batches {
            // Clients follow leaders: appended only where it leads.
            let request = ProduceRequest::batch(r.topic.clone(), partition, batch).acks(acks);
            let outcome = broker.produce(request).await;
            if let Err(Error::InvalidRequest(_)) = &outcome {
                return Err(to_status(outcome.err().unwrap_or(Error::ShuttingDown)));
            }
            results.push(result_for(partition, outcome));
        }
        Ok(Response::new(pb::ProduceResponse { results }))
    }
}
