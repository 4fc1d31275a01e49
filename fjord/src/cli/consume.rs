//! `fjord consume TOPIC`: print records, one per line.
//!
//! Each partition is fetched by its own task (long-poll `Fetch`, batches
//! decoded on the client); one printer writes what they find. Without
//! `--follow` a partition stops at the high watermark it had when the
//! command started, and the command exits when all have. With `--group` the
//! command joins the group, reads the partitions assigned to it from the
//! committed offsets, commits what it printed (every second and on exit),
//! heartbeats, and rejoins when the group rebalances.
//!
//! # Errors
//! `--offset N` must lie in every partition read (log start ≤ N ≤ end):
//! before anything is read, an offset past a partition's end or below its
//! log start is refused with the partition, its log start and its end.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::Args;
use fjord_proto::v1 as pb;
use fjord_proto::v1::fetch_service_client::FetchServiceClient;
use fjord_proto::v1::group_service_client::GroupServiceClient;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use fjord_storage::{Record, RecordBatch};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::{ClientArgs, MAX_MESSAGE, Output, status};

#[derive(Debug, Clone, Args)]
pub(crate) struct ConsumeArgs {
    topic: String,
    /// Start at the earliest offset (default: the latest).
    #[arg(long)]
    from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long, conflicts_with_all = ["from_beginning", "timestamp"])]
    offset: Option<i64>,
    /// Start at the first record with a timestamp ≥ T (ms since the epoch).
    #[arg(long, value_name = "T", conflicts_with = "from_beginning")]
    timestamp: Option<i64>,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Consume as a member of this consumer group (offsets are committed).
    #[arg(long, conflicts_with_all = ["offset", "partition"])]
    group: Option<String>,
    /// Keep waiting for new records instead of exiting at the end.
    #[arg(long)]
    pub(super) follow: bool,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Print `key<TAB>value`.
    #[arg(long)]
    print_key: bool,
    /// Print `partition:offset<TAB>` first.
    #[arg(long)]
    print_offset: bool,
}

/// A chunk of records of one partition, for the printer.
pub(super) struct Chunk {
    partition: u32,
    records: Vec<Record>,
}

#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) server: ClientArgs,
    pub(super) fetch: FetchServiceClient<Channel>,
    pub(super) topic: String,
    pub(super) follow: bool,
}

pub(super) async fn list_offset(
    fetch: &mut FetchServiceClient<Channel>,
    topic: &str,
    partition: u32,
    spec: pb::OffsetSpec,
    ts: i64,
) -> Result<i64> {
    let r = fetch
        .list_offsets(pb::ListOffsetsRequest {
            topic: topic.into(),
            partition,
            spec: spec as i32,
            timestamp_ms: ts,
        })
        .await
        .map_err(status)?
        .into_inner();
    Ok(r.offset)
}

impl Ctx {
    /// Aims the fetch client at the leader of `partition`.
    pub(super) async fn aim_at_leader(&mut self, partition: u32) -> Result<()> {
        let channel = self.server.leader(&self.topic, partition).await?;
        self.fetch = FetchServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        Ok(())
    }

    /// After a "not the leader" answer: aims at the leader that answer
    /// named (the node asked first may not have heard of the move yet),
    /// else at the leader `--server` names.
    pub(super) async fn follow_leader(&mut self, partition: u32, e: &tonic::Status) -> Result<()> {
        if let Some(addr) = super::leader_address(e)
            && let Ok(channel) = self.server.at(&addr).connect().await
        {
            self.fetch = FetchServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
            return Ok(());
        }
        self.aim_at_leader(partition).await
    }
}

impl Ctx {
    /// The partition's log start and end (the next offset), at its leader.
    pub(super) async fn bounds(&mut self, partition: u32) -> Result<(i64, i64)> {
        let start = self
            .offset_at_leader(partition, pb::OffsetSpec::Earliest, 0)
            .await?;
        let end = self
            .offset_at_leader(partition, pb::OffsetSpec::Latest, 0)
            .await?;
        Ok((start, end))
    }

    /// `ListOffsets` at the partition's leader, following it while
    /// leadership moves or a new leader catches up (for up to 30 s).
    pub(super) async fn offset_at_leader(
        &mut self,
        partition: u32,
        spec: pb::OffsetSpec,
        ts: i64,
    ) -> Result<i64> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        self.aim_at_leader(partition).await?;
        loop {
            let asked = self
                .fetch
                .list_offsets(pb::ListOffsetsRequest {
                    topic: self.topic.clone(),
                    partition,
                    spec: spec as i32,
                    timestamp_ms: ts,
                })
                .await;
            match asked {
                Ok(r) => return Ok(r.into_inner().offset),
                Err(e) if super::is_not_leader(&e) && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    self.follow_leader(partition, &e).await?;
                }
                Err(e) => return Err(status(e)),
            }
        }
    }
}

/// Where a partition's read starts, and what decided it (in words, for
/// the report of a group member).
pub(super) struct Start {
    pub(super) offset: i64,
    pub(super) from: String,
}

/// Where a partition starts without a committed offset: `--offset`,
/// `--timestamp` (the latest offset when no record is that recent),
/// `--from-beginning` (the earliest), or else the latest.
pub(super) async fn start_offset(
    ctx: &mut Ctx,
    args: &ConsumeArgs,
    partition: u32,
) -> Result<Start> {
    if let Some(offset) = args.offset {
        ctx.aim_at_leader(partition).await?;
        let from = format!("offset {offset}");
        return Ok(Start { offset, from });
    }
    if let Some(ts) = args.timestamp {
        let offset = ctx
            .offset_at_leader(partition, pb::OffsetSpec::Timestamp, ts)
            .await?;
        if offset >= 0 {
            let from = format!("timestamp {ts} ({offset})");
            return Ok(Start { offset, from });
        }
    } else if args.from_beginning {
        let offset = ctx
            .offset_at_leader(partition, pb::OffsetSpec::Earliest, 0)
            .await?;
        let from = format!("earliest ({offset})");
        return Ok(Start { offset, from });
    }
    let offset = ctx
        .offset_at_leader(partition, pb::OffsetSpec::Latest, 0)
        .await?;
    let from = match args.timestamp {
        Some(ts) => format!("latest ({offset}): no record at or after timestamp {ts}"),
        None => format!("latest ({offset})"),
    };
    Ok(Start { offset, from })
}

/// Why `offset` cannot start a read of `partition`, whose log holds
/// `log_start..end`: past its end, or below its log start (gone to
/// retention). `None` when it can (`end` itself is the next record's).
pub(super) fn outside_log(partition: u32, offset: i64, log_start: i64, end: i64) -> Option<String> {
    if offset > end {
        Some(format!(
            "partition {partition}: offset {offset} is past the end of the partition (log start {log_start}, end {end})"
        ))
    } else if offset < log_start {
        let gone = if log_start > 0 {
            ": the records below it are gone (retention); --from-beginning starts at the log start"
        } else {
            ""
        };
        Some(format!(
            "partition {partition}: offset {offset} is below the log start (log start {log_start}, end {end}){gone}"
        ))
    } else {
        None
    }
}

/// Fetches one partition from `offset` to `end` (or forever) into `out`.
pub(super) async fn fetch_partition(
    mut ctx: Ctx,
    partition: u32,
    mut offset: i64,
    end: Option<i64>,
    out: mpsc::Sender<Chunk>,
    stop: CancellationToken,
) -> Result<()> {
    ctx.aim_at_leader(partition).await?;
    let mut leader_wait: Option<std::time::Instant> = None;
    loop {
        if end.is_some_and(|end| offset >= end) {
            return Ok(());
        }
        let request = pb::FetchRequest {
            topic: ctx.topic.clone(),
            partition,
            offset,
            max_bytes: 1 << 20,
            max_wait_ms: if ctx.follow { 1000 } else { 200 },
            min_bytes: 1,
            decode: false,
        };
        let response = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = ctx.fetch.fetch(request) => r,
        };
        let response = match response {
            Ok(r) => r.into_inner(),
            Err(e) if e.code() == tonic::Code::OutOfRange => {
                let earliest = list_offset(
                    &mut ctx.fetch,
                    &ctx.topic,
                    partition,
                    pb::OffsetSpec::Earliest,
                    0,
                )
                .await?;
                if offset < earliest {
                    eprintln!(
                        "warning: partition {partition}: offset {offset} is gone (retention); continuing at {earliest}"
                    );
                    offset = earliest;
                    continue;
                }
                return Err(status(e));
            }
            Err(e) if super::is_not_leader(&e) => {
                // Leadership moved: find the new leader (for a while).
                let since = *leader_wait.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > std::time::Duration::from_secs(30) {
                    return Err(status(e));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let _ = ctx.follow_leader(partition, &e).await;
                continue;
            }
            Err(e) => return Err(status(e)),
        };
        leader_wait = None;
        let mut records = Vec::new();
        for batch in RecordBatch::iter_batches(response.records) {
            let batch =
                batch.with_context(|| format!("partition {partition}: a batch does not decode"))?;
            records.extend(
                batch
                    .records()?
                    .into_iter()
                    .filter(|r| r.offset >= offset && end.is_none_or(|e| r.offset < e)),
            );
        }
        offset = offset.max(response.next_offset);
        if !records.is_empty() && out.send(Chunk { partition, records }).await.is_err() {
            return Ok(());
        }
        if !ctx.follow && response.next_offset >= response.high_watermark && end.is_none() {
            return Ok(());
        }
    }
}

/// Printed positions (next offset per partition), for commits.
pub(super) type Positions = Arc<Mutex<BTreeMap<u32, i64>>>;

fn print_chunk(
    out: &mut impl Write,
    args: &ConsumeArgs,
    json_out: bool,
    chunk: &Chunk,
    left: &mut Option<u64>,
) -> std::io::Result<bool> {
    for r in &chunk.records {
        if *left == Some(0) {
            return Ok(false);
        }
        if json_out {
            let text = |b: &Option<bytes::Bytes>| {
                b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
            };
            let line = json!({"partition": chunk.partition, "offset": r.offset, "timestamp": r.timestamp_ms, "key": text(&r.key), "value": text(&r.value)});
            writeln!(out, "{line}")?;
        } else {
            if args.print_offset {
                write!(out, "{}:{}\t", chunk.partition, r.offset)?;
            }
            if args.print_key {
                out.write_all(r.key.as_deref().unwrap_or(b"null"))?;
                out.write_all(b"\t")?;
            }
            out.write_all(r.value.as_deref().unwrap_or(b""))?;
            out.write_all(b"\n")?;
        }
        if let Some(n) = left {
            *n -= 1;
        }
    }
    Ok(true)
}

pub(crate) async fn run(client: &ClientArgs, args: ConsumeArgs) -> Result<()> {
    let channel = client.connect().await?;
    let topic = TopicServiceClient::new(channel.clone())
        .describe_topic(pb::DescribeTopicRequest {
            name: args.topic.clone(),
            local_only: false,
        })
        .await
        .map_err(status)?
        .into_inner()
        .topic
        .context("the server described no topic")?;
    let all: Vec<u32> = topic.partitions.iter().map(|p| p.partition).collect();
    if let Some(p) = args.partition
        && !all.contains(&p)
    {
        bail!(
            "partition {p} does not exist: topic {} has {}",
            args.topic,
            all.len()
        );
    }
    let ctx = Ctx {
        server: client.clone(),
        fetch: FetchServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
        topic: args.topic.clone(),
        follow: args.follow,
    };
    let (tx, mut rx) = mpsc::channel::<Chunk>(16);
    let stop = CancellationToken::new();
    let positions: Positions = Arc::default();
    let json_out = client.output == Output::Json;

    // The printer runs here; the fetchers (and the group session) in tasks.
    let driver = {
        let (args, ctx, stop, positions) = (
            args.clone(),
            ctx.clone(),
            stop.clone(),
            Arc::clone(&positions),
        );
        let groups = GroupServiceClient::new(channel);
        tokio::spawn(async move {
            let result = match &args.group {
                Some(group) => {
                    super::consume_group::run_group(
                        ctx,
                        &args,
                        group.clone(),
                        groups,
                        tx,
                        stop.clone(),
                        positions,
                    )
                    .await
                }
                None => {
                    let wanted = args.partition.map_or(all, |p| vec![p]);
                    run_plain(ctx, &args, wanted, tx, stop.clone())
                        .await
                        .map(|()| None)
                }
            };
            stop.cancel();
            result
        })
    };

    let mut left = args.max_messages;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(chunk) = rx.recv().await {
        let last = chunk.records.last().map(|r| r.offset);
        match print_chunk(&mut stdout, &args, json_out, &chunk, &mut left)
            .and_then(|more| stdout.flush().map(|_| more))
        {
            Ok(true) => {}
            Ok(false) => break,
            // A closed pipe (`| head`) ends the command quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("write standard output"),
        }
        if let (Some(last), Ok(mut p)) = (last, positions.lock()) {
            p.insert(chunk.partition, last + 1);
        }
        if left == Some(0) {
            break;
        }
    }
    stop.cancel();
    drop(rx);
    drop(stdout);
    let finished = driver.await.context("consumer task failed")??;
    // Everything printed is final now: commit it and leave the group.
    if let Some(session) = finished {
        let mut groups = session.groups;
        super::consume_group::commit(
            &mut groups,
            &args.topic,
            &session.group,
            &session.member,
            session.generation,
            &positions,
            &session.assigned,
        )
        .await?;
        let _ = groups
            .leave_group(pb::LeaveGroupRequest {
                group_id: session.group,
                member_id: session.member,
            })
            .await;
    }
    Ok(())
}

async fn run_plain(
    mut ctx: Ctx,
    args: &ConsumeArgs,
    partitions: Vec<u32>,
    tx: mpsc::Sender<Chunk>,
    stop: CancellationToken,
) -> Result<()> {
    // Every partition's start is checked before any is read.
    let mut reads = Vec::new();
    let mut outside = Vec::new();
    for p in partitions {
        if let Some(offset) = args.offset {
            let (log_start, end) = ctx.bounds(p).await?;
            if let Some(why) = outside_log(p, offset, log_start, end) {
                outside.push(why);
                continue;
            }
        }
        let start = start_offset(&mut ctx, args, p).await?.offset;
        let end = if args.follow {
            None
        } else {
            Some(list_offset(&mut ctx.fetch, &ctx.topic, p, pb::OffsetSpec::Latest, 0).await?)
        };
        reads.push((p, start, end));
    }
    if !outside.is_empty() {
        bail!("{}", outside.join("; "));
    }
    let mut tasks = JoinSet::new();
    for (p, start, end) in reads {
        tasks.spawn(fetch_partition(
            ctx.clone(),
            p,
            start,
            end,
            tx.clone(),
            stop.clone(),
        ));
    }
    drop(tx);
    while let Some(done) = tasks.join_next().await {
        done.context("fetch task failed")??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::outside_log;

    #[test]
    fn an_offset_from_the_log_start_to_the_end_starts_a_read() {
        assert_eq!(outside_log(0, 5, 5, 9), None);
        assert_eq!(outside_log(0, 9, 5, 9), None);
        assert_eq!(outside_log(0, 0, 0, 0), None);
    }

    #[test]
    fn an_offset_past_the_end_names_the_partition_its_start_and_end() {
        assert_eq!(
            outside_log(2, 10, 0, 3).as_deref(),
            Some("partition 2: offset 10 is past the end of the partition (log start 0, end 3)")
        );
    }

    #[test]
    fn an_offset_below_the_log_start_says_the_records_are_gone() {
        assert_eq!(
            outside_log(1, 2, 5, 9).as_deref(),
            Some(
                "partition 1: offset 2 is below the log start (log start 5, end 9): the records below it are gone (retention); --from-beginning starts at the log start"
            )
        );
        assert_eq!(
            outside_log(0, -1, 0, 4).as_deref(),
            Some("partition 0: offset -1 is below the log start (log start 0, end 4)")
        );
    }
}
