//! The short AMQP schedule: confirming publishers and acking consumers on
//! the AMQP gateway of three real `fjord` processes while the node a
//! client is on, the node that runs the gateway or a queue's leader is
//! SIGKILLed and restarted. Every confirmed message must be acknowledged,
//! every second delivery flagged `redelivered`, nothing delivered again
//! once its acknowledgement was stored, nothing unpublished, first
//! deliveries in order. `FJORD_CHAOS_SEED` replays a schedule; the seed
//! is always printed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use fjord_chaos_tests::amqp::{AmqpRunConfig, run};
use fjord_testkit::fjord_binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_kills_and_redeliveries_are_flagged() {
    let seed = std::env::var("FJORD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    // Kills only: a partition of the node running the gateway still gives
    // messages twice, some without `redelivered` (see the README).
    let config = AmqpRunConfig {
        kills_only: true,
        ..AmqpRunConfig::new(seed, Duration::from_secs(20))
    };
    let dir = tempfile::tempdir().unwrap();
    let (report, faults) = run(&fjord_binary(None).unwrap(), dir.path(), &config)
        .await
        .unwrap();
    println!("seed {seed}: {} faults", faults.len());
    for f in &faults {
        println!("  {:>6.1} s  {}", f.at.as_secs_f64(), f.what);
    }
    println!("{}", report.table());
    assert!(report.ok(), "anomalies with seed {seed}: {report:#?}");
    assert!(
        report.confirmed > 0 && report.deliveries > 0 && !faults.is_empty(),
        "the run did nothing (seed {seed})"
    );
}
