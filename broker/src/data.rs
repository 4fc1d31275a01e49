//! Produce, fetch and offset lookups on the [`Broker`] handle.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use fjord_storage::{BatchBuilder, Compression, Record, RecordBatch};

use crate::broker::Broker;
use crate::config::{
    Acks, FetchRequest, FetchResult, NewRecord, OffsetSpec, ProduceResult, TopicSpec, now_ms,
};
use crate::metrics::ProduceFailure;
use crate::murmur2::partition_for_key;
use crate::partition::{Partition, Refusal};
use crate::{Error, Result};

impl Broker {
    /// Looks up a partition clients may produce to (auto-creating the topic
    /// when configured).
    async fn producible(&self, topic: &str, partition: u32) -> Result<std::sync::Arc<Partition>> {
        if topic.starts_with("__") {
            return Err(Error::InvalidRequest(format!(
                "clients cannot produce to internal topic {topic}"
            )));
        }
        match self.leader_partition(topic, partition) {
            Err(Error::UnknownTopic(_)) if self.inner.config.auto_create_topics => {
                let mut spec = TopicSpec::new(topic, self.inner.config.default_partitions.max(1));
                spec.replication_factor = 0;
                match self.create_topic(spec).await {
                    Ok(_) | Err(Error::TopicExists(_)) => self.leader_partition(topic, partition),
                    Err(e) => Err(e),
                }
            }
            other => other,
        }
    }

    /// Fully validates a batch for `topic-partition` without appending it
    /// (length, magic, CRC, codec, records, size limit).
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; `InvalidBatch`.
    pub fn validate_batch(&self, topic: &str, partition: u32, batch: &Bytes) -> Result<()> {
        let max = match self.partition(topic, partition) {
            Ok(p) => p.read_log().config().max_batch_bytes,
            // Not hosted here: the leader checks the size.
            Err(Error::NotLeader { .. }) => usize::MAX,
            Err(e) => return Err(e),
        };
        let invalid = |source| Error::InvalidBatch {
            topic: topic.to_string(),
            partition,
            source,
        };
        if batch.len() > max {
            return Err(invalid(fjord_storage::Error::BatchTooLarge {
                size: batch.len(),
                max,
            }));
        }
        let parsed = RecordBatch::parse(batch.clone()).map_err(invalid)?;
        if parsed.bytes.len() != batch.len() {
            return Err(invalid(fjord_storage::Error::CorruptBatch(format!(
                "{} bytes after the batch",
                batch.len() - parsed.bytes.len()
            ))));
        }
        Ok(())
    }

    /// Appends one pre-built Kafka v2 batch.
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; `InvalidRequest` for an internal
    /// topic; `InvalidBatch` (nothing appended); `Storage` (e.g. disk full:
    /// nothing partial is visible, and later appends work once space frees).
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<ProduceResult> {
        let result = self.produce_inner(topic, partition, batch, acks).await;
        if let Err(e) = &result {
            let why = match e {
                Error::InvalidBatch { .. } => ProduceFailure::InvalidBatch,
                Error::UnknownTopic(_) | Error::UnknownPartition { .. } => {
                    ProduceFailure::UnknownTopic
                }
                Error::Storage { .. } => ProduceFailure::Storage,
                _ => ProduceFailure::Other,
            };
            self.inner.metrics.record_produce_error(why);
        }
        result
    }

    async fn produce_inner(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<ProduceResult> {
        self.check_open()?;
        self.await_topic(topic).await;
        let p = self.producible(topic, partition).await?;
        self.append_to(&p, topic, batch, acks).await
    }

    /// Appends records to a partition of an internal topic (`__…`): the
    /// gateways keep their own state (sessions, retained messages) there.
    ///
    /// # Errors
    /// `InvalidRequest` for a topic that is not internal; as
    /// [`Broker::produce`] otherwise.
    pub async fn produce_internal(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<NewRecord>,
        acks: Acks,
    ) -> Result<ProduceResult> {
        if !topic.starts_with("__") {
            return Err(Error::InvalidRequest(format!(
                "{topic} is not an internal topic"
            )));
        }
        self.check_open()?;
        self.await_topic(topic).await;
        let p = self.leader_partition(topic, partition)?;
        let batch =
            build_batch(records, Compression::None).map_err(|source| Error::InvalidBatch {
                topic: topic.to_string(),
                partition,
                source,
            })?;
        self.append_to(&p, topic, batch, acks).await
    }

    /// Appends to any partition, internal ones included.
    pub(crate) async fn append_to(
        &self,
        p: &Partition,
        topic: &str,
        batch: Bytes,
        acks: Acks,
    ) -> Result<ProduceResult> {
        if p.deleted.load(Ordering::Acquire) {
            return Err(Error::UnknownTopic(topic.to_string()));
        }
        let len = batch.len() as u64;
        let cluster = self.cluster();
        // Cut off from the controller, this node may be a deposed leader:
        // only `acks=all` writes, which its in-sync followers must confirm,
        // can still be acknowledged safely.
        if acks != Acks::All && cluster.self_fenced() {
            return Err(Error::NotLeader {
                topic: topic.to_string(),
                partition: p.id,
                leader: None,
            });
        }
        let outcome = p
            .append_as_leader(
                batch,
                acks,
                cluster.config.produce_timeout,
                &self.inner.metrics,
            )
            .await;
        let info = match outcome {
            Ok((info, propose)) => {
                if let Some(isr) = propose {
                    let cluster = std::sync::Arc::clone(cluster);
                    let epoch = p.role().epoch();
                    if let Ok(partition) = self.partition(topic, p.id) {
                        self.propose_isr(&cluster, topic.to_string(), &partition, epoch, isr);
                    }
                }
                info
            }
            Err(Refusal::NotLeader) => return Err(self.not_leader(topic, p.id)),
            Err(Refusal::NotEnoughReplicas { isr, required }) => {
                return Err(Error::NotEnoughReplicas {
                    topic: topic.to_string(),
                    partition: p.id,
                    isr,
                    required,
                });
            }
            Err(Refusal::Timeout) => {
                return Err(Error::Timeout(format!(
                    "{topic}-{}: the in-sync replicas did not confirm the write within {:?}; it may still be committed",
                    p.id, cluster.config.produce_timeout
                )));
            }
            Err(Refusal::Storage(e)) => return Err(Error::from_storage(topic, p.id, e)),
        };
        self.inner
            .metrics
            .record_produce((info.last_offset - info.base_offset + 1) as u64, len);
        let log_start_offset = p.read_log().log_start_offset();
        if acks == Acks::None {
            return Ok(ProduceResult {
                partition: p.id,
                base_offset: -1,
                last_offset: -1,
                log_append_time_ms: -1,
                log_start_offset,
            });
        }
        Ok(ProduceResult {
            partition: p.id,
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset,
        })
    }

    /// Builds a batch from `records` and appends it; `partition = None` picks
    /// murmur2(key of the first record) % partitions, or round-robin without
    /// a key.
    ///
    /// # Errors
    /// As [`Broker::produce`]; `InvalidRequest` for an empty record list.
    pub async fn produce_records(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<NewRecord>,
        compression: Compression,
        acks: Acks,
    ) -> Result<ProduceResult> {
        if records.is_empty() {
            return Err(Error::InvalidRequest("no records to produce".into()));
        }
        let partition = match partition {
            Some(p) => p,
            None => {
                let count = self
                    .partition_count(topic)
                    .unwrap_or(self.inner.config.default_partitions.max(1));
                self.pick_partition(records[0].key.as_deref(), count)
            }
        };
        let batch = build_batch(records, compression).map_err(|source| Error::InvalidBatch {
            topic: topic.to_string(),
            partition,
            source,
        })?;
        self.produce(topic, partition, batch, acks).await
    }

    /// Kafka's default partitioner: murmur2 of the key, else round-robin.
    pub fn pick_partition(&self, key: Option<&[u8]>, partitions: u32) -> u32 {
        match key {
            Some(key) => partition_for_key(key, partitions),
            None => self.inner.round_robin.fetch_add(1, Ordering::Relaxed) % partitions.max(1),
        }
    }

    /// Reads whole batches below the high watermark, waiting up to
    /// `max_wait` for `min_bytes`.
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; `OffsetOutOfRange` with the
    /// earliest offset and the high watermark; `Storage`.
    ///
    /// # Cancel safety
    /// Safe: a fetch only reads.
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResult> {
        self.check_open()?;
        self.await_topic(&request.topic).await;
        let p = self.readable_partition(&request.topic, request.partition)?;
        let deadline = tokio::time::Instant::now() + request.max_wait;
        let max_bytes = if request.max_bytes == 0 {
            1 << 20
        } else {
            request.max_bytes
        };
        let read = p
            .fetch(
                request.offset,
                max_bytes,
                request.min_bytes,
                deadline,
                &self.inner.shutdown,
            )
            .await
            .map_err(|e| Error::from_storage(&request.topic, request.partition, e))?;
        self.inner.metrics.record_fetch(read.data.len() as u64);
        Ok(FetchResult {
            records: read.data,
            next_offset: read.next_offset,
            high_watermark: p.high_watermark(),
            log_start_offset: read.log_start_offset,
        })
    }

    /// `(offset, timestamp)`: Earliest → log start, Latest → high watermark,
    /// Timestamp → the first record at or after it (`None` if there is none).
    ///
    /// # Errors
    /// `UnknownTopic`/`UnknownPartition`; `Storage`.
    pub fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<Option<(i64, i64)>> {
        let p = self.readable_partition(topic, partition)?;
        Ok(match spec {
            OffsetSpec::Earliest => Some((p.read_log().log_start_offset(), -1)),
            OffsetSpec::Latest => Some((p.high_watermark(), -1)),
            OffsetSpec::Timestamp(ts) => p
                .offset_for_timestamp(ts)
                .map_err(|e| Error::from_storage(topic, partition, e))?
                .map(|t| (t.offset, t.timestamp_ms)),
        })
    }
}

/// Decodes the records of fetched batches (a [`FetchResult`]'s `records`),
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

/// Encodes `records` as one batch, stamping missing timestamps with now.
pub(crate) fn build_batch(
    records: Vec<NewRecord>,
    compression: Compression,
) -> fjord_storage::Result<Bytes> {
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
    builder.build()
}
