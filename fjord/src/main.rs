//! The `fjord` binary: `fjord serve` runs a node; the other subcommands are
//! clients of a node's gRPC API.
//!
//! # Layout
//! - `config`: server options (TOML < env < flags); `serve`: the node;
//!   `http`: metrics, health and readiness; `amqp_admin`: the gRPC service
//!   over the AMQP gateway's topology.
//! - `cli`: client subcommands (`topic`, `produce`, `consume`, `group`,
//!   `cluster`, `user`, `amqp`) and their output (tables or JSON).

mod amqp_admin;
mod cli;
mod config;
mod http;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::cli::{
    ClientArgs, amqp::AmqpCommand, cluster::ClusterCommand, consume::ConsumeArgs,
    group::GroupCommand, produce::ProduceArgs, topic::TopicCommand, user::UserCommand,
};
use crate::config::ServeArgs;

/// Fjord: a message broker on one replicated, partitioned log.
#[derive(Debug, Parser)]
#[command(name = "fjord", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (a single node with every listener on its defaults).
    Serve(Box<ServeArgs>),
    /// Create, list, describe, alter and delete topics; add partitions.
    Topic {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Produce one record per line of standard input.
    Produce {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: ProduceArgs,
    },
    /// Print records of a topic, one per line.
    Consume {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: ConsumeArgs,
    },
    /// List and describe consumer groups; reset their offsets, delete them.
    Group {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Cluster status and scaling operations.
    Cluster {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Add, delete and list the users gateways authenticate (MQTT).
    User {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// List, declare and delete AMQP vhosts, exchanges, queues and bindings.
    Amqp {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: AmqpCommand,
    },
}

fn init_logging(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let config = args.resolve()?;
                init_logging(&config.log_level, config.json_logs);
                serve::run(config).await
            }
            Command::Topic { client, command } => cli::topic::run(&client, command).await,
            Command::Produce { client, args } => cli::produce::run(&client, args).await,
            Command::Consume { client, args } => cli::consume::run(&client, args).await,
            Command::Group { client, command } => cli::group::run(&client, command).await,
            Command::Cluster { client, command } => cli::cluster::run(&client, command).await,
            Command::User { client, command } => cli::user::run(&client, command).await,
            Command::Amqp { client, command } => cli::amqp::run(&client, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
