//! `fjord amqp vhost|exchange|queue|binding`: the AMQP gateway's topology,
//! asked of the node that runs the gateway (in a cluster the leader of
//! `__amqp_acks`, found through `--server`; on a single node, itself).
//!
//! Changes behave as the AMQP methods do (`exchange.declare`,
//! `queue.delete`, ...); a refusal prints the AMQP reply text and the
//! command exits non-zero.

use std::collections::HashMap;

use anyhow::Result;
use clap::{Args, Subcommand};
use fjord_proto::v1 as pb;
use fjord_proto::v1::amqp_service_client::AmqpServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use super::table::print_list;
use super::{ClientArgs, Output, answer, report};

#[derive(Debug, Subcommand)]
pub(crate) enum AmqpCommand {
    /// List, declare and delete vhosts.
    Vhost {
        #[command(subcommand)]
        command: VhostCommand,
    },
    /// List, declare and delete exchanges.
    Exchange {
        #[command(flatten)]
        vhost: VhostArg,
        #[command(subcommand)]
        command: ExchangeCommand,
    },
    /// List, declare and delete queues.
    Queue {
        #[command(flatten)]
        vhost: VhostArg,
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// List, declare and delete bindings.
    Binding {
        #[command(flatten)]
        vhost: VhostArg,
        #[command(subcommand)]
        command: BindingCommand,
    },
}

#[derive(Debug, Args)]
pub(crate) struct VhostArg {
    /// The vhost.
    #[arg(long, global = true, default_value = "/")]
    vhost: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum VhostCommand {
    /// List vhosts with their exchange and queue counts.
    List,
    /// Create a vhost (with its amq.* exchanges); an existing one is kept.
    Declare { name: String },
    /// Delete a vhost with its queues (and their messages), exchanges and
    /// bindings. "/" comes back, empty, when the node restarts.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ExchangeCommand {
    /// List the vhost's exchanges.
    List,
    /// Declare an exchange (an existing one must be equivalent).
    Declare {
        name: String,
        /// direct, fanout, topic or headers.
        #[arg(long = "type", value_name = "TYPE")]
        kind: String,
        /// Keep it across restarts.
        #[arg(long)]
        durable: bool,
        /// Delete it when its last binding goes.
        #[arg(long)]
        auto_delete: bool,
        /// Only other exchanges may route to it.
        #[arg(long)]
        internal: bool,
        /// Where messages no binding matches go.
        #[arg(long, value_name = "EXCHANGE")]
        alternate_exchange: Option<String>,
    },
    /// Delete an exchange and its bindings.
    Delete {
        name: String,
        /// Refuse while it is the source of a binding.
        #[arg(long)]
        if_unused: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// List the vhost's queues with their message and consumer counts.
    List,
    /// Declare a queue (an existing one must be equivalent).
    Declare {
        name: String,
        /// Keep it and its messages across restarts.
        #[arg(long)]
        durable: bool,
        /// Delete it when its last consumer goes.
        #[arg(long)]
        auto_delete: bool,
        /// A queue argument (repeatable), e.g. x-message-ttl=60000,
        /// x-max-length=1000, x-dead-letter-exchange=dlx.
        #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = key_value)]
        arguments: Vec<(String, String)>,
    },
    /// Delete a queue with its messages.
    Delete {
        name: String,
        /// Refuse while it has consumers.
        #[arg(long)]
        if_unused: bool,
        /// Refuse while it holds messages.
        #[arg(long)]
        if_empty: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BindingCommand {
    /// List the vhost's bindings.
    List,
    /// Bind a queue or an exchange to a source exchange.
    Declare(BindingArgs),
    /// Remove a binding (key and arguments as it was made with).
    Delete(BindingArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BindingArgs {
    /// The source exchange.
    #[arg(long)]
    source: String,
    #[command(flatten)]
    destination: DestinationArg,
    /// The binding key.
    #[arg(long, default_value = "")]
    routing_key: String,
    /// A binding argument (repeatable), e.g. x-match=all for a headers
    /// exchange.
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = key_value)]
    arguments: Vec<(String, String)>,
}

/// A binding's destination: a queue or an exchange.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct DestinationArg {
    /// The destination queue.
    #[arg(long)]
    queue: Option<String>,
    /// The destination exchange.
    #[arg(long)]
    exchange: Option<String>,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Arguments as `k=v k=v` in key order, `-` for none.
fn arguments_text(arguments: &HashMap<String, String>) -> String {
    let mut list: Vec<String> = arguments.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if list.is_empty() {
        return "-".to_string();
    }
    list.sort();
    list.join(" ")
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

pub(crate) async fn run(client: &ClientArgs, command: AmqpCommand) -> Result<()> {
    // In a cluster the node that leads `__amqp_acks` runs the gateway.
    let channel = match client.leader("__amqp_acks", 0).await {
        Ok(c) => c,
        Err(_) => client.connect().await?,
    };
    let rpc = AmqpServiceClient::new(channel);
    match command {
        AmqpCommand::Vhost { command } => vhost(rpc, client.output, command).await,
        AmqpCommand::Exchange { vhost, command } => {
            exchange(rpc, client.output, vhost.vhost, command).await
        }
        AmqpCommand::Queue { vhost, command } => {
            queue(rpc, client.output, vhost.vhost, command).await
        }
        AmqpCommand::Binding { vhost, command } => {
            binding(rpc, client.output, vhost.vhost, command).await
        }
    }
}

async fn vhost(
    mut rpc: AmqpServiceClient<Channel>,
    output: Output,
    command: VhostCommand,
) -> Result<()> {
    match command {
        VhostCommand::List => {
            let vhosts = answer(rpc.list_vhosts(pb::ListVhostsRequest {}))
                .await?
                .vhosts;
            print_list(
                output,
                &vhosts,
                &["VHOST", "EXCHANGES", "QUEUES"],
                |v| json!({"name": v.name, "exchanges": v.exchanges, "queues": v.queues}),
                |v| {
                    vec![
                        v.name.clone(),
                        v.exchanges.to_string(),
                        v.queues.to_string(),
                    ]
                },
            );
        }
        VhostCommand::Declare { name } => {
            let request = pb::DeclareVhostRequest { name: name.clone() };
            let created = answer(rpc.declare_vhost(request)).await?.created;
            let text = if created {
                format!("declared vhost {name}")
            } else {
                format!("vhost {name} exists")
            };
            report(output, json!({"declared": name, "created": created}), text);
        }
        VhostCommand::Delete { name } => {
            let request = pb::DeleteVhostRequest { name: name.clone() };
            let queues = answer(rpc.delete_vhost(request)).await?.queues_deleted;
            let text = format!("deleted vhost {name} ({queues} queues)");
            report(
                output,
                json!({"deleted": name, "queues_deleted": queues}),
                text,
            );
        }
    }
    Ok(())
}

async fn exchange(
    mut rpc: AmqpServiceClient<Channel>,
    output: Output,
    vhost: String,
    command: ExchangeCommand,
) -> Result<()> {
    match command {
        ExchangeCommand::List => {
            let request = pb::ListExchangesRequest { vhost };
            let exchanges = answer(rpc.list_exchanges(request)).await?.exchanges;
            print_exchanges(&exchanges, output);
        }
        ExchangeCommand::Declare {
            name,
            kind,
            durable,
            auto_delete,
            internal,
            alternate_exchange,
        } => {
            let request = pb::DeclareExchangeRequest {
                vhost,
                name: name.clone(),
                r#type: kind,
                durable,
                auto_delete,
                internal,
                alternate_exchange,
            };
            answer(rpc.declare_exchange(request)).await?;
            report(
                output,
                json!({"declared": name}),
                format!("declared exchange {name}"),
            );
        }
        ExchangeCommand::Delete { name, if_unused } => {
            let request = pb::DeleteExchangeRequest {
                vhost,
                name: name.clone(),
                if_unused,
            };
            answer(rpc.delete_exchange(request)).await?;
            report(
                output,
                json!({"deleted": name}),
                format!("deleted exchange {name}"),
            );
        }
    }
    Ok(())
}

async fn queue(
    mut rpc: AmqpServiceClient<Channel>,
    output: Output,
    vhost: String,
    command: QueueCommand,
) -> Result<()> {
    match command {
        QueueCommand::List => {
            let request = pb::ListQueuesRequest { vhost };
            let queues = answer(rpc.list_queues(request)).await?.queues;
            print_queues(&queues, output);
        }
        QueueCommand::Declare {
            name,
            durable,
            auto_delete,
            arguments,
        } => {
            let request = pb::DeclareQueueRequest {
                vhost,
                name: name.clone(),
                durable,
                auto_delete,
                arguments: arguments.into_iter().collect(),
            };
            let r = answer(rpc.declare_queue(request)).await?;
            let text = format!(
                "declared queue {name} ({} messages, {} consumers)",
                r.messages, r.consumers
            );
            let value = json!({"declared": name, "messages": r.messages, "consumers": r.consumers});
            report(output, value, text);
        }
        QueueCommand::Delete {
            name,
            if_unused,
            if_empty,
        } => {
            let request = pb::DeleteQueueRequest {
                vhost,
                name: name.clone(),
                if_unused,
                if_empty,
            };
            let messages = answer(rpc.delete_queue(request)).await?.messages;
            let text = format!("deleted queue {name} ({messages} messages)");
            report(output, json!({"deleted": name, "messages": messages}), text);
        }
    }
    Ok(())
}

fn kind_text(kind: i32) -> &'static str {
    match pb::AmqpDestinationKind::try_from(kind) {
        Ok(pb::AmqpDestinationKind::Queue) => "queue",
        Ok(pb::AmqpDestinationKind::Exchange) => "exchange",
        Ok(pb::AmqpDestinationKind::Unspecified) | Err(_) => "?",
    }
}

/// The binding's destination as (kind, name).
fn destination(b: &BindingArgs) -> (pb::AmqpDestinationKind, String) {
    match (&b.destination.queue, &b.destination.exchange) {
        (Some(q), _) => (pb::AmqpDestinationKind::Queue, q.clone()),
        (None, Some(e)) => (pb::AmqpDestinationKind::Exchange, e.clone()),
        // clap requires one of the two.
        (None, None) => (pb::AmqpDestinationKind::Unspecified, String::new()),
    }
}

async fn binding(
    mut rpc: AmqpServiceClient<Channel>,
    output: Output,
    vhost: String,
    command: BindingCommand,
) -> Result<()> {
    let (args, bind) = match command {
        BindingCommand::List => {
            let request = pb::ListBindingsRequest { vhost };
            let bindings = answer(rpc.list_bindings(request)).await?.bindings;
            print_bindings(&bindings, output);
            return Ok(());
        }
        BindingCommand::Declare(args) => (args, true),
        BindingCommand::Delete(args) => (args, false),
    };
    let (kind, name) = destination(&args);
    let what = format!(
        "{} {name} to exchange {} with key {:?}",
        kind_text(kind.into()),
        args.source,
        args.routing_key
    );
    let value = json!({
        "source": args.source, "destination_kind": kind_text(kind.into()),
        "destination": name, "routing_key": args.routing_key,
    });
    let arguments: HashMap<String, String> = args.arguments.into_iter().collect();
    if bind {
        let request = pb::AmqpBindRequest {
            vhost,
            source: args.source,
            destination_kind: kind.into(),
            destination: name,
            routing_key: args.routing_key,
            arguments,
        };
        answer(rpc.bind(request)).await?;
        report(output, json!({ "bound": value }), format!("bound {what}"));
    } else {
        let request = pb::AmqpUnbindRequest {
            vhost,
            source: args.source,
            destination_kind: kind.into(),
            destination: name,
            routing_key: args.routing_key,
            arguments,
        };
        answer(rpc.unbind(request)).await?;
        report(
            output,
            json!({ "unbound": value }),
            format!("unbound {what}"),
        );
    }
    Ok(())
}

fn print_exchanges(exchanges: &[pb::AmqpExchange], output: Output) {
    let json = |x: &pb::AmqpExchange| {
        json!({"name": x.name, "type": x.r#type, "durable": x.durable,
            "auto_delete": x.auto_delete, "internal": x.internal,
            "arguments": x.arguments})
    };
    let row = |x: &pb::AmqpExchange| {
        let name = if x.name.is_empty() {
            "(AMQP default)".to_string()
        } else {
            x.name.clone()
        };
        vec![
            name,
            x.r#type.clone(),
            yes_no(x.durable),
            yes_no(x.auto_delete),
            yes_no(x.internal),
            arguments_text(&x.arguments),
        ]
    };
    let headers = [
        "EXCHANGE",
        "TYPE",
        "DURABLE",
        "AUTO-DELETE",
        "INTERNAL",
        "ARGUMENTS",
    ];
    print_list(output, exchanges, &headers, json, row);
}

fn print_queues(queues: &[pb::AmqpQueue], output: Output) {
    let json = |q: &pb::AmqpQueue| {
        json!({"name": q.name, "durable": q.durable, "exclusive": q.exclusive,
            "auto_delete": q.auto_delete, "ready": q.ready,
            "unacked": q.unacked, "consumers": q.consumers,
            "arguments": q.arguments})
    };
    let row = |q: &pb::AmqpQueue| {
        vec![
            q.name.clone(),
            yes_no(q.durable),
            q.ready.to_string(),
            q.unacked.to_string(),
            q.consumers.to_string(),
        ]
    };
    let headers = ["QUEUE", "DURABLE", "READY", "UNACKED", "CONSUMERS"];
    print_list(output, queues, &headers, json, row);
}

fn print_bindings(bindings: &[pb::AmqpBinding], output: Output) {
    let json = |b: &pb::AmqpBinding| {
        json!({"source": b.source, "destination_kind": kind_text(b.destination_kind),
            "destination": b.destination, "routing_key": b.routing_key,
            "arguments": b.arguments})
    };
    let row = |b: &pb::AmqpBinding| {
        vec![
            b.source.clone(),
            kind_text(b.destination_kind).to_string(),
            b.destination.clone(),
            b.routing_key.clone(),
            arguments_text(&b.arguments),
        ]
    };
    let headers = ["SOURCE", "KIND", "DESTINATION", "ROUTING-KEY", "ARGUMENTS"];
    print_list(output, bindings, &headers, json, row);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        assert_eq!(
            key_value("x-match=all"),
            Ok(("x-match".to_string(), "all".to_string()))
        );
        assert_eq!(key_value("k=a=b"), Ok(("k".to_string(), "a=b".to_string())));
        assert_eq!(key_value("k="), Ok(("k".to_string(), String::new())));
        assert!(key_value("novalue").is_err());
        assert!(key_value("=v").is_err());
    }

    #[test]
    fn arguments_print_in_key_order() {
        let args = HashMap::from([
            ("x-max-length".to_string(), "10".to_string()),
            ("x-dead-letter-exchange".to_string(), "dlx".to_string()),
        ]);
        assert_eq!(
            arguments_text(&args),
            "x-dead-letter-exchange=dlx x-max-length=10"
        );
        assert_eq!(arguments_text(&HashMap::new()), "-");
    }
}
