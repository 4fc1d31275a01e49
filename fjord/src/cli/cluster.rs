//! `fjord cluster status|add-node|drain-node|undrain-node|remove-node|
//! reassign|rebalance`.

use std::time::{Duration, Instant};

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
    /// Move every replica and all leadership off a node (waits until the
    /// moves are done unless `--no-wait`).
    DrainNode {
        node_id: u64,
        #[command(flatten)]
        wait: Wait,
    },
    /// Take a draining node back: it may hold replicas and lead again
    /// (`rebalance` then gives it its share).
    UndrainNode { node_id: u64 },
    /// Remove a drained node from the cluster.
    RemoveNode { node_id: u64 },
    /// Move one partition to a new replica list (first = preferred leader).
    Reassign {
        topic: String,
        partition: u32,
        /// Comma-separated node ids, e.g. `2,3,4`.
        replicas: String,
    },
    /// Even out replicas and leaders over the live nodes, optionally
    /// bringing every partition (internal topics included) to a
    /// replication factor first; waits until the moves are done unless
    /// `--no-wait`.
    Rebalance {
        /// Give every partition this many replicas (e.g. 3 once a node
        /// that ran alone has been joined by two more).
        #[arg(long)]
        replication_factor: Option<u32>,
        #[command(flatten)]
        wait: Wait,
    },
}

/// Whether a scaling command waits for its moves to finish.
#[derive(Debug, clap::Args)]
pub(crate) struct Wait {
    /// Return once the moves are started, without waiting for them.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the moves to finish, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
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
            "the node at {} has no cluster id (it runs an older release)",
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
        ClusterCommand::DrainNode { node_id, wait } => {
            let moves = controller(client)
                .await?
                .drain_node(pb::DrainNodeRequest { node_id })
                .await
                .map_err(status)?
                .into_inner()
                .moves;
            println!("draining node {node_id}:");
            finish_moves(client, &moves, &wait).await?;
        }
        ClusterCommand::UndrainNode { node_id } => {
            controller(client)
                .await?
                .undrain_node(pb::UndrainNodeRequest { node_id })
                .await
                .map_err(status)?;
            println!(
                "node {node_id} takes replicas again; `fjord cluster rebalance` gives it its share"
            );
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
        ClusterCommand::Rebalance {
            replication_factor,
            wait,
        } => {
            let moves = controller(client)
                .await?
                .rebalance(pb::RebalanceRequest {
                    replication_factor: replication_factor.unwrap_or(0),
                })
                .await
                .map_err(status)?
                .into_inner()
                .moves;
            println!("rebalancing:");
            finish_moves(client, &moves, &wait).await?;
        }
    }
    Ok(())
}

/// Prints what moves from where to where, then (unless `--no-wait`) waits
/// until no partition is moving and prints the nodes' new counts.
async fn finish_moves(client: &ClientArgs, moves: &[pb::PartitionMove], wait: &Wait) -> Result<()> {
    if moves.is_empty() {
        println!("nothing to move");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = moves
        .iter()
        .map(|m| {
            vec![
                m.topic.clone(),
                m.partition.to_string(),
                ids(&m.from),
                ids(&m.to),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["TOPIC", "PARTITION", "FROM", "TO"], &rows)
    );
    if wait.no_wait {
        println!(
            "{} partitions are moving; `fjord cluster status` shows how many still are",
            moves.len()
        );
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(wait.timeout);
    loop {
        let s = fetch_status(client).await?;
        if s.reassigning == 0 {
            println!("{} partitions moved", moves.len());
            print_status(Output::Table, &s);
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} partitions are still moving after {} s (they go on; see `fjord cluster status`)",
                s.reassigning,
                wait.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Voters of the quorum, as the answering node knows them.
fn voters(s: &pb::ClusterStatusResponse) -> usize {
    s.nodes.iter().filter(|n| n.role == "voter").count()
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
                "voters": voters(s), "max_voters": s.max_voters,
                "partitions": s.partitions, "offline_partitions": s.offline_partitions,
                "reassigning": s.reassigning,
                "nodes": nodes, "under_replicated": under})
        );
        return;
    }
    println!(
        "cluster {}  controller {}  quorum {}  voters {}/{}  partitions {} ({} offline, {} under-replicated, {} moving)",
        s.cluster_id,
        if s.controller == 0 {
            "none".to_string()
        } else {
            s.controller.to_string()
        },
        if s.quorum { "yes" } else { "NO" },
        voters(s),
        s.max_voters,
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
