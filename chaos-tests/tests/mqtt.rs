//! The short MQTT schedule: a three-node cluster with the MQTT gateway on
//! every node, QoS 1 and QoS 2 publishers and persistent-session
//! subscribers (two of them sharing a `$share` subscription) that move to
//! another node when theirs dies, while the node a client is connected
//! to, a leader of the gateway's topics or any node is SIGKILLed and
//! restarted. Every acknowledged message must reach every subscriber (and
//! the shared group), QoS 2 messages exactly once, in order, and nothing
//! unpublished may arrive. `FJORD_CHAOS_SEED` replays a schedule; the seed
//! is always printed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use fjord_chaos_tests::mqtt::{MqttRunConfig, run};
use fjord_testkit::fjord_binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_sessions_get_every_acknowledged_message_while_nodes_are_killed() {
    let seed = std::env::var("FJORD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed}");
    let config = MqttRunConfig::new(seed, Duration::from_secs(25));
    let dir = tempfile::tempdir().unwrap();
    let (report, faults) = run(&fjord_binary(None).unwrap(), dir.path(), &config)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}"));
    println!("seed {seed}: {} faults", faults.len());
    for f in &faults {
        println!("  {:>6.1} s  {}", f.at.as_secs_f64(), f.what);
    }
    println!("{}", report.table());
    let anomalies: Vec<&String> = report.anomalies().take(20).collect();
    assert!(
        report.ok(),
        "anomalies with seed {seed}:\n{}{anomalies:#?}",
        report.table()
    );
    assert!(
        report.acked > 0 && !faults.is_empty(),
        "the run did nothing (seed {seed})"
    );
}
