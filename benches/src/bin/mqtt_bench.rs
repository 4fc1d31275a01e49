//! MQTT benchmark: Fjord's MQTT gateway side by side with Mosquitto, both
//! started by this program on loopback, driven by the same load generator
//! in the same run.
//!
//! 1. **Throughput and latency**: for 1→1 and 4→4 at QoS 0 and QoS 1 with
//!    100-byte payloads, publisher *i* publishes `--qos0-messages` or
//!    `--qos1-messages` to `bench/<run>/<i>` and subscriber *i* subscribes to
//!    that one topic, so 4→4 is four independent 1→1 streams. QoS 1
//!    publishers keep `--inflight` messages unacknowledged at most; QoS 0
//!    publishers send as fast as the client writes. Each payload starts
//!    with its send time (ns since the run began, taken just before the
//!    publish call) and a sequence number; subscribers record publish call →
//!    receipt latency, losses, duplicates and reordering. Throughput is
//!    messages received by all subscribers / (last receipt − first publish).
//!    Fjord and Mosquitto alternate, `--runs` times per scenario (the first
//!    of each pair alternates too); medians and Fjord/Mosquitto ratios are
//!    printed, and with each run the CPU the server and the load generator
//!    used and the messages Fjord counted as dropped (its `/metrics`).
//! 2. **Idle connections**: `--idle-connections` raw MQTT 3.1.1 connections
//!    (CONNECT with keep-alive 60 s, CONNACK read) to a freshly started
//!    server of each kind; resident memory before and after gives bytes per
//!    connection.
//!
//! The client is rumqttc (MQTT 3.1.1) on a multi-threaded tokio runtime.
//! Nothing is asserted; a run that stalls ends with a message that says how
//! far it got and shows the server's log, and the next run goes on.
//!
//! ```text
//! scripts/install-mqtt-tools.sh        # Mosquitto, if missing
//! cargo build --release -p fjord -p fjord-benches
//! target/release/mqtt_bench
//! ```

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Parser;
use fjord_benches::host::machine;
use fjord_benches::mqtt_idle::{IdleFigures, idle_comparison, raise_open_file_limit};
use fjord_benches::mqtt_load::{LoadSettings, RunFigures, Scenario, run_once};
use fjord_benches::mqtt_server::{BrokerProcess, MOSQUITTO_SETTINGS, find_mosquitto, version_line};
use fjord_benches::receipts::medians;
use fjord_benches::report::{
    self, ScenarioRuns, latency_cell, list, problems, rate_cell, ratio_cell,
};
use fjord_benches::stats::{median, mib, ms, thousands};
use fjord_testkit::fjord_binary;
use rumqttc::QoS;

#[derive(Parser, Debug, Clone)]
#[command(about = "Fjord's MQTT gateway against Mosquitto: messages/s, latency, idle connections")]
struct Args {
    /// The fjord binary (default: next to this program).
    #[arg(long)]
    fjord_bin: Option<PathBuf>,
    /// The mosquitto binary (default: `mosquitto` on PATH, else /usr/sbin).
    #[arg(long)]
    mosquitto_bin: Option<PathBuf>,
    /// Where Fjord's data directory and both servers' logs are made (a real
    /// disk).
    #[arg(long, default_value = "target/bench-data")]
    dir: PathBuf,
    /// Messages per publisher in a QoS 0 run.
    #[arg(long, default_value_t = 200_000)]
    qos0_messages: u64,
    /// Messages per publisher in a QoS 1 run.
    #[arg(long, default_value_t = 100_000)]
    qos1_messages: u64,
    /// Payload bytes (at least 16: send time and sequence number).
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Unacknowledged QoS 1 messages a publisher may have (rumqttc inflight).
    #[arg(long, default_value_t = 100)]
    inflight: u16,
    /// Messages/s per publisher; 0 publishes as fast as the client takes
    /// them (the default, a saturating load whose latency is mostly
    /// queueing).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Publisher→subscriber pair counts to run.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pairs: Vec<usize>,
    /// QoS levels to run (0 and/or 1).
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    qos: Vec<u8>,
    /// Runs per scenario and server; medians are printed. 0 skips them.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A run fails if no message is acknowledged or received for this long.
    #[arg(long, default_value_t = 10)]
    stall_secs: u64,
    /// QoS 0: once every message is written, how long subscribers may stay
    /// silent before the missing ones count as lost.
    #[arg(long, default_value_t = 2_000)]
    drain_ms: u64,
    /// Hard limit on one run.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
    /// Idle connections per server; 0 skips the measurement.
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Idle connections opened concurrently.
    #[arg(long, default_value_t = 100)]
    idle_batch: usize,
    /// Extra lines for mosquitto.conf, after the built-in settings (e.g.
    /// `--mosquitto-conf "set_tcp_nodelay true"`).
    #[arg(long)]
    mosquitto_conf: Vec<String>,
    /// Extra flags for `fjord serve` (e.g. --serve-arg=--flush-policy
    /// --serve-arg=os).
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
    /// FJORD_LOG_LEVEL for the Fjord server.
    #[arg(long, default_value = "warn")]
    fjord_log_level: String,
    /// Keep the data directory and the servers' logs.
    #[arg(long)]
    keep: bool,
}

impl Args {
    /// The flags that shape the load of each run.
    fn load_settings(&self) -> LoadSettings {
        LoadSettings {
            payload: self.payload,
            inflight: self.inflight,
            rate: self.rate,
            stall_secs: self.stall_secs,
            drain_ms: self.drain_ms,
            timeout_secs: self.timeout_secs,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.payload < 16 {
        bail!("--payload must be at least 16 bytes (send time and sequence number)");
    }
    if args.inflight == 0 {
        bail!("--inflight must be at least 1");
    }
    let fjord_bin = fjord_binary(args.fjord_bin.as_deref())?;
    let mosquitto_bin = args.mosquitto_bin.clone().unwrap_or_else(find_mosquitto);
    let files = raise_open_file_limit();
    let scratch = report::start(&args.dir, "mqtt-bench-")?;
    println!(
        "fjord: {} ({}), {}, data in {} (every PUBLISH appended to the log)",
        version_line(&fjord_bin, "--version"),
        fjord_bin.display(),
        report::fjord_settings(&args.serve_arg),
        scratch.path().display()
    );
    println!(
        "mosquitto: {} ({}), settings: {}",
        version_line(&mosquitto_bin, "-h"),
        mosquitto_bin.display(),
        mosquitto_settings(&args, true)
    );
    match &files {
        Ok((old, new)) => println!("open-file limit of this process: {old} → {new}"),
        Err(e) => println!("open-file limit not raised: {e}"),
    }
    println!(
        "client: rumqttc (MQTT 3.1.1, clean session), {} tokio worker threads, payload {} B, \
         QoS 1 window {} messages per publisher; publishers send {}; publisher i → topic \
         bench/<run>/i → subscriber i (N→N is N independent 1→1 streams); latency = publish \
         call → receipt",
        tokio::runtime::Handle::current().metrics().num_workers(),
        args.payload,
        args.inflight,
        pace(&args)
    );

    let mut rows = Vec::new();
    if args.runs > 0 {
        let mut fjord = BrokerProcess::fjord(
            &fjord_bin,
            &scratch.path().join("fjord"),
            &args.fjord_log_level,
            &args.serve_arg,
        )?;
        let mut mosquitto = BrokerProcess::mosquitto(
            &mosquitto_bin,
            &scratch.path().join("mosquitto"),
            &args.mosquitto_conf,
        )?;
        println!(
            "servers: Fjord MQTT on {} (pid {}), Mosquitto on {} (pid {})",
            fjord.addr,
            fjord.pid(),
            mosquitto.addr,
            mosquitto.pid()
        );
        for &pairs in &args.pairs {
            for &qos in &args.qos {
                let (qos, messages) = match qos {
                    0 => (QoS::AtMostOnce, args.qos0_messages),
                    1 => (QoS::AtLeastOnce, args.qos1_messages),
                    other => bail!("--qos {other}: only 0 and 1 are measured"),
                };
                let scenario = Scenario {
                    pairs,
                    qos,
                    messages,
                };
                rows.push(scenario_runs(&args, scenario, &mut fjord, &mut mosquitto).await);
            }
        }
    }

    let idle = if args.idle_connections > 0 {
        let start_fjord = || {
            BrokerProcess::fjord(
                &fjord_bin,
                &scratch.path().join("fjord-idle"),
                &args.fjord_log_level,
                &args.serve_arg,
            )
        };
        let start_mosquitto = || {
            BrokerProcess::mosquitto(
                &mosquitto_bin,
                &scratch.path().join("mosquitto-idle"),
                &args.mosquitto_conf,
            )
        };
        let (count, batch) = (args.idle_connections, args.idle_batch);
        Some(idle_comparison(count, batch, start_fjord, start_mosquitto).await?)
    } else {
        None
    };

    report::summary_heading();
    print_summary(&args, &rows, idle.as_ref());
    report::finish(scratch, args.keep);
    Ok(())
}

/// One scenario's runs on Fjord and Mosquitto, with (throughput ratio, p99
/// ratio) per run pair.
type ScenarioRow = ScenarioRuns<Scenario, RunFigures, (f64, f64)>;

async fn scenario_runs(
    args: &Args,
    scenario: Scenario,
    fjord: &mut BrokerProcess,
    mosquitto: &mut BrokerProcess,
) -> ScenarioRow {
    let label = scenario.label();
    let settings = args.load_settings();
    let mut row = ScenarioRow::start(scenario, &label, scenario.pairs, scenario.messages);
    for run in 0..args.runs {
        let mut pair: [Option<RunFigures>; 2] = [None, None];
        for which in report::order(run) {
            let broker: &mut BrokerProcess = if which == 0 { fjord } else { mosquitto };
            let tag = format!(
                "{}x{}-q{}-r{run}-{}",
                scenario.pairs,
                scenario.pairs,
                scenario.qos as u8,
                broker.name.to_lowercase()
            );
            let result = run_once(&settings, broker, scenario, &tag).await;
            let server = (broker.name, 9);
            pair[which] = row.outcome(run, server, result, broker.log_path(), RunFigures::describe);
        }
        row.add(pair, |f, m| {
            let (f, m) = (&f.delivered, &m.delivered);
            (
                f.msgs_per_s / m.msgs_per_s,
                f.p99_us as f64 / m.p99_us.max(1) as f64,
            )
        });
    }
    for (name, runs) in [("Fjord", &row.fjord), ("Mosquitto", &row.other)] {
        if let Some(m) = medians(runs) {
            println!(
                "  median {name:<9}: {:>9} msg/s  p50 {:>8}  p99 {:>8}  over {} runs",
                thousands(m.0.round() as u64),
                ms(m.1),
                ms(m.2),
                runs.len()
            );
        }
    }
    if !row.ratios.is_empty() {
        let t: Vec<f64> = row.ratios.iter().map(|r| r.0).collect();
        let p: Vec<f64> = row.ratios.iter().map(|r| r.1).collect();
        println!(
            "  Fjord/Mosquitto: throughput {:.2} (per run {}), p99 {:.2} (per run {})",
            median(&t),
            list(&t),
            median(&p),
            list(&p)
        );
    }
    row
}

fn print_summary(args: &Args, rows: &[ScenarioRow], idle: Option<&[IdleFigures; 2]>) {
    println!(
        "Machine: {}. Same run, same load generator (rumqttc, MQTT 3.1.1); {} runs per \
         scenario alternating the servers; {} B payloads; QoS 1 window {}; publishers send {}; \
         publisher i → subscriber i on its own topic. Mosquitto: {}. Fjord: {}, every message \
         appended to its log.{}",
        machine(),
        args.runs,
        args.payload,
        args.inflight,
        pace(args),
        mosquitto_settings(args, false),
        report::fjord_settings(&args.serve_arg),
        if args.rate == 0 {
            " QoS 0 publishers are not flow-controlled, so at this saturating load QoS 0 \
             latency is mostly time queued in socket buffers in front of the slower side."
        } else {
            ""
        }
    );
    println!();
    if !rows.is_empty() {
        println!(
            "| scenario | Fjord msg/s | Mosquitto msg/s | throughput Fjord/Mosquitto | Fjord p50 / p99 | Mosquitto p50 / p99 | p99 Fjord/Mosquitto | target |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    }
    let mut notes = Vec::new();
    for row in rows {
        let (f, m) = (medians(&row.fjord), medians(&row.other));
        let t: Vec<f64> = row.ratios.iter().map(|r| r.0).collect();
        let p: Vec<f64> = row.ratios.iter().map(|r| r.1).collect();
        let target = if row.scenario.qos == QoS::AtLeastOnce && !t.is_empty() {
            format!(
                "≥ 1.0 {}, p99 ≤ 2x {}",
                if median(&t) >= 1.0 { "✔" } else { "✘" },
                if median(&p) <= 2.0 { "✔" } else { "✘" }
            )
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.scenario.label(),
            rate_cell(f, "failed"),
            rate_cell(m, "failed"),
            ratio_cell(&t),
            latency_cell(f),
            latency_cell(m),
            ratio_cell(&p),
            target
        );
        for (name, runs) in [("Fjord", &row.fjord), ("Mosquitto", &row.other)] {
            let (lost, dup, ooo) = problems(runs);
            if lost + dup + ooo > 0 {
                notes.push(format!(
                    "{}, {name}: {} lost, {} duplicates, {} out of order over {} runs",
                    row.scenario.label(),
                    thousands(lost),
                    thousands(dup),
                    thousands(ooo),
                    runs.len()
                ));
            }
        }
        notes.extend(row.failure_notes(&row.scenario.label()));
    }
    if let Some([f, m]) = idle {
        println!();
        println!("| idle connections (keep-alive 60 s) | Fjord | Mosquitto | Fjord/Mosquitto |");
        println!("|---|---|---|---|");
        let cell = |x: &IdleFigures| {
            format!(
                "{} B per connection ({} open; VmRSS {:.1} → {:.1} MiB)",
                x.per_connection()
                    .map_or("-".into(), |b| thousands(b.round() as u64)),
                thousands(x.opened as u64),
                mib(x.rss_before),
                mib(x.rss_after)
            )
        };
        let ratio = match (f.per_connection(), m.per_connection()) {
            (Some(a), Some(b)) => format!("**{:.2}**", a / b.max(1.0)),
            _ => "-".into(),
        };
        println!(
            "| {} asked | {} | {} | {ratio} |",
            thousands(f.asked as u64),
            cell(f),
            cell(m)
        );
        for x in [f, m] {
            if x.opened < x.asked || x.alive < x.opened {
                notes.push(format!(
                    "idle connections: {} of {} opened, {} still open at the measurement{}",
                    thousands(x.opened as u64),
                    thousands(x.asked as u64),
                    thousands(x.alive as u64),
                    x.first_error
                        .as_ref()
                        .map(|e| format!(" (first failure: {e})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    report::print_notes(&notes);
}

/// Mosquitto's configuration lines, joined (`logging`: with the log lines).
fn mosquitto_settings(args: &Args, logging: bool) -> String {
    MOSQUITTO_SETTINGS
        .iter()
        .copied()
        .chain(args.mosquitto_conf.iter().map(String::as_str))
        .filter(|s| logging || !s.starts_with("log_"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pace(args: &Args) -> String {
    if args.rate == 0 {
        "as fast as the client takes messages".into()
    } else {
        format!("{} messages/s each", thousands(args.rate))
    }
}
