//! `fjord group list|describe|reset-offsets|delete`.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use fjord_proto::v1::group_service_client::GroupServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use super::{ClientArgs, Output, status, table};

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups.
    List,
    /// Show a group's members, assignments, committed offsets and lag.
    Describe { group: String },
    /// Move a group's committed offsets on every partition of a topic
    /// (the group must have no members). Prints the plan; commits it only
    /// with `--execute`. Offsets outside a partition's log are clamped to
    /// its range.
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        to: ResetTarget,
        /// Commit the new offsets (without it: a dry run).
        #[arg(long)]
        execute: bool,
    },
    /// Delete a group without members and its committed offsets.
    Delete { group: String },
}

/// Where `reset-offsets` moves the group: exactly one of these.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ResetTarget {
    /// The start of each partition's log.
    #[arg(long)]
    to_earliest: bool,
    /// The end of each partition's log.
    #[arg(long)]
    to_latest: bool,
    /// This offset on every partition.
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// The first record at or after this time (ms since the epoch).
    #[arg(long, value_name = "MS")]
    to_timestamp: Option<i64>,
    /// This far from the committed offsets (negative: back).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
}

impl ResetTarget {
    fn to_pb(&self) -> (pb::ResetTo, i64) {
        match (self.to_offset, self.to_timestamp, self.shift_by) {
            (Some(o), _, _) => (pb::ResetTo::Offset, o),
            (_, Some(ms), _) => (pb::ResetTo::Timestamp, ms),
            (_, _, Some(n)) => (pb::ResetTo::ShiftBy, n),
            _ if self.to_latest => (pb::ResetTo::Latest, 0),
            _ => (pb::ResetTo::Earliest, 0),
        }
    }
}

/// Sends a call to the group's coordinator: in a cluster another node
/// answers UNAVAILABLE naming it (or saying it is loading the group), and
/// the call follows.
async fn at_coordinator<T, F, Fut>(client: &ClientArgs, mut call: F) -> Result<T>
where
    F: FnMut(GroupServiceClient<Channel>) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let mut groups = GroupServiceClient::new(client.connect().await?);
    let mut tries = 0;
    loop {
        match call(groups.clone()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(e) if super::is_not_leader(&e) && tries < 100 => {
                tries += 1;
                if let Some(addr) = super::leader_address(&e) {
                    groups = GroupServiceClient::new(client.at(&addr).connect().await?);
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => return Err(status(e)),
        }
    }
}

fn assignment(a: &[pb::TopicPartitions]) -> String {
    a.iter()
        .map(|tp| {
            format!(
                "{}:{}",
                tp.topic,
                tp.partitions
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every group: on a single node, the node's list; in a cluster, each
/// live node lists the groups it coordinates, so every node is asked.
async fn list_everywhere(
    client: &ClientArgs,
    groups: &mut GroupServiceClient<tonic::transport::Channel>,
) -> Result<pb::ListGroupsResponse> {
    let cluster = ClusterServiceClient::new(client.connect().await?)
        .status(pb::ClusterStatusRequest {})
        .await
        .map_err(status)?
        .into_inner();
    if cluster.cluster_id.is_empty() {
        return Ok(groups
            .list_groups(pb::ListGroupsRequest {})
            .await
            .map_err(status)?
            .into_inner());
    }
    let mut all = pb::ListGroupsResponse::default();
    for node in cluster.nodes.iter().filter(|n| n.live) {
        let mut at = GroupServiceClient::new(client.at(&node.address).connect().await?);
        let r = at
            .list_groups(pb::ListGroupsRequest {})
            .await
            .map_err(status)?
            .into_inner();
        all.groups.extend(r.groups);
    }
    all.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    all.groups.dedup_by(|a, b| a.group_id == b.group_id);
    Ok(all)
}

pub(crate) async fn run(client: &ClientArgs, command: GroupCommand) -> Result<()> {
    let mut groups = GroupServiceClient::new(client.connect().await?);
    match command {
        GroupCommand::List => {
            let r = list_everywhere(client, &mut groups).await?;
            if client.output == Output::Json {
                let v: Vec<_> = r
                    .groups
                    .iter()
                    .map(|g| json!({"group": g.group_id, "state": g.state, "members": g.members}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows: Vec<Vec<String>> = r
                    .groups
                    .iter()
                    .map(|g| vec![g.group_id.clone(), g.state.clone(), g.members.to_string()])
                    .collect();
                print!("{}", table::render(&["GROUP", "STATE", "MEMBERS"], &rows));
            }
        }
        GroupCommand::Describe { group } => {
            let request = pb::DescribeGroupRequest { group_id: group };
            let d = at_coordinator(client, |mut g| {
                let request = request.clone();
                async move { g.describe_group(request).await }
            })
            .await?;
            if client.output == Output::Json {
                println!(
                    "{}",
                    json!({
                        "group": d.group_id,
                        "state": d.state,
                        "generation": d.generation,
                        "members": d.members.iter().map(|m| json!({"member_id": m.member_id, "client_id": m.client_id, "assignment": assignment(&m.assignment)})).collect::<Vec<_>>(),
                        "offsets": d.offsets.iter().map(|o| json!({"topic": o.topic, "partition": o.partition, "committed": o.committed_offset, "log_end": o.log_end_offset, "lag": o.lag})).collect::<Vec<_>>(),
                    })
                );
                return Ok(());
            }
            println!(
                "group {}  state {}  generation {}",
                d.group_id, d.state, d.generation
            );
            let members: Vec<Vec<String>> = d
                .members
                .iter()
                .map(|m| {
                    vec![
                        m.member_id.clone(),
                        m.client_id.clone(),
                        assignment(&m.assignment),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["MEMBER", "CLIENT", "ASSIGNMENT"], &members)
            );
            let offsets: Vec<Vec<String>> = d
                .offsets
                .iter()
                .map(|o| {
                    vec![
                        o.topic.clone(),
                        o.partition.to_string(),
                        o.committed_offset.to_string(),
                        o.log_end_offset.to_string(),
                        o.lag.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"],
                    &offsets
                )
            );
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to,
            execute,
        } => {
            let (to, value) = to.to_pb();
            let request = pb::ResetOffsetsRequest {
                group_id: group.clone(),
                topic,
                to: to as i32,
                value,
                execute,
            };
            let r = at_coordinator(client, |mut g| {
                let request = request.clone();
                async move { g.reset_offsets(request).await }
            })
            .await?;
            print_reset(&group, &r, client.output);
        }
        GroupCommand::Delete { group } => {
            let request = pb::DeleteGroupRequest {
                group_id: group.clone(),
            };
            let r = at_coordinator(client, |mut g| {
                let request = request.clone();
                async move { g.delete_group(request).await }
            })
            .await?;
            if client.output == Output::Json {
                println!(
                    "{}",
                    json!({"deleted": group, "offsets_removed": r.offsets_removed})
                );
            } else {
                println!(
                    "deleted group {group} ({} committed offsets removed)",
                    r.offsets_removed
                );
            }
        }
    }
    Ok(())
}

/// Prints a reset's plan (or what it committed), as
/// `kafka-consumer-groups --reset-offsets` does.
fn print_reset(group: &str, r: &pb::ResetOffsetsResponse, output: Output) {
    let current = |o: i64| (o >= 0).then_some(o);
    if output == Output::Json {
        let partitions: Vec<_> = r
            .partitions
            .iter()
            .map(|p| {
                json!({"topic": p.topic, "partition": p.partition,
                "current": current(p.current_offset), "new": p.new_offset, "clamped": p.clamped})
            })
            .collect();
        println!(
            "{}",
            json!({"group": group, "executed": r.executed, "partitions": partitions})
        );
        return;
    }
    let rows: Vec<Vec<String>> = r
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                current(p.current_offset).map_or("-".into(), |o| o.to_string()),
                p.new_offset.to_string(),
                if p.clamped {
                    "clamped to the log's range".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", "NOTE"],
            &rows
        )
    );
    if r.executed {
        println!("group {group}: offsets committed");
    } else {
        println!("dry run: nothing changed (add --execute to commit these offsets)");
    }
}
