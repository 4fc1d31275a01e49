//! `fjord topic create|list|describe|delete|alter-config|add-partitions`.

use anyhow::{Result, bail};
use clap::Subcommand;
use fjord_proto::v1 as pb;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use serde_json::json;

use super::{ClientArgs, Output, status, table};

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Copies of each partition; 0 = the node's default (1 on a single
        /// node, up to 3 in a cluster).
        #[arg(long, default_value_t = 0)]
        replication_factor: u32,
        /// Topic config `key=value` (repeatable), e.g. retention.ms=60000.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
    },
    /// Show a topic's partitions and configs.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Set or delete a topic's configs; every replica applies them.
    AlterConfig {
        name: String,
        /// Config `key=value` to set (repeatable), e.g. retention.ms=60000.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Config to remove, back to its default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Grow a topic to N partitions in all. Keyed records then go to
    /// murmur2(key) % N: a key's new records may land in another
    /// partition than its old ones.
    AddPartitions {
        name: String,
        /// The partition count after the change (more than now).
        #[arg(long)]
        partitions: u32,
    },
}

/// `key=value` pairs of `--config`/`--set`.
fn key_values(pairs: Vec<String>, flag: &str) -> Result<std::collections::HashMap<String, String>> {
    let mut map = std::collections::HashMap::new();
    for c in pairs {
        let Some((k, v)) = c.split_once('=') else {
            bail!("{flag} {c:?} is not key=value")
        };
        map.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(map)
}

fn topic_json(t: &pb::TopicDescription) -> serde_json::Value {
    json!({
        "name": t.name,
        "internal": t.internal,
        "replication_factor": t.replication_factor,
        "configs": t.configs,
        "partitions": t.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "leader": p.leader,
            "leader_epoch": p.leader_epoch,
            "replicas": p.replicas,
            "isr": p.isr,
            "log_start_offset": p.log_start_offset,
            "high_watermark": p.high_watermark,
            "log_end_offset": p.log_end_offset,
            "size_bytes": p.size_bytes,
            "leader_address": p.leader_address,
        })).collect::<Vec<_>>(),
    })
}

fn list(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn print_topic(t: &pb::TopicDescription, output: Output) {
    if output == Output::Json {
        println!("{}", topic_json(t));
        return;
    }
    let configs: Vec<String> = t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "topic {}  partitions {}  replication-factor {}  configs {}",
        t.name,
        t.partitions.len(),
        t.replication_factor,
        if configs.is_empty() {
            "-".into()
        } else {
            configs.join(",")
        }
    );
    let rows: Vec<Vec<String>> = t
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.to_string(),
                p.leader_epoch.to_string(),
                list(&p.replicas),
                list(&p.isr),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
                p.log_end_offset.to_string(),
                p.size_bytes.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "PARTITION",
                "LEADER",
                "EPOCH",
                "REPLICAS",
                "ISR",
                "LOG-START",
                "HIGH-WATERMARK",
                "LOG-END",
                "BYTES"
            ],
            &rows
        )
    );
}

pub(crate) async fn run(client: &ClientArgs, command: TopicCommand) -> Result<()> {
    let mut topics = TopicServiceClient::new(client.connect().await?);
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let map = key_values(configs, "--config")?;
            let r = topics
                .create_topic(pb::CreateTopicRequest {
                    name,
                    partitions,
                    replication_factor,
                    configs: map,
                })
                .await
                .map_err(status)?
                .into_inner();
            if let Some(t) = r.topic {
                if client.output == Output::Json {
                    println!("{}", topic_json(&t));
                } else {
                    println!(
                        "created topic {} with {} partitions",
                        t.name,
                        t.partitions.len()
                    );
                }
            }
        }
        TopicCommand::List { internal } => {
            let r = topics
                .list_topics(pb::ListTopicsRequest {
                    include_internal: internal,
                })
                .await
                .map_err(status)?
                .into_inner();
            if client.output == Output::Json {
                let v: Vec<_> = r.topics.iter().map(|t| json!({"name": t.name, "partitions": t.partitions, "replication_factor": t.replication_factor, "internal": t.internal})).collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows: Vec<Vec<String>> = r
                    .topics
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.partitions.to_string(),
                            t.replication_factor.to_string(),
                            if t.internal {
                                "yes".into()
                            } else {
                                "no".into()
                            },
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table::render(&["TOPIC", "PARTITIONS", "REPLICATION", "INTERNAL"], &rows)
                );
            }
        }
        TopicCommand::Describe { name } => {
            let r = topics
                .describe_topic(pb::DescribeTopicRequest {
                    name,
                    local_only: false,
                })
                .await
                .map_err(status)?
                .into_inner();
            if let Some(t) = r.topic {
                print_topic(&t, client.output);
            }
        }
        TopicCommand::Delete { name } => {
            topics
                .delete_topic(pb::DeleteTopicRequest { name: name.clone() })
                .await
                .map_err(status)?;
            if client.output == Output::Json {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted topic {name}");
            }
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            let request = pb::AlterTopicConfigRequest {
                name,
                set: key_values(set, "--set")?,
                delete,
            };
            let r = topics
                .alter_topic_config(request)
                .await
                .map_err(status)?
                .into_inner();
            if let Some(t) = r.topic {
                changed("configs altered", &t, client.output);
            }
        }
        TopicCommand::AddPartitions { name, partitions } => {
            let request = pb::CreatePartitionsRequest { name, partitions };
            let r = topics
                .create_partitions(request)
                .await
                .map_err(status)?
                .into_inner();
            if let Some(t) = r.topic {
                changed("partitions added", &t, client.output);
            }
        }
    }
    Ok(())
}

/// Prints a changed topic: what changed, then the topic as `describe`
/// shows it (JSON: the topic only).
fn changed(what: &str, t: &pb::TopicDescription, output: Output) {
    if output == Output::Table {
        println!("{what}: topic {}", t.name);
    }
    print_topic(t, output);
}
