//! `fjord produce TOPIC`: one record per line of standard input.
//!
//! Lines are read as bytes (the newline is dropped; nothing else changes),
//! grouped into Kafka v2 batches per partition on the client, and sent with
//! one request in flight per partition, so records of a partition are stored
//! in the order they were read. A batch is sent when it holds
//! `--batch-size` records or 256 KiB, or when standard input has been quiet
//! for `--linger-ms`. Keys pick partitions with Kafka's murmur2; records
//! without a key stick to one partition per batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use fjord_broker::partition_for_key;
use fjord_proto::v1 as pb;
use fjord_proto::v1::produce_service_client::ProduceServiceClient;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use fjord_storage::{BatchBuilder, Compression, Record};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use fjord_broker::now_ms;

use super::{ClientArgs, MAX_MESSAGE, Output, status};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Codec {
    None,
    Zstd,
    Lz4,
}

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    topic: String,
    /// Key for every record.
    #[arg(long, conflicts_with = "key_separator")]
    key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Send every record to this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// 0: don't wait; 1: the leader has it; all: every in-sync replica has it.
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all"])]
    acks: String,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = Codec::None)]
    compression: Codec,
    /// Records per batch at most.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Send a partial batch once input is quiet this long.
    #[arg(long, default_value_t = 10)]
    linger_ms: u64,
}

const MAX_BATCH_BYTES: usize = 256 << 10;

struct Pending {
    builder: BatchBuilder,
    bytes: usize,
}

/// Counts shared with the sender tasks.
#[derive(Default)]
struct Progress {
    acknowledged: AtomicU64,
    batches: AtomicU64,
}

fn produce_client(channel: Channel) -> ProduceServiceClient<Channel> {
    ProduceServiceClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE)
        .max_decoding_message_size(MAX_MESSAGE)
}

/// How long a batch is retried while its partition has no reachable leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// Sends partition `partition`'s batches to its leader, in order. A batch
/// the server refused without storing it (not the leader, too few in-sync
/// replicas) is sent again, to the leader the metadata names now.
async fn sender(
    server: ClientArgs,
    topic: String,
    partition: u32,
    acks: pb::Acks,
    mut batches: mpsc::Receiver<(Bytes, u64)>,
    progress: Arc<Progress>,
) -> Result<()> {
    let mut client = None;
    while let Some((batch, records)) = batches.recv().await {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            match server.leader(&topic, partition).await {
                Ok(channel) => {
                    client.get_or_insert_with(|| produce_client(channel));
                    break;
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) if client.is_some() => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let Some(client) = client.as_mut() else {
            bail!("no leader for partition {partition}");
        };
        loop {
            let request = pb::ProduceRequest {
                topic: topic.clone(),
                acks: acks as i32,
                timeout_ms: 30_000,
                batches: vec![pb::PartitionBatch {
                    partition,
                    batch: batch.clone(),
                }],
                ..Default::default()
            };
            let refused = match client.produce(request).await {
                // The producer is idempotent: a batch sent again after an
                // unclear failure is stored once.
                Ok(response) => {
                    let failed = response
                        .into_inner()
                        .results
                        .into_iter()
                        .find(|r| r.error != pb::ErrorCode::ErrorNone as i32);
                    match failed {
                        None => break,
                        Some(r)
                            if r.error == pb::ErrorCode::ErrorNotLeader as i32
                                || r.error == pb::ErrorCode::ErrorNotEnoughReplicas as i32
                                || r.error == pb::ErrorCode::ErrorTimeout as i32 =>
                        {
                            format!("partition {}: {}", r.partition, r.error_message)
                        }
                        Some(r) => bail!("partition {}: {}", r.partition, r.error_message),
                    }
                }
                Err(e)
                    if matches!(
                        e.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Cancelled
                            | tonic::Code::Unknown
                    ) =>
                {
                    e.message().to_string()
                }
                Err(e) => return Err(status(e)),
            };
            if Instant::now() >= deadline {
                bail!("{refused}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(channel) = server.leader(&topic, partition).await {
                *client = produce_client(channel);
            }
        }
        progress.acknowledged.fetch_add(records, Ordering::Relaxed);
        progress.batches.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

pub(crate) async fn run(client: &ClientArgs, args: ProduceArgs) -> Result<()> {
    let channel = client.connect().await?;
    let described = TopicServiceClient::new(channel.clone())
        .describe_topic(pb::DescribeTopicRequest {
            name: args.topic.clone(),
            local_only: false,
        })
        .await
        .map_err(status)?
        .into_inner();
    let partitions = described.topic.map_or(0, |t| t.partitions.len() as u32);
    if partitions == 0 {
        bail!("topic {} has no partitions", args.topic);
    }
    if let Some(p) = args.partition
        && p >= partitions
    {
        bail!(
            "partition {p} does not exist: topic {} has {partitions}",
            args.topic
        );
    }
    let acks = match args.acks.as_str() {
        "0" => pb::Acks::None,
        "1" => pb::Acks::Leader,
        _ => pb::Acks::All,
    };
    let codec = match args.compression {
        Codec::None => Compression::None,
        Codec::Zstd => Compression::Zstd,
        Codec::Lz4 => Compression::Lz4,
    };
    let (producer_id, producer_epoch) = {
        let r = ProduceServiceClient::new(channel.clone())
            .init_producer_id(pb::InitProducerIdRequest {})
            .await
            .map_err(status)?
            .into_inner();
        (r.producer_id, r.producer_epoch as i16)
    };
    let progress = Arc::new(Progress::default());
    let mut out = Producer {
        producer_id,
        producer_epoch,
        sequences: vec![0; partitions as usize],
        server: client.clone(),
        topic: args.topic.clone(),
        acks,
        progress: Arc::clone(&progress),
        pending: (0..partitions).map(|_| None).collect(),
        senders: vec![None; partitions as usize],
        tasks: JoinSet::new(),
    };
    let mut sticky = 0u32;
    let started = Instant::now();
    let mut stdin = tokio::io::BufReader::with_capacity(1 << 20, tokio::io::stdin());
    let mut line = Vec::with_capacity(4096);
    let linger = Duration::from_millis(args.linger_ms.max(1));
    let mut read = 0u64;

    let outcome: Result<()> = async {
        loop {
            let n = match tokio::time::timeout(linger, stdin.read_until(b'\n', &mut line)).await {
                Ok(n) => n.context("read standard input")?,
                Err(_) => {
                    // Quiet input: send what is waiting.
                    out.flush_all().await?;
                    continue;
                }
            };
            if n == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            let text = std::mem::take(&mut line);
            let (key, value) = match (&args.key, &args.key_separator) {
                (Some(k), _) => (Some(Bytes::from(k.clone())), Bytes::from(text)),
                (None, Some(sep)) => match find(&text, sep.as_bytes()) {
                    Some(at) => (
                        Some(Bytes::copy_from_slice(&text[..at])),
                        Bytes::copy_from_slice(&text[at + sep.len()..]),
                    ),
                    None => (None, Bytes::from(text)),
                },
                (None, None) => (None, Bytes::from(text)),
            };
            let partition = match (args.partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, partitions),
                (None, None) => sticky,
            };
            let size = value.len() + key.as_ref().map_or(0, Bytes::len) + 16;
            let slot = out.pending[partition as usize].get_or_insert_with(|| Pending {
                builder: BatchBuilder::new(codec),
                bytes: 0,
            });
            slot.builder.add(Record::new(key, Some(value), now_ms()));
            slot.bytes += size;
            read += 1;
            if slot.builder.len() >= args.batch_size || slot.bytes >= MAX_BATCH_BYTES {
                out.flush(partition).await?;
                if args.partition.is_none() {
                    sticky = (sticky + 1) % partitions;
                }
            }
        }
        out.finish().await
    }
    .await;

    let acknowledged = progress.acknowledged.load(Ordering::Relaxed);
    let batches = progress.batches.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    if client.output == Output::Json {
        println!(
            "{}",
            json!({"topic": args.topic, "records": read, "acknowledged": acknowledged, "batches": batches, "seconds": seconds, "error": outcome.as_ref().err().map(|e| format!("{e:#}"))})
        );
    } else if outcome.is_ok() {
        eprintln!(
            "produced {acknowledged} records in {batches} batches to {} ({:.0} records/s)",
            args.topic,
            acknowledged as f64 / seconds.max(1e-9)
        );
    }
    outcome.with_context(|| {
        format!("{acknowledged} of {read} records were acknowledged before the failure")
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Pending batches and one sender task per partition.
struct Producer {
    producer_id: i64,
    producer_epoch: i16,
    /// Next sequence number per partition.
    sequences: Vec<i32>,
    server: ClientArgs,
    topic: String,
    acks: pb::Acks,
    progress: Arc<Progress>,
    pending: Vec<Option<Pending>>,
    senders: Vec<Option<mpsc::Sender<(Bytes, u64)>>>,
    tasks: JoinSet<Result<()>>,
}

impl Producer {
    /// Hands partition `p`'s pending batch to its sender task (starting it).
    async fn flush(&mut self, p: u32) -> Result<()> {
        let Some(batch) = self.pending[p as usize].take() else {
            return Ok(());
        };
        let records = batch.builder.len() as u64;
        let sequence = self.sequences[p as usize];
        self.sequences[p as usize] = sequence.wrapping_add(records as i32);
        let bytes = batch
            .builder
            .producer(self.producer_id, self.producer_epoch, sequence)
            .build()
            .context("encode batch")?;
        let sender = self.senders[p as usize].get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(4);
            let task = sender(
                self.server.clone(),
                self.topic.clone(),
                p,
                self.acks,
                rx,
                Arc::clone(&self.progress),
            );
            self.tasks.spawn(task);
            tx
        });
        if sender.send((bytes, records)).await.is_err() {
            // The task stopped: its error is the one to report.
            self.join_all().await?;
            bail!("the sender for partition {p} stopped");
        }
        Ok(())
    }

    async fn flush_all(&mut self) -> Result<()> {
        for p in 0..self.pending.len() as u32 {
            self.flush(p).await?;
        }
        Ok(())
    }

    async fn join_all(&mut self) -> Result<()> {
        while let Some(done) = self.tasks.join_next().await {
            done.map_err(|e| anyhow!("sender task failed: {e}"))??;
        }
        Ok(())
    }

    /// Sends what is pending and waits for every acknowledgement.
    async fn finish(&mut self) -> Result<()> {
        self.flush_all().await?;
        self.senders.clear();
        self.join_all().await
    }
}
