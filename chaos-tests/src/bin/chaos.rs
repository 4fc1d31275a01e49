//! Runs the chaos schedule against real `fjord` processes and prints the
//! seed, the faults and the checker's table; exits 1 on any anomaly.
//!
//! ```text
//! cargo build -p fjord -p fjord-chaos-tests
//! target/debug/chaos --seconds 60            # 3 nodes, a random seed
//! target/debug/chaos --nodes 5 --seconds 60  # a five-node cluster
//! target/debug/chaos --nodes 1               # a single node
//! target/debug/chaos --seed 42 --long 3600   # replay a seed for an hour
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fjord_chaos_tests::{RunConfig, run};
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
    /// Nodes: 1 (a single node), 3 or 5 (a cluster).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Extra `fjord serve` flags, e.g. --serve-arg=--flush-policy --serve-arg=os.
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    let config = RunConfig {
        seed,
        duration: Duration::from_secs(args.long.unwrap_or(args.seconds)),
        partitions: args.partitions,
        producers: args.producers,
        nodes: args.nodes,
        serve_args: args.serve_arg,
    };
    println!(
        "chaos seed {seed} ({} nodes, {} s of faults)",
        config.nodes,
        config.duration.as_secs()
    );
    let outcome = async {
        let binary = fjord_binary(None)?;
        let dir = tempfile::tempdir()?;
        run(&binary, dir.path(), &config).await
    }
    .await;
    match outcome {
        Ok((report, faults)) => {
            println!("{} faults injected", faults.len());
            for f in &faults {
                println!("  {:>7.1} s  {}", f.at.as_secs_f64(), f.what);
            }
            print!("{}", report.table());
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                for line in report
                    .lost
                    .iter()
                    .chain(&report.moved)
                    .chain(&report.duplicates)
                    .chain(&report.backwards)
                    .chain(&report.phantom_reads)
                    .take(20)
                {
                    println!("  {line}");
                }
                println!("reproduce with --seed {seed}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#} (seed {seed})");
            ExitCode::FAILURE
        }
    }
}
