//! The short CI schedule on clusters: 3 and 5 real `fjord` processes,
//! RF=3 topics with `min.insync.replicas=2`, idempotent `acks=all`
//! producers, while the leader of a partition, the controller or any node
//! is SIGKILLed and restarted, or paused with SIGSTOP. No acknowledged
//! write may be lost, duplicated, reordered or read and then lost.
//! `FJORD_CHAOS_SEED` replays a schedule; the seed is always printed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use fjord_chaos_tests::{RunConfig, run};
use fjord_testkit::fjord_binary;

async fn schedule(nodes: usize, seconds: u64) {
    let seed = std::env::var("FJORD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let config = RunConfig {
        seed,
        duration: Duration::from_secs(seconds),
        partitions: 3,
        producers: 2,
        nodes,
        serve_args: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let (report, faults) = run(&fjord_binary(None).unwrap(), dir.path(), &config)
        .await
        .unwrap();
    println!("seed {seed}, {nodes} nodes: {} faults", faults.len());
    for f in &faults {
        println!("  {:>6.1} s  {}", f.at.as_secs_f64(), f.what);
    }
    println!("{}", report.table());
    assert!(report.ok(), "anomalies with seed {seed}: {report:#?}");
    assert!(
        report.acked > 0 && !faults.is_empty(),
        "the run did nothing (seed {seed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_lose_no_acknowledged_write_under_kills_and_pauses() {
    schedule(3, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_lose_no_acknowledged_write_under_kills_and_pauses() {
    schedule(5, 15).await;
}
