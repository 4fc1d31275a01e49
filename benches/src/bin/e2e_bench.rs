//! End-to-end benchmark: produce → fetch through the gRPC API on loopback.
//!
//! Starts a real `fjord serve` (the `fjord` binary next to this program, or
//! `--fjord-bin`) on ephemeral ports, creates a one-partition topic per run,
//! and runs one producer (batches of `--batch-records` 1 KiB records, up to
//! `--inflight` requests in flight, acks=1) and one consumer (long-poll
//! `Fetch`, batches decoded client-side). Every record carries its send time;
//! the consumer records send → receive latency. Two loads: as fast as
//! possible, and paced at `--rate` records/s (latency without queueing).
//!
//! ```text
//! cargo build --release -p fjord -p fjord-benches
//! target/release/e2e_bench
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use fjord_benches::stats::median;
use fjord_proto::v1::fetch_service_client::FetchServiceClient;
use fjord_proto::v1::produce_service_client::ProduceServiceClient;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use fjord_proto::v1::{Acks, CreateTopicRequest, FetchRequest, PartitionBatch, ProduceRequest};
use fjord_storage::{BatchBuilder, Compression, Record, RecordBatch};
use fjord_testkit::{Node, fjord_binary};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tonic::transport::Channel;

#[derive(Parser, Debug, Clone)]
#[command(about = "Produce → fetch records/s and latency through Fjord's gRPC API")]
struct Args {
    /// The fjord binary (default: next to this program).
    #[arg(long)]
    fjord_bin: Option<PathBuf>,
    /// Where the server's data directory is made (a real disk).
    #[arg(long, default_value = "target/bench-data")]
    dir: PathBuf,
    /// Records per run.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records per produce request.
    #[arg(long, default_value_t = 32)]
    batch_records: usize,
    /// Produce requests in flight.
    #[arg(long, default_value_t = 8)]
    inflight: usize,
    /// Paced load for the latency figure, records/s.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Runs per load; medians are printed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Extra flags for `fjord serve` (e.g. --flush-policy os).
    #[arg(long, allow_hyphen_values = true, num_args = 1..)]
    serve_arg: Vec<String>,
}

struct RunFigures {
    records_per_s: f64,
    p50_us: u64,
    p99_us: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = fjord_binary(args.fjord_bin.as_deref())?;
    let server = Node::builder(binary)
        .temp_data_in(&args.dir)
        .log(args.dir.join("e2e_bench-server.log"))
        .log_level("warn")
        .flags(args.serve_arg.iter().cloned())
        .start()?;
    let channel = Channel::from_shared(format!("http://{}", server.grpc()))?
        .connect()
        .await?;
    println!(
        "server {} ({}), {} records x {} B per run, batches of {}, {} in flight, {} runs",
        server.grpc(),
        if args.serve_arg.is_empty() {
            "default flush policy".to_string()
        } else {
            args.serve_arg.join(" ")
        },
        args.records,
        args.record_size,
        args.batch_records,
        args.inflight,
        args.runs
    );

    for (label, rate) in [("max throughput", None), ("paced", Some(args.rate))] {
        let mut figures = Vec::new();
        for run in 0..args.runs {
            let topic = format!(
                "bench-{}-{run}",
                if rate.is_some() { "paced" } else { "max" }
            );
            figures.push(run_once(&args, channel.clone(), &topic, rate).await?);
        }
        let rps = median(&figures.iter().map(|f| f.records_per_s).collect::<Vec<_>>());
        let p50 = median(&figures.iter().map(|f| f.p50_us as f64).collect::<Vec<_>>());
        let p99 = median(&figures.iter().map(|f| f.p99_us as f64).collect::<Vec<_>>());
        let rate_note = rate.map(|r| format!(" at {r} rec/s")).unwrap_or_default();
        println!(
            "{label:15}{rate_note}: {rps:10.0} records/s ({:.1} MiB/s) | latency p50 {:.2} ms, p99 {:.2} ms",
            rps * args.record_size as f64 / (1024.0 * 1024.0),
            p50 / 1000.0,
            p99 / 1000.0
        );
    }
    if let Some(rss) = server.rss_bytes() {
        println!(
            "server resident memory after the runs: {:.1} MiB",
            rss as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}

async fn run_once(
    args: &Args,
    channel: Channel,
    topic: &str,
    rate: Option<u64>,
) -> Result<RunFigures> {
    TopicServiceClient::new(channel.clone())
        .create_topic(CreateTopicRequest {
            name: topic.to_string(),
            partitions: 1,
            replication_factor: 1,
            configs: Default::default(),
        })
        .await
        .context("create topic")?;
    let base = Instant::now();
    let consumer = tokio::spawn(consume(
        channel.clone(),
        topic.to_string(),
        args.records,
        base,
    ));
    let start = Instant::now();
    produce(args, channel, topic, rate, base).await?;
    let histogram = consumer.await??;
    let elapsed = start.elapsed().as_secs_f64();
    Ok(RunFigures {
        records_per_s: args.records as f64 / elapsed,
        p50_us: histogram.value_at_quantile(0.50),
        p99_us: histogram.value_at_quantile(0.99),
    })
}

/// Value: 8 bytes of send time (µs since `base`) then filler.
fn record_value(base: Instant, size: usize) -> Bytes {
    let mut value = BytesMut::with_capacity(size.max(8));
    value.put_u64(base.elapsed().as_micros() as u64);
    value.resize(size.max(8), b'x');
    value.freeze()
}

async fn produce(
    args: &Args,
    channel: Channel,
    topic: &str,
    rate: Option<u64>,
    base: Instant,
) -> Result<()> {
    let client = ProduceServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut inflight = JoinSet::new();
    let batches = args.records.div_ceil(args.batch_records as u64);
    let interval = rate.map(|r| Duration::from_secs_f64(args.batch_records as f64 / r as f64));
    let start = Instant::now();
    let topic: Arc<str> = topic.into();
    let mut left = args.records;
    for i in 0..batches {
        if let Some(interval) = interval {
            tokio::time::sleep_until((start + interval * i as u32).into()).await;
        }
        while inflight.len() >= args.inflight {
            finish(inflight.join_next().await)?;
        }
        let n = left.min(args.batch_records as u64);
        left -= n;
        let mut builder = BatchBuilder::new(Compression::None);
        for _ in 0..n {
            builder.add(Record::new(
                None,
                Some(record_value(base, args.record_size)),
                0,
            ));
        }
        let request = ProduceRequest {
            topic: topic.to_string(),
            acks: Acks::Leader as i32,
            timeout_ms: 30_000,
            batches: vec![PartitionBatch {
                partition: 0,
                batch: builder.build()?,
            }],
            ..Default::default()
        };
        let mut client = client.clone();
        inflight.spawn(async move {
            let response = client.produce(request).await?.into_inner();
            for result in response.results {
                if result.error != 0 {
                    bail!("produce failed: {}", result.error_message);
                }
            }
            Ok(())
        });
    }
    while let Some(done) = inflight.join_next().await {
        finish(Some(done))?;
    }
    Ok(())
}

fn finish(done: Option<Result<Result<()>, tokio::task::JoinError>>) -> Result<()> {
    match done {
        Some(result) => result?,
        None => Ok(()),
    }
}

async fn consume(
    channel: Channel,
    topic: String,
    records: u64,
    base: Instant,
) -> Result<Histogram<u64>> {
    let mut client = FetchServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut offset, mut seen) = (0i64, 0u64);
    while seen < records {
        let response = client
            .fetch(FetchRequest {
                topic: topic.clone(),
                partition: 0,
                offset,
                max_bytes: 1 << 20,
                max_wait_ms: 500,
                min_bytes: 1,
                decode: false,
            })
            .await?
            .into_inner();
        let now = base.elapsed().as_micros() as u64;
        for batch in RecordBatch::iter_batches(response.records) {
            for record in batch?.records()? {
                if record.offset < offset {
                    continue;
                }
                let value = record.value.unwrap_or_default();
                let sent = value
                    .get(..8)
                    .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
                histogram.saturating_record(now.saturating_sub(sent.unwrap_or(now)).max(1));
                seen += 1;
            }
        }
        offset = offset.max(response.next_offset);
    }
    Ok(histogram)
}
