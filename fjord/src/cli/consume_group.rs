//! The `--group` side of `fjord consume`: join, read the assigned
//! partitions from the committed offsets, heartbeat, commit, and rejoin when
//! the group rebalances.
//!
//! Where each assigned partition starts follows Kafka's
//! `auto.offset.reset`: the group's committed offset wins; a partition
//! without one (or whose committed offset is no longer in the log) starts
//! at the earliest offset with `--from-beginning`, at `--timestamp`, or
//! else at the latest. Each partition's start is printed on stderr, so a
//! `--from-beginning` that commits override is never a surprise.

use std::time::Duration;

use anyhow::{Context, Result};
use fjord_proto::v1 as pb;
use fjord_proto::v1::group_service_client::GroupServiceClient;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::consume::{Chunk, ConsumeArgs, Ctx, Positions, fetch_partition, start_offset};
use super::status;

/// The group session a consume ended in, for the final commit.
pub(super) struct Finished {
    pub(super) groups: GroupServiceClient<Channel>,
    pub(super) group: String,
    pub(super) member: String,
    pub(super) generation: i32,
    pub(super) assigned: Vec<u32>,
}

pub(super) async fn commit(
    groups: &mut GroupServiceClient<Channel>,
    topic: &str,
    group: &str,
    member: &str,
    generation: i32,
    positions: &Positions,
    assigned: &[u32],
) -> Result<()> {
    let offsets: Vec<pb::OffsetCommit> = {
        let p = positions
            .lock()
            .map_err(|_| anyhow::anyhow!("positions lock poisoned"))?;
        assigned
            .iter()
            .filter_map(|part| {
                p.get(part).map(|o| pb::OffsetCommit {
                    topic: topic.into(),
                    partition: *part,
                    offset: *o,
                    metadata: String::new(),
                })
            })
            .collect()
    };
    if offsets.is_empty() {
        return Ok(());
    }
    groups
        .commit_offsets(pb::CommitOffsetsRequest {
            group_id: group.into(),
            member_id: member.into(),
            generation,
            offsets,
        })
        .await
        .map_err(status)?;
    Ok(())
}

/// After a "not the coordinator" answer: waits a moment, then aims at the
/// coordinator it named (or retries the same node while it loads).
async fn follow_coordinator(
    ctx: &Ctx,
    groups: GroupServiceClient<Channel>,
    e: &tonic::Status,
) -> Result<GroupServiceClient<Channel>> {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    Ok(match super::leader_address(e) {
        Some(addr) => GroupServiceClient::new(ctx.server.at(&addr).connect().await?),
        None => groups,
    })
}

/// Where assigned partition `p` starts, given the group's committed
/// offset (`auto.offset.reset` semantics, see the module header); says
/// which on stderr.
async fn group_start(
    ctx: &mut Ctx,
    args: &ConsumeArgs,
    p: u32,
    committed: Option<i64>,
) -> Result<i64> {
    let Some(offset) = committed else {
        let start = start_offset(ctx, args, p).await?;
        eprintln!(
            "partition {p}: no committed offset, starting at {}",
            start.from
        );
        return Ok(start.offset);
    };
    let (log_start, end) = ctx.bounds(p).await?;
    if (log_start..=end).contains(&offset) {
        eprintln!("partition {p}: committed offset {offset}");
        return Ok(offset);
    }
    let start = start_offset(ctx, args, p).await?;
    eprintln!(
        "partition {p}: committed offset {offset} is outside the log (log start {log_start}, end {end}), starting at {}",
        start.from
    );
    Ok(start.offset)
}

pub(super) async fn run_group(
    mut ctx: Ctx,
    args: &ConsumeArgs,
    group: String,
    mut groups: GroupServiceClient<Channel>,
    tx: mpsc::Sender<Chunk>,
    stop: CancellationToken,
    positions: Positions,
) -> Result<Option<Finished>> {
    let mut member = String::new();
    let mut redirects = 0;
    loop {
        let joined = groups
            .join_group(pb::JoinGroupRequest {
                group_id: group.clone(),
                member_id: member.clone(),
                client_id: "fjord-cli".into(),
                topics: vec![ctx.topic.clone()],
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 0,
            })
            .await;
        let joined = match joined {
            Ok(joined) => joined.into_inner(),
            // In a cluster the group's coordinator answers: go there.
            Err(e) if super::is_not_leader(&e) && redirects < 50 => {
                redirects += 1;
                groups = follow_coordinator(&ctx, groups, &e).await?;
                continue;
            }
            Err(e) => return Err(status(e)),
        };
        member = joined.member_id.clone();
        let assigned: Vec<u32> = joined
            .assignment
            .iter()
            .filter(|tp| tp.topic == ctx.topic)
            .flat_map(|tp| tp.partitions.clone())
            .collect();
        let request = pb::FetchOffsetsRequest {
            group_id: group.clone(),
            partitions: vec![pb::TopicPartitions {
                topic: ctx.topic.clone(),
                partitions: assigned.clone(),
            }],
        };
        let committed = match groups.fetch_offsets(request).await {
            Ok(committed) => committed.into_inner(),
            // The coordinator moved or is still loading the group's
            // commits: join again there.
            Err(e) if super::is_not_leader(&e) && redirects < 50 => {
                redirects += 1;
                groups = follow_coordinator(&ctx, groups, &e).await?;
                continue;
            }
            Err(e) => return Err(status(e)),
        };
        let session = stop.child_token();
        let mut tasks = JoinSet::new();
        for &p in &assigned {
            let from_commit = committed
                .offsets
                .iter()
                .find(|o| o.partition == p && o.offset >= 0)
                .map(|o| o.offset);
            let start = group_start(&mut ctx, args, p, from_commit).await?;
            let end = if args.follow {
                None
            } else {
                Some(ctx.offset_at_leader(p, pb::OffsetSpec::Latest, 0).await?)
            };
            // The position of every assigned partition is committed, read or not.
            if let Ok(mut positions) = positions.lock() {
                positions.insert(p, start);
            }
            tasks.spawn(fetch_partition(
                ctx.clone(),
                p,
                start,
                end,
                tx.clone(),
                session.clone(),
            ));
        }
        let mut beat = tokio::time::interval(Duration::from_millis(u64::from(
            joined.heartbeat_interval_ms.clamp(100, 3000),
        )));
        let mut rebalance = false;
        let mut fetchers_done = assigned.is_empty() && !args.follow;
        while !fetchers_done {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = beat.tick() => {
                    commit(&mut groups, &ctx.topic, &group, &member, joined.generation, &positions, &assigned).await?;
                    let hb = groups.heartbeat(pb::HeartbeatRequest { group_id: group.clone(), member_id: member.clone(), generation: joined.generation }).await;
                    match hb {
                        Ok(r) if r.get_ref().rebalance => { rebalance = true; break; }
                        Ok(_) => {}
                        Err(e) if e.code() == tonic::Code::FailedPrecondition => { rebalance = true; break; }
                        Err(e) => return Err(status(e)),
                    }
                }
                done = tasks.join_next() => match done {
                    Some(result) => result.context("fetch task failed")??,
                    None => fetchers_done = !args.follow,
                },
            }
        }
        session.cancel();
        while let Some(done) = tasks.join_next().await {
            done.context("fetch task failed")??;
        }
        if !rebalance {
            return Ok(Some(Finished {
                groups,
                group,
                member,
                generation: joined.generation,
                assigned,
            }));
        }
        // Commit what was printed before rejoining (records still queued
        // for the printer may be read again by the next owner).
        let _ = commit(
            &mut groups,
            &ctx.topic,
            &group,
            &member,
            joined.generation,
            &positions,
            &assigned,
        )
        .await;
    }
}
