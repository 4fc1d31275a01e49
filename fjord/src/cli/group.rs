//! `fjord group list|describe`.

use anyhow::Result;
use clap::Subcommand;
use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use fjord_proto::v1::group_service_client::GroupServiceClient;
use serde_json::json;

use super::{ClientArgs, Output, status, table};

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups.
    List,
    /// Show a group's members, assignments, committed offsets and lag.
    Describe { group: String },
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
            // In a cluster, the group's coordinator answers: follow it while
            // it moves or loads the group's commits.
            let mut tries = 0;
            let d = loop {
                match groups.describe_group(request.clone()).await {
                    Ok(d) => break d.into_inner(),
                    Err(e) if super::is_not_leader(&e) && tries < 100 => {
                        tries += 1;
                        if let Some(addr) = super::leader_address(&e) {
                            groups = GroupServiceClient::new(client.at(&addr).connect().await?);
                        } else {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                    Err(e) => return Err(status(e)),
                }
            };
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
    }
    Ok(())
}
