//! Runs the chaos schedule against real `fjord` processes and prints the
//! seed, the faults and the checker's table; exits 1 on any anomaly.
//!
//! ```text
//! cargo build -p fjord -p fjord-chaos-tests
//! target/debug/chaos --seconds 60            # 3 nodes, a random seed
//! target/debug/chaos --nodes 5 --seconds 60  # a five-node cluster
//! target/debug/chaos --nodes 1               # a single node
//! target/debug/chaos --seed 42 --long 3600   # replay a seed for an hour
//! target/debug/chaos --mqtt --long 600       # the MQTT gateway schedule
//! target/debug/chaos --mqtt --fjord-bin /opt/old/fjord --seed 7
//! target/debug/chaos --amqp --seconds 20     # the AMQP gateway schedule
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fjord_chaos_tests::amqp::AmqpRunConfig;
use fjord_chaos_tests::mqtt::MqttRunConfig;
use fjord_chaos_tests::{Fault, RunConfig, amqp, mqtt, run};
use fjord_testkit::fjord_binary;

#[derive(Parser, Debug)]
#[command(about = "Fault injection against fjord with a history checker")]
struct Args {
    /// Seed of the fault schedule (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds of faults.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// A long schedule: this many seconds (overrides --seconds).
    #[arg(long)]
    long: Option<u64>,
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Nodes: 1 (a single node), 3 or 5 (a cluster); 3 or more with --mqtt.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Extra `fjord serve` flags, e.g. --serve-arg=--flush-policy --serve-arg=os.
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
    /// The MQTT gateway schedule (persistent sessions, QoS 1 and 2)
    /// instead of the log's.
    #[arg(long, conflicts_with = "amqp")]
    mqtt: bool,
    /// The AMQP gateway schedule (confirming publishers, acking consumers)
    /// instead of the log's.
    #[arg(long)]
    amqp: bool,
    /// With --mqtt: no shared subscription group.
    #[arg(long)]
    no_shared: bool,
    /// With --mqtt (--amqp): seconds the subscribers (consumers) may take,
    /// after the faults, to receive every acknowledged (confirmed) message.
    #[arg(long, default_value_t = 30)]
    drain: u64,
    /// The `fjord` binary to run (default: $FJORD_BIN, or the one built
    /// beside this program).
    #[arg(long)]
    fjord_bin: Option<PathBuf>,
    /// Keep the nodes' data and logs here (default: a temporary directory,
    /// removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    let seconds = args.long.unwrap_or(args.seconds);
    let schedule = match (args.mqtt, args.amqp) {
        (true, _) => "MQTT",
        (_, true) => "AMQP",
        _ => "log",
    };
    println!(
        "chaos seed {seed} ({schedule} schedule, {} nodes, {seconds} s of faults)",
        args.nodes
    );
    let outcome = async {
        let binary = fjord_binary(args.fjord_bin.as_deref())?;
        println!("fjord binary {}", binary.display());
        let temp = tempfile::tempdir()?;
        let dir = args
            .dir
            .clone()
            .unwrap_or_else(|| temp.path().to_path_buf());
        if args.mqtt {
            run_mqtt(&args, seed, &binary, &dir).await
        } else if args.amqp {
            run_amqp(&args, seed, &binary, &dir).await
        } else {
            run_log(&args, seed, &binary, &dir).await
        }
    }
    .await;
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("reproduce with --seed {seed}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#} (seed {seed})");
            ExitCode::FAILURE
        }
    }
}

fn print_faults(faults: &[Fault]) {
    println!("{} faults injected", faults.len());
    for f in faults {
        println!("  {:>7.1} s  {}", f.at.as_secs_f64(), f.what);
    }
}

/// The log schedule; whether the checker passed.
async fn run_log(args: &Args, seed: u64, binary: &Path, dir: &Path) -> anyhow::Result<bool> {
    let config = RunConfig {
        seed,
        duration: Duration::from_secs(args.long.unwrap_or(args.seconds)),
        partitions: args.partitions,
        producers: args.producers,
        nodes: args.nodes,
        serve_args: args.serve_arg.clone(),
    };
    let (report, faults) = run(binary, dir, &config).await?;
    print_faults(&faults);
    print!("{}", report.table());
    let anomalies = report
        .lost
        .iter()
        .chain(&report.moved)
        .chain(&report.duplicates)
        .chain(&report.backwards)
        .chain(&report.phantom_reads);
    for line in anomalies.take(20) {
        println!("  {line}");
    }
    Ok(report.ok())
}

/// The MQTT schedule; whether the checker passed.
async fn run_mqtt(args: &Args, seed: u64, binary: &Path, dir: &Path) -> anyhow::Result<bool> {
    let mut config =
        MqttRunConfig::new(seed, Duration::from_secs(args.long.unwrap_or(args.seconds)));
    config.nodes = args.nodes;
    config.shared = !args.no_shared;
    config.drain = Duration::from_secs(args.drain);
    config.serve_args = args.serve_arg.clone();
    let (report, faults) = mqtt::run(binary, dir, &config).await?;
    print_faults(&faults);
    print!("{}", report.table());
    for line in report.anomalies().take(20) {
        println!("  {line}");
    }
    println!(
        "every acknowledged message at every persistent session, in order: {}",
        if report.durable() { "yes" } else { "NO" }
    );
    Ok(report.ok())
}

/// The AMQP schedule; whether the checker passed.
async fn run_amqp(args: &Args, seed: u64, binary: &Path, dir: &Path) -> anyhow::Result<bool> {
    let mut config =
        AmqpRunConfig::new(seed, Duration::from_secs(args.long.unwrap_or(args.seconds)));
    config.nodes = args.nodes;
    config.drain = Duration::from_secs(args.drain);
    config.serve_args = args.serve_arg.clone();
    let (report, faults) = amqp::run(binary, dir, &config).await?;
    print_faults(&faults);
    print!("{}", report.table());
    for line in report.anomalies().take(20) {
        println!("  {line}");
    }
    Ok(report.ok())
}
