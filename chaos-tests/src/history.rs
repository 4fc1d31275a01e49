//! What the workload saw, and the checker that judges it.
//!
//! A history is every produce attempt (value → acknowledged at
//! partition/offset, or failed: unknown whether it landed), every record a
//! consumer read during the run (with the offsets in the order it read
//! them), and the final contents of the log read after the faults stop.
//!
//! # Anomalies
//! - **lost**: an acknowledged value missing from the final log.
//! - **moved**: an acknowledged value at another partition/offset than
//!   acknowledged (reordering, or a rewritten log).
//! - **duplicate**: a value stored twice (the workload's producers are
//!   idempotent, so a retry must not store a value again).
//! - **backwards**: a consumer read offsets that went down in a partition.
//! - **phantom read**: a consumer read a value at an offset where the final
//!   log holds something else: it saw data above the high watermark that was
//!   later lost.

use std::collections::BTreeMap;

/// Where a record lives.
pub type Position = (u32, i64);

/// Everything recorded during a run.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// value → where the broker said it stored it.
    pub acked: BTreeMap<String, Position>,
    /// Values whose produce failed (they may or may not be stored).
    pub failed: Vec<String>,
    /// Sends retried after a lost connection (idempotent retries).
    pub retries: usize,
    /// Per consumer session and partition, what was read in order.
    pub reads: Vec<(u32, Vec<(i64, String)>)>,
    /// The log after the run: partition → offset → value.
    pub final_log: BTreeMap<u32, BTreeMap<i64, String>>,
}

/// The checker's verdict.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub acked: usize,
    pub failed: usize,
    pub retries: usize,
    pub read: usize,
    pub stored: usize,
    pub lost: Vec<String>,
    pub moved: Vec<String>,
    pub duplicates: Vec<String>,
    pub backwards: Vec<String>,
    pub phantom_reads: Vec<String>,
}

impl Report {
    /// No anomaly of any kind.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.moved.is_empty()
            && self.duplicates.is_empty()
            && self.backwards.is_empty()
            && self.phantom_reads.is_empty()
    }

    /// A summary table for the terminal.
    pub fn table(&self) -> String {
        let rows = [
            ("acknowledged writes", self.acked, true),
            ("failed writes (indeterminate)", self.failed, true),
            ("retried sends (idempotent)", self.retries, true),
            ("records read during the run", self.read, true),
            ("records in the final log", self.stored, true),
            ("lost acknowledged writes", self.lost.len(), false),
            ("moved (reordered) writes", self.moved.len(), false),
            ("duplicates", self.duplicates.len(), false),
            ("offsets going backwards", self.backwards.len(), false),
            (
                "phantom reads (above the HW)",
                self.phantom_reads.len(),
                false,
            ),
        ];
        let mut out = String::new();
        for (name, n, info) in rows {
            let verdict = if info {
                ""
            } else if n == 0 {
                "ok"
            } else {
                "FAIL"
            };
            out.push_str(&format!("{name:<32} {n:>10}  {verdict}\n"));
        }
        out
    }
}

/// Judges a history.
pub fn check(history: &History) -> Report {
    let mut report = Report {
        acked: history.acked.len(),
        failed: history.failed.len(),
        retries: history.retries,
        read: history.reads.iter().map(|(_, r)| r.len()).sum(),
        stored: history.final_log.values().map(BTreeMap::len).sum(),
        ..Report::default()
    };
    let mut stored_at: BTreeMap<&str, Vec<Position>> = BTreeMap::new();
    for (partition, log) in &history.final_log {
        for (offset, value) in log {
            stored_at
                .entry(value.as_str())
                .or_default()
                .push((*partition, *offset));
        }
    }
    for (value, positions) in &stored_at {
        if positions.len() > 1 {
            report.duplicates.push(format!("{value} at {positions:?}"));
        }
    }
    for (value, position) in &history.acked {
        match stored_at.get(value.as_str()) {
            None => report
                .lost
                .push(format!("{value} (acknowledged at {position:?})")),
            Some(found) if !found.contains(position) => {
                report.moved.push(format!(
                    "{value}: acknowledged at {position:?}, stored at {found:?}"
                ));
            }
            Some(_) => {}
        }
    }
    for (partition, reads) in &history.reads {
        let log = history.final_log.get(partition);
        let mut last = i64::MIN;
        for (offset, value) in reads {
            if *offset <= last {
                report.backwards.push(format!(
                    "partition {partition}: offset {offset} after {last}"
                ));
            }
            last = *offset;
            if log.and_then(|l| l.get(offset)) != Some(value) {
                report.phantom_reads.push(format!(
                    "partition {partition} offset {offset}: read {value}"
                ));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        let mut h = History::default();
        for i in 0..4 {
            h.acked.insert(format!("v{i}"), (0, i));
            h.final_log.entry(0).or_default().insert(i, format!("v{i}"));
        }
        h.reads.push((0, vec![(0, "v0".into()), (1, "v1".into())]));
        h
    }

    #[test]
    fn a_clean_history_passes() {
        let report = check(&history());
        assert!(report.ok(), "{}", report.table());
        assert_eq!((report.acked, report.read, report.stored), (4, 2, 4));
    }

    #[test]
    fn every_anomaly_is_caught() {
        let mut h = history();
        h.final_log.get_mut(&0).unwrap().remove(&3); // lost
        h.final_log.get_mut(&0).unwrap().insert(2, "v9".into()); // v2 lost, v9 phantom below
        h.final_log.get_mut(&0).unwrap().insert(7, "v1".into()); // duplicate
        h.acked.insert("v5".into(), (0, 5));
        h.final_log.get_mut(&0).unwrap().insert(6, "v5".into()); // moved
        h.reads.push((0, vec![(2, "v2".into()), (1, "v1".into())])); // phantom + backwards
        let r = check(&h);
        assert!(!r.ok());
        assert_eq!(r.lost.len(), 2, "{:?}", r.lost);
        assert_eq!(r.moved.len(), 1);
        assert_eq!(r.duplicates.len(), 1);
        assert_eq!(r.backwards.len(), 1);
        assert_eq!(r.phantom_reads.len(), 1);
        assert!(r.table().contains("FAIL"));
    }
}
