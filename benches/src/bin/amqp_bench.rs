//! AMQP benchmark: Fjord's AMQP 0-9-1 gateway side by side with RabbitMQ,
//! both started by this program on loopback, driven by the same load
//! generator in the same run.
//!
//! For 1→1 and 4→4 with 1 KiB bodies, publisher *i* publishes
//! `--messages` persistent messages (delivery mode 2) through the default
//! exchange to the durable queue `bench-<run>-<i>`, with publisher confirms
//! and at most `--inflight` unconfirmed; consumer *i* consumes that queue
//! with `basic.qos` prefetch `--prefetch` and manual acks (each delivery
//! acked on its own; `--ack-every k` acks every k-th with `multiple`). So
//! 4→4 is four independent 1→1 streams, each publisher and consumer on its
//! own connection. Each body starts with its send time (taken in the
//! `basic.publish` call) and a sequence number; consumers record publish
//! call → delivery latency, losses, duplicates and reordering. Throughput
//! is messages received by all consumers / (last receipt − first publish).
//! Fjord and RabbitMQ alternate, `--runs` times per scenario (the first of
//! each pair alternates too); per-run figures, medians and Fjord/RabbitMQ
//! ratios of throughput, p50 and p99 are printed, and with each run the CPU
//! time the server used (from `/proc`, for RabbitMQ its Erlang VM) and the
//! CPU of the load generator.
//!
//! RabbitMQ is Debian's `rabbitmq-server`, a private node with its own
//! ports, data directory, node name and epmd (see `amqp_server`), with
//! RabbitMQ's default settings: a queue declared `durable` is a classic
//! queue (what a RabbitMQ user gets from `queue.declare(durable=true)`; not
//! a quorum queue), persistent messages go to its message store, and it
//! confirms a publish once the message is there. Fjord runs with its
//! default settings (its durability is its flush policy). Both use the
//! guest/guest credentials. With `--fjord-cluster` Fjord is a three-node
//! cluster on the same machine instead: the load generator connects to a
//! node that does not run the AMQP gateway, so each connection is carried
//! to the node that does, and every queue has three replicas.
//!
//! If Fjord cannot start or has no AMQP listener (a build without the
//! gateway), the program says so and measures RabbitMQ alone; `--only
//! rabbitmq` asks for that. Nothing is asserted; a run that stalls ends
//! with a message that says how far it got and shows the server's log, and
//! the next run goes on.
//!
//! ```text
//! scripts/install-amqp-tools.sh        # RabbitMQ, if missing
//! cargo build --release -p fjord -p fjord-benches
//! target/release/amqp_bench
//! ```

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};
use fjord_benches::amqp_load::{LoadSettings, RunFigures, Scenario, run_once};
use fjord_benches::amqp_server::{AmqpBroker, RabbitInstall};
use fjord_benches::host::{load_average, machine};
use fjord_benches::mqtt_server::version_line;
use fjord_benches::receipts::medians;
use fjord_benches::report::{
    self, ScenarioRuns, latency_cell, list, problems, rate_cell, ratio_cell,
};
use fjord_benches::stats::{median, ms, thousands};
use fjord_testkit::fjord_binary;

#[derive(Parser, Debug, Clone)]
#[command(about = "Fjord's AMQP gateway against RabbitMQ: messages/s and latency")]
struct Args {
    /// Which servers to measure.
    #[arg(long, value_enum, default_value_t = Only::Both)]
    only: Only,
    /// Fjord as a three-node cluster on this machine: the load generator
    /// connects to a node that does not run the AMQP gateway (every
    /// connection is carried to the one that does) and queues have three
    /// replicas.
    #[arg(long)]
    fjord_cluster: bool,
    /// The fjord binary (default: next to this program).
    #[arg(long)]
    fjord_bin: Option<PathBuf>,
    /// The directory with RabbitMQ's `rabbitmq-server` and `rabbitmqctl`
    /// scripts (default: Debian's /usr/lib/rabbitmq/bin; not the /usr/sbin
    /// wrappers, which switch user).
    #[arg(long)]
    rabbitmq_bin_dir: Option<PathBuf>,
    /// Erlang's epmd (default: `epmd` on PATH, else /usr/bin/epmd).
    #[arg(long)]
    epmd_bin: Option<PathBuf>,
    /// Where both servers' data directories and logs are made (a real
    /// disk).
    #[arg(long, default_value = "target/bench-data")]
    dir: PathBuf,
    /// Messages per publisher in a run.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Body bytes (at least 16: send time and sequence number).
    #[arg(long, default_value_t = 1024)]
    body: usize,
    /// Unconfirmed publishes a publisher may have.
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// `basic.qos` prefetch count of each consumer.
    #[arg(long, default_value_t = 100)]
    prefetch: u16,
    /// Ack every delivery on its own (1), or every k-th with `multiple`
    /// (at most --prefetch).
    #[arg(long, default_value_t = 1)]
    ack_every: u16,
    /// Messages/s per publisher; 0 publishes as fast as the confirm window
    /// allows (the default, a saturating load whose latency is mostly
    /// queueing).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Publisher→consumer pair counts to run.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pairs: Vec<usize>,
    /// Runs per scenario and server; medians are printed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A run fails if no message is confirmed or received for this long.
    #[arg(long, default_value_t = 15)]
    stall_secs: u64,
    /// Hard limit on one run.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Extra lines for RabbitMQ's rabbitmq.conf (e.g. `--rabbitmq-conf
    /// "queue_index_embed_msgs_below = 0"`).
    #[arg(long)]
    rabbitmq_conf: Vec<String>,
    /// Extra flags for `fjord serve` (e.g. --serve-arg=--flush-policy
    /// --serve-arg=os).
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
    /// FJORD_LOG_LEVEL for the Fjord server.
    #[arg(long, default_value = "warn")]
    fjord_log_level: String,
    /// Keep the data directories and the servers' logs.
    #[arg(long)]
    keep: bool,
}

/// `--only`: which servers to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Both,
    Fjord,
    Rabbitmq,
}

impl Args {
    /// The flags that shape the load of each run.
    fn load_settings(&self) -> LoadSettings {
        LoadSettings {
            body: self.body,
            inflight: self.inflight,
            prefetch: self.prefetch,
            ack_every: self.ack_every,
            rate: self.rate,
            stall_secs: self.stall_secs,
            timeout_secs: self.timeout_secs,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.body < 16 {
        bail!("--body must be at least 16 bytes (send time and sequence number)");
    }
    if args.inflight == 0 || args.prefetch == 0 {
        bail!("--inflight and --prefetch must be at least 1");
    }
    if args.ack_every == 0 || args.ack_every > args.prefetch {
        bail!("--ack-every must be between 1 and --prefetch");
    }
    let fjord_bin = fjord_binary(args.fjord_bin.as_deref())?;
    let install = RabbitInstall::new(args.rabbitmq_bin_dir.clone(), args.epmd_bin.clone());
    let scratch = report::start(&args.dir, "amqp-bench-")?;
    println!("load average before the runs: {}", load_average());

    let mut fjord = None;
    if args.only != Only::Rabbitmq {
        println!(
            "fjord: {} ({}), {}, data in {}",
            version_line(&fjord_bin, "--version"),
            fjord_bin.display(),
            fjord_settings(&args),
            scratch.path().join("fjord").display()
        );
        let dir = scratch.path().join("fjord");
        let started = if args.fjord_cluster {
            AmqpBroker::fjord_cluster(&fjord_bin, &dir, &args.fjord_log_level, &args.serve_arg)
                .await
        } else {
            AmqpBroker::fjord(&fjord_bin, &dir, &args.fjord_log_level, &args.serve_arg).await
        };
        match started {
            Ok(broker) => {
                println!("  Fjord AMQP on {} (pid {})", broker.addr, broker.pid());
                fjord = Some(broker);
            }
            Err(e) if args.only == Only::Both => {
                println!("  Fjord is not measured: {e:#}");
                println!("  going on with RabbitMQ alone (no ratios)");
            }
            Err(e) => return Err(e.context("start Fjord")),
        }
    }
    let mut rabbitmq = None;
    if args.only != Only::Fjord {
        match AmqpBroker::rabbitmq(
            &install,
            &scratch.path().join("rabbitmq"),
            &args.rabbitmq_conf,
        )
        .await
        {
            Ok(broker) => {
                println!(
                    "rabbitmq: {} ({}), {}, data in {}",
                    broker
                        .rabbitmq_version()
                        .unwrap_or_else(|| "version unknown".into()),
                    install.bin_dir.display(),
                    rabbitmq_settings(&args),
                    scratch.path().join("rabbitmq").display()
                );
                println!(
                    "  RabbitMQ AMQP on {} (Erlang VM pid {})",
                    broker.addr,
                    broker.pid()
                );
                rabbitmq = Some(broker);
            }
            Err(e) if fjord.is_some() => {
                println!("rabbitmq: not measured: {e:#}");
                println!("  going on with Fjord alone (no ratios)");
            }
            Err(e) => return Err(e.context("start RabbitMQ")),
        }
    }
    if fjord.is_none() && rabbitmq.is_none() {
        bail!("no server to measure");
    }
    println!(
        "client: lapin (AMQP 0-9-1), {} tokio worker threads, one connection per publisher and \
         per consumer; body {} B; delivery mode 2; confirm window {} per publisher; prefetch {}, \
         {}; publishers send {}; publisher i → durable queue bench-<run>-i → consumer i (N→N is \
         N independent 1→1 streams); latency = basic.publish call → delivery",
        tokio::runtime::Handle::current().metrics().num_workers(),
        args.body,
        args.inflight,
        args.prefetch,
        acks(&args),
        pace(&args)
    );

    let measured = [fjord.is_some(), rabbitmq.is_some()];
    let mut rows = Vec::new();
    for &pairs in &args.pairs {
        let scenario = Scenario {
            pairs,
            messages: args.messages,
        };
        let mut servers = [fjord.as_mut(), rabbitmq.as_mut()];
        rows.push(scenario_runs(&args, scenario, &mut servers).await);
    }
    // Stop both servers before the summary (RabbitMQ via rabbitmqctl).
    drop(fjord);
    drop(rabbitmq);

    println!();
    println!("load average after the runs: {}", load_average());
    report::summary_heading();
    print_summary(&args, &rows, measured);
    report::finish(scratch, args.keep);
    Ok(())
}

/// One scenario's runs on Fjord and RabbitMQ, with Fjord/RabbitMQ
/// throughput, p50 and p99 per run pair.
type ScenarioRow = ScenarioRuns<Scenario, RunFigures, [f64; 3]>;

async fn scenario_runs(
    args: &Args,
    scenario: Scenario,
    servers: &mut [Option<&mut AmqpBroker>; 2],
) -> ScenarioRow {
    let label = scenario.label();
    let settings = args.load_settings();
    let mut row = ScenarioRow::start(scenario, &label, scenario.pairs, scenario.messages);
    for run in 0..args.runs {
        let mut pair: [Option<RunFigures>; 2] = [None, None];
        for which in report::order(run) {
            let Some(broker) = servers[which].as_deref_mut() else {
                continue;
            };
            if let Some(status) = broker.exited() {
                println!(
                    "  run {run} {:<8}: skipped: the server exited ({status})",
                    broker.name
                );
                continue;
            }
            let tag = format!(
                "{}x{}-r{run}-{}",
                scenario.pairs,
                scenario.pairs,
                broker.name.to_lowercase()
            );
            let result = run_once(&settings, broker, scenario, &tag).await;
            let server = (broker.name, 8);
            pair[which] = row.outcome(run, server, result, broker.log_path(), RunFigures::describe);
        }
        row.add(pair, |f, r| {
            let (f, r) = (&f.delivered, &r.delivered);
            [
                f.msgs_per_s / r.msgs_per_s,
                f.p50_us as f64 / r.p50_us.max(1) as f64,
                f.p99_us as f64 / r.p99_us.max(1) as f64,
            ]
        });
    }
    for (name, runs) in [("Fjord", &row.fjord), ("RabbitMQ", &row.other)] {
        if let Some(m) = medians(runs) {
            let cpu: Vec<f64> = runs.iter().map(RunFigures::server_us_per_msg).collect();
            println!(
                "  median {name:<8}: {:>8} msg/s  p50 {:>8}  p99 {:>8}  server CPU {:.0} µs/msg  \
                 over {} runs",
                thousands(m.0.round() as u64),
                ms(m.1),
                ms(m.2),
                median(&cpu),
                runs.len()
            );
        }
    }
    if !row.ratios.is_empty() {
        let pick = |k: usize| row.ratios.iter().map(|r| r[k]).collect::<Vec<f64>>();
        let (t, p50, p99) = (pick(0), pick(1), pick(2));
        println!(
            "  Fjord/RabbitMQ: throughput {:.2} (per run {}), p50 {:.2} (per run {}), p99 {:.2} \
             (per run {})",
            median(&t),
            list(&t),
            median(&p50),
            list(&p50),
            median(&p99),
            list(&p99)
        );
    }
    row
}

/// `measured`: whether Fjord and RabbitMQ were started.
fn print_summary(args: &Args, rows: &[ScenarioRow], measured: [bool; 2]) {
    let settings = |measured: bool, s: String| if measured { s } else { "not measured".into() };
    println!(
        "Machine: {}. Same run, same load generator (lapin, AMQP 0-9-1); {} runs per scenario \
         alternating the servers; {} messages per publisher; {} B bodies, delivery mode 2, \
         durable queues; publisher confirms, window {}; prefetch {}, {}; publishers send {}; \
         publisher i → consumer i on its own queue, each on its own connection. RabbitMQ: {}. \
         Fjord: {}.",
        machine(),
        args.runs,
        thousands(args.messages),
        args.body,
        args.inflight,
        args.prefetch,
        acks(args),
        pace(args),
        settings(
            measured[1],
            format!("Debian package, {}", rabbitmq_settings(args))
        ),
        settings(measured[0], fjord_settings(args))
    );
    println!();
    println!(
        "| scenario | Fjord msg/s | RabbitMQ msg/s | throughput Fjord/RabbitMQ | Fjord p50 / p99 | RabbitMQ p50 / p99 | p50 Fjord/RabbitMQ | p99 Fjord/RabbitMQ | server CPU per msg Fjord / RabbitMQ | target |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for row in rows {
        let (f, r) = (medians(&row.fjord), medians(&row.other));
        let pick = |k: usize| row.ratios.iter().map(|r| r[k]).collect::<Vec<f64>>();
        let (t, p50, p99) = (pick(0), pick(1), pick(2));
        let cpu = |runs: &[RunFigures]| {
            if runs.is_empty() {
                "-".into()
            } else {
                let v: Vec<f64> = runs.iter().map(RunFigures::server_us_per_msg).collect();
                format!("{:.0} µs", median(&v))
            }
        };
        let target = if t.is_empty() {
            "≥ 2x, p99 ≤ 1x".to_string()
        } else {
            format!(
                "≥ 2x {}, p99 ≤ 1x {}",
                if median(&t) >= 2.0 { "✔" } else { "✘" },
                if median(&p99) <= 1.0 { "✔" } else { "✘" }
            )
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
            row.scenario.label(),
            rate_cell(f, "-"),
            rate_cell(r, "-"),
            ratio_cell(&t),
            latency_cell(f),
            latency_cell(r),
            ratio_cell(&p50),
            ratio_cell(&p99),
            cpu(&row.fjord),
            cpu(&row.other),
            target
        );
        for (name, runs) in [("Fjord", &row.fjord), ("RabbitMQ", &row.other)] {
            let (lost, dup, ooo) = problems(runs);
            let nacked: u64 = runs.iter().map(|r| r.nacked).sum();
            if lost + dup + ooo + nacked > 0 {
                notes.push(format!(
                    "{}, {name}: {} lost, {} duplicates, {} out of order, {} nacked over {} runs",
                    row.scenario.label(),
                    thousands(lost),
                    thousands(dup),
                    thousands(ooo),
                    thousands(nacked),
                    runs.len()
                ));
            }
            notes.extend(
                runs.iter()
                    .flat_map(|r| &r.notes)
                    .map(|n| format!("{}, {name}: {n}", row.scenario.label())),
            );
        }
        notes.extend(row.failure_notes(&row.scenario.label()));
    }
    report::print_notes(&notes);
}

fn rabbitmq_settings(args: &Args) -> String {
    let mut s = String::from(
        "default settings (classic durable queues, persistent messages in its message store)",
    );
    if !args.rabbitmq_conf.is_empty() {
        s += &format!(" plus {}", args.rabbitmq_conf.join(", "));
    }
    s
}

fn fjord_settings(args: &Args) -> String {
    let settings = report::fjord_settings(&args.serve_arg);
    if args.fjord_cluster {
        format!(
            "{settings}, a 3-node cluster (clients on a node that carries them to the gateway's; queues with 3 replicas; server CPU of all three)"
        )
    } else {
        settings
    }
}

fn acks(args: &Args) -> String {
    if args.ack_every == 1 {
        "each delivery acked on its own".into()
    } else {
        format!("a multiple ack every {} deliveries", args.ack_every)
    }
}

fn pace(args: &Args) -> String {
    if args.rate == 0 {
        "as fast as the confirm window allows".into()
    } else {
        format!("{} messages/s each", thousands(args.rate))
    }
}
