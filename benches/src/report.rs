//! What the MQTT and AMQP benchmark programs print alike: the start of
//! their output, the order of the two servers in each run, a failed run
//! with the tail of its server's log, the cells of the summary table and
//! the notes under it.

use std::path::Path;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::host::machine;
use crate::process::log_tail;
use crate::receipts::Delivered;
use crate::stats::{median, ms, thousands};

/// Makes the program's scratch directory (named `prefix`...) in `dir`,
/// then prints the command line and the machine.
///
/// # Errors
/// `dir` cannot be made or written to.
pub fn start(dir: &Path, prefix: &str) -> Result<TempDir> {
    std::fs::create_dir_all(dir)?;
    let scratch = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir)
        .with_context(|| format!("make a directory in {}", dir.display()))?;
    println!(
        "command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!("machine: {}", machine());
    Ok(scratch)
}

/// Prints the heading of the summary.
pub fn summary_heading() {
    println!();
    println!("## Summary (paste into docs/benchmarks.md)");
    println!();
}

/// After the summary: keeps the scratch directory (data and server logs)
/// if asked to.
pub fn finish(scratch: TempDir, keep: bool) {
    if keep {
        let kept = scratch.keep();
        println!("\ndata and server logs kept in {}", kept.display());
    }
}

/// One scenario's runs on Fjord and on the other server (Mosquitto,
/// RabbitMQ), for the summary.
pub struct ScenarioRuns<S, R, P> {
    pub scenario: S,
    pub fjord: Vec<R>,
    pub other: Vec<R>,
    /// Per run pair where both succeeded: Fjord's figures over the other's.
    pub ratios: Vec<P>,
    /// Failed runs, for the notes.
    pub failures: Vec<String>,
}

impl<S, R, P> ScenarioRuns<S, R, P> {
    /// No runs yet; prints the scenario's heading: `label`, `publishers`
    /// each publishing `messages`.
    pub fn start(scenario: S, label: &str, publishers: usize, messages: u64) -> Self {
        println!(
            "\n### {label}: {publishers} publisher(s) × {} messages",
            thousands(messages)
        );
        ScenarioRuns {
            scenario,
            fjord: Vec::new(),
            other: Vec::new(),
            ratios: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Prints how run `run` of server `name` (padded to `width`) went: its
    /// figures as `describe` puts them, or the failure (kept for the notes)
    /// and the tail of the server's `log`. Returns the figures.
    pub fn outcome(
        &mut self,
        run: usize,
        (name, width): (&str, usize),
        result: Result<R>,
        log: &Path,
        describe: impl Fn(&R) -> String,
    ) -> Option<R> {
        match result {
            Ok(figures) => {
                println!("  run {run} {name:<width$}: {}", describe(&figures));
                Some(figures)
            }
            Err(e) => {
                println!("  run {run} {name:<width$}: FAILED: {e:#}");
                println!("  {name}'s log ({}):", log.display());
                println!("{}", log_tail(log, 20));
                self.failures.push(format!("{name} run {run}: {e:#}"));
                None
            }
        }
    }

    /// Adds one run on each server (`None` where it failed); with both,
    /// their `ratio` too.
    pub fn add(&mut self, pair: [Option<R>; 2], ratio: impl FnOnce(&R, &R) -> P) {
        if let [Some(f), Some(o)] = &pair {
            self.ratios.push(ratio(f, o));
        }
        let [f, o] = pair;
        self.fjord.extend(f);
        self.other.extend(o);
    }

    /// The failed runs as notes under `label`.
    pub fn failure_notes<'a>(&'a self, label: &'a str) -> impl Iterator<Item = String> + 'a {
        self.failures.iter().map(move |f| format!("{label}: {f}"))
    }
}

/// Which of the two servers goes first in run `run`: they alternate, so
/// neither always runs on a warmer (or more tired) machine.
pub fn order(run: usize) -> [usize; 2] {
    if run.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// Fjord's settings: the default ones, or the extra `fjord serve` flags.
pub fn fjord_settings(serve_arg: &[String]) -> String {
    if serve_arg.is_empty() {
        "default settings".into()
    } else {
        format!("settings {}", serve_arg.join(" "))
    }
}

/// Ratios as a list: `1.23, 0.98`.
pub fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A throughput cell from [`medians`](crate::receipts::medians);
/// `missing` without a successful run.
pub fn rate_cell(m: Option<(f64, f64, f64)>, missing: &str) -> String {
    m.map_or(missing.into(), |m| thousands(m.0.round() as u64))
}

/// A latency cell from [`medians`](crate::receipts::medians): p50 / p99.
pub fn latency_cell(m: Option<(f64, f64, f64)>) -> String {
    m.map_or("-".into(), |m| format!("{} / {}", ms(m.1), ms(m.2)))
}

/// A ratio cell: the median in bold, then each run's.
pub fn ratio_cell(v: &[f64]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        format!("**{:.2}** ({})", median(v), list(v))
    }
}

/// Messages lost, duplicated and delivered out of order over `runs`.
pub fn problems<R: AsRef<Delivered>>(runs: &[R]) -> (u64, u64, u64) {
    let sum = |f: fn(&Delivered) -> u64| runs.iter().map(|r| f(r.as_ref())).sum::<u64>();
    (
        sum(|r| r.expected - r.received),
        sum(|r| r.duplicates),
        sum(|r| r.out_of_order),
    )
}

/// Prints the notes under the summary table, if there are any.
pub fn print_notes(notes: &[String]) {
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("- {n}");
        }
    }
}
