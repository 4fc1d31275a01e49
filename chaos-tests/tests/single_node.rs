//! The short CI schedule: a single node under SIGKILL restarts and SIGSTOP
//! pauses must lose no acknowledged write, reorder nothing, duplicate
//! nothing and never show a consumer data that later disappears.
//! `FJORD_CHAOS_SEED` replays a schedule; the seed is always printed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use fjord_chaos_tests::{RunConfig, run};
use fjord_testkit::fjord_binary;

async fn schedule(serve_args: &[&str]) {
    let seed = std::env::var("FJORD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let config = RunConfig {
        seed,
        duration: Duration::from_secs(12),
        partitions: 3,
        producers: 2,
        nodes: 1,
        serve_args: serve_args.iter().map(|s| s.to_string()).collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let (report, faults) = run(&fjord_binary(None).unwrap(), dir.path(), &config)
        .await
        .unwrap();
    println!(
        "seed {seed} {serve_args:?}: {} faults\n{}",
        faults.len(),
        report.table()
    );
    assert!(report.ok(), "anomalies with seed {seed}: {report:#?}");
    assert!(
        report.acked > 0 && !faults.is_empty(),
        "the run did nothing (seed {seed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_under_kill_9_and_pauses() {
    schedule(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_cache_flushing_survives_process_crashes_too() {
    // A process crash keeps the page cache: even without fsync before the
    // acknowledgement nothing acknowledged may be lost.
    schedule(&["--flush-policy", "os"]).await;
}
