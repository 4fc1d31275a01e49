//! `fjord cluster status|add-node|drain-node|remove-node|reassign|rebalance`.

use anyhow::{Result, bail};
use clap::Subcommand;
use fjord_proto::v1 as pb;
use fjord_proto::v1::cluster_service_client::ClusterServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use super::{ClientArgs, Output, status, table};

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Nodes, roles, the controller, liveness and under-replicated partitions.
    Status,
    /// How to add a node: start it with `fjord serve --join <any node>`.
    AddNode {
        /// The new node's id.
        #[arg(long)]
        node_id: u64,
    },
    /// Move every replica and all leadership off a node.
    DrainNode { node_id: u64 },
    /// Remove a drained node from the cluster.
    RemoveNode { node_id: u64 },
    /// Move one partition to a new replica list (first = preferred leader).
    Reassign {
        topic: String,
        partition: u32,
        /// Comma-separated node ids, e.g. `2,3,4`.
        replicas: String,
    },
    /// Even out replicas and leaders over the live nodes.
    Rebalance,
}

fn ids(list: &[u64]) -> String {
    list.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The cluster as the node at `--server` sees it.
async fn fetch_status(client: &ClientArgs) -> Result<pb::ClusterStatusResponse> {
    Ok(ClusterServiceClient::new(client.connect().await?)
        .status(pb::ClusterStatusRequest {})
        .await
        .map_err(status)?
        .into_inner())
}

/// A client of the controller: scaling operations are sent there.
async fn controller(client: &ClientArgs) -> Result<ClusterServiceClient<Channel>> {
    let Some(at) = client.controller().await? else {
        bail!(
            "the node at {} runs as a single node, not in a cluster",
            client.server
        );
    };
    Ok(ClusterServiceClient::new(at.connect().await?))
}

pub(crate) async fn run(client: &ClientArgs, command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Status => {
            let s = fetch_status(client).await?;
            print_status(client.output, &s);
            if s.cluster_id.is_empty() {
                return Ok(());
            }
            if !s.quorum {
                bail!(
                    "no metadata quorum: metadata cannot change until a majority of voters is up"
                );
            }
        }
        ClusterCommand::AddNode { node_id } => {
            let s = fetch_status(client).await?;
            if s.nodes.iter().any(|n| n.id == node_id) {
                bail!("node {node_id} is already in the cluster");
            }
            println!(
                "start the node with:\n  fjord serve --node-id {node_id} --join {} --cluster-id {} --grpc-listen <its address>\nthen spread load onto it with `fjord cluster rebalance`",
                client.server, s.cluster_id
            );
        }
        ClusterCommand::DrainNode { node_id } => {
            let moved = controller(client)
                .await?
                .drain_node(pb::DrainNodeRequest { node_id })
                .await
                .map_err(status)?
                .into_inner()
                .moved;
            println!("draining node {node_id}: {moved} partitions are moving away");
        }
        ClusterCommand::RemoveNode { node_id } => {
            controller(client)
                .await?
                .remove_node(pb::RemoveNodeRequest { node_id })
                .await
                .map_err(status)?;
            println!("node {node_id} removed");
        }
        ClusterCommand::Reassign {
            topic,
            partition,
            replicas,
        } => {
            let replicas = replicas
                .split(',')
                .map(|s| s.trim().parse::<u64>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("replicas must be node ids like 1,2,3: {e}"))?;
            controller(client)
                .await?
                .reassign(pb::ReassignRequest {
                    topic: topic.clone(),
                    partition,
                    replicas: replicas.clone(),
                })
                .await
                .map_err(status)?;
            println!("{topic}-{partition} is moving to {}", ids(&replicas));
        }
        ClusterCommand::Rebalance => {
            let moved = controller(client)
                .await?
                .rebalance(pb::RebalanceRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .moved;
            println!("rebalancing: {moved} partitions are moving");
        }
    }
    Ok(())
}

fn print_status(output: Output, s: &pb::ClusterStatusResponse) {
    if output == Output::Json {
        let nodes: Vec<_> = s
            .nodes
            .iter()
            .map(|n| {
                json!({"id": n.id, "address": n.address, "role": n.role, "live": n.live,
                    "rack": n.rack, "leaders": n.leaders, "replicas": n.replicas,
                    "draining": n.draining, "controller": n.id == s.controller})
            })
            .collect();
        let under: Vec<_> = s
            .under_replicated
            .iter()
            .map(|u| {
                json!({"topic": u.topic, "partition": u.partition, "replicas": u.replicas,
                    "isr": u.isr, "leader": (u.leader != 0).then_some(u.leader)})
            })
            .collect();
        println!(
            "{}",
            json!({"cluster_id": s.cluster_id, "node_id": s.node_id,
                "controller": (s.controller != 0).then_some(s.controller), "quorum": s.quorum,
                "partitions": s.partitions, "offline_partitions": s.offline_partitions,
                "reassigning": s.reassigning,
                "nodes": nodes, "under_replicated": under})
        );
        return;
    }
    if s.cluster_id.is_empty() {
        println!(
            "node {} runs as a single node (not in a cluster)",
            s.node_id
        );
        return;
    }
    println!(
        "cluster {}  controller {}  quorum {}  partitions {} ({} offline, {} under-replicated, {} moving)",
        s.cluster_id,
        if s.controller == 0 {
            "none".to_string()
        } else {
            s.controller.to_string()
        },
        if s.quorum { "yes" } else { "NO" },
        s.partitions,
        s.offline_partitions,
        s.under_replicated.len(),
        s.reassigning
    );
    let rows: Vec<Vec<String>> = s
        .nodes
        .iter()
        .map(|n| {
            let mut role = n.role.clone();
            if n.id == s.controller {
                role.push_str(" (controller)");
            }
            vec![
                n.id.to_string(),
                n.address.clone(),
                role,
                if n.draining {
                    "draining".into()
                } else if n.live {
                    "live".into()
                } else {
                    "fenced".into()
                },
                n.rack.clone(),
                n.leaders.to_string(),
                n.replicas.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "NODE", "ADDRESS", "ROLE", "STATE", "RACK", "LEADERS", "REPLICAS"
            ],
            &rows
        )
    );
    if !s.under_replicated.is_empty() {
        let rows: Vec<Vec<String>> = s
            .under_replicated
            .iter()
            .map(|u| {
                vec![
                    u.topic.clone(),
                    u.partition.to_string(),
                    if u.leader == 0 {
                        "none".into()
                    } else {
                        u.leader.to_string()
                    },
                    ids(&u.replicas),
                    ids(&u.isr),
                ]
            })
            .collect();
        println!("under-replicated partitions:");
        print!(
            "{}",
            table::render(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"], &rows)
        );
    }
}
