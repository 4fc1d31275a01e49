//! Broker counters and gauges, rendered in the Prometheus text format.
//!
//! Counters are lock-free atomics bumped on the hot path; gauges that
//! describe state (topics, partitions, log sizes, groups) are computed when
//! the page is rendered.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a produce failed, as a metric label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProduceFailure {
    InvalidBatch,
    UnknownTopic,
    Storage,
    Other,
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    produce_requests: AtomicU64,
    produce_records: AtomicU64,
    produce_bytes: AtomicU64,
    produce_errors: [AtomicU64; 4],
    fetch_requests: AtomicU64,
    fetch_bytes: AtomicU64,
    replica_fetches: AtomicU64,
    replica_fetch_bytes: AtomicU64,
    flushes: AtomicU64,
    flush_micros: AtomicU64,
    offset_commits: AtomicU64,
}

/// State gauges, gathered by the broker at render time.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) topics: usize,
    pub(crate) partitions: usize,
    pub(crate) log_size_bytes: u64,
    pub(crate) groups: usize,
    pub(crate) group_members: usize,
}

impl Metrics {
    pub(crate) fn record_produce(&self, records: u64, bytes: u64) {
        self.produce_requests.fetch_add(1, Ordering::Relaxed);
        self.produce_records.fetch_add(records, Ordering::Relaxed);
        self.produce_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn record_produce_error(&self, why: ProduceFailure) {
        self.produce_errors[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_fetch(&self, bytes: u64) {
        self.fetch_requests.fetch_add(1, Ordering::Relaxed);
        self.fetch_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A leader answered a follower's fetch with `bytes` of batches.
    pub(crate) fn record_replica_fetch(&self, bytes: u64) {
        self.replica_fetches.fetch_add(1, Ordering::Relaxed);
        self.replica_fetch_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn record_flush(&self, took: Duration) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.flush_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_offset_commit(&self) {
        self.offset_commits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "fjord_produce_requests_total",
            "counter",
            "Produce requests appended.",
            &[("", get(&self.produce_requests) as f64)],
        );
        metric(
            "fjord_produce_records_total",
            "counter",
            "Records appended by produce requests.",
            &[("", get(&self.produce_records) as f64)],
        );
        metric(
            "fjord_produce_bytes_total",
            "counter",
            "Batch bytes appended by produce requests.",
            &[("", get(&self.produce_bytes) as f64)],
        );
        let reasons = ["invalid_batch", "unknown_topic", "storage", "other"];
        let errors: Vec<(String, f64)> = reasons
            .iter()
            .zip(&self.produce_errors)
            .map(|(r, c)| (format!("{{reason=\"{r}\"}}"), get(c) as f64))
            .collect();
        let errors: Vec<(&str, f64)> = errors.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "fjord_produce_errors_total",
            "counter",
            "Produce requests that failed, by reason.",
            &errors,
        );
        metric(
            "fjord_fetch_requests_total",
            "counter",
            "Fetch requests served.",
            &[("", get(&self.fetch_requests) as f64)],
        );
        metric(
            "fjord_fetch_bytes_total",
            "counter",
            "Bytes returned by fetches.",
            &[("", get(&self.fetch_bytes) as f64)],
        );
        metric(
            "fjord_replica_fetch_responses_total",
            "counter",
            "Follower fetches this node answered as a partition leader.",
            &[("", get(&self.replica_fetches) as f64)],
        );
        metric(
            "fjord_replica_fetch_bytes_total",
            "counter",
            "Batch bytes sent to followers.",
            &[("", get(&self.replica_fetch_bytes) as f64)],
        );
        metric(
            "fjord_flushes_total",
            "counter",
            "Log fsyncs (group commits).",
            &[("", get(&self.flushes) as f64)],
        );
        metric(
            "fjord_flush_seconds_sum",
            "counter",
            "Seconds spent in log fsyncs.",
            &[("", get(&self.flush_micros) as f64 / 1e6)],
        );
        metric(
            "fjord_offset_commits_total",
            "counter",
            "Consumer-group offset commits.",
            &[("", get(&self.offset_commits) as f64)],
        );
        metric(
            "fjord_topics",
            "gauge",
            "Topics, internal ones included.",
            &[("", gauges.topics as f64)],
        );
        metric(
            "fjord_partitions",
            "gauge",
            "Partitions on this node.",
            &[("", gauges.partitions as f64)],
        );
        metric(
            "fjord_log_size_bytes",
            "gauge",
            "Bytes in all partition logs.",
            &[("", gauges.log_size_bytes as f64)],
        );
        metric(
            "fjord_groups",
            "gauge",
            "Consumer groups known to the coordinator.",
            &[("", gauges.groups as f64)],
        );
        metric(
            "fjord_group_members",
            "gauge",
            "Members of all consumer groups.",
            &[("", gauges.group_members as f64)],
        );
        out
    }
}
