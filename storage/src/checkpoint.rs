//! Small text checkpoint files in a partition directory, written atomically
//! (write `<name>.tmp`, fsync, rename).
//!
//! # Format
//! - `recovery-point-offset-checkpoint`: `0\n<offset>\n` (version, then the
//!   offset below which every batch is known to be flushed).
//! - `leader-epoch-checkpoint`: `0\n<count>\n` then `<epoch> <start offset>`
//!   per line (Kafka's layout).
//!
//! # Crash
//! A torn or garbage checkpoint reads as absent: recovery then scans more,
//! never less, so a stale or missing checkpoint costs time, not data.

use std::io::Write;
use std::path::Path;

use crate::Result;
use crate::index_file::io_err;

pub(crate) const RECOVERY_POINT: &str = "recovery-point-offset-checkpoint";
pub(crate) const LEADER_EPOCHS: &str = "leader-epoch-checkpoint";

fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut file = std::fs::File::create(&tmp).map_err(|e| io_err("create checkpoint", &tmp, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| io_err("write checkpoint", &tmp, e))?;
    file.sync_data()
        .map_err(|e| io_err("fsync checkpoint", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_err("rename checkpoint", &path, e))
}

pub(crate) fn write_recovery_point(dir: &Path, offset: i64) -> Result<()> {
    write_atomic(dir, RECOVERY_POINT, &format!("0\n{offset}\n"))
}

/// The recovery point, or `None` when the file is missing or unreadable.
pub(crate) fn read_recovery_point(dir: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(RECOVERY_POINT)).ok()?;
    let mut lines = text.lines();
    (lines.next()? == "0").then_some(())?;
    let offset = lines.next()?.trim().parse().ok()?;
    (offset >= 0).then_some(offset)
}

pub(crate) fn write_leader_epochs(dir: &Path, epochs: &[(i32, i64)]) -> Result<()> {
    let mut text = format!("0\n{}\n", epochs.len());
    for (epoch, start) in epochs {
        text.push_str(&format!("{epoch} {start}\n"));
    }
    write_atomic(dir, LEADER_EPOCHS, &text)
}

/// Leader epochs with their start offsets; empty when missing or unreadable.
pub(crate) fn read_leader_epochs(dir: &Path) -> Vec<(i32, i64)> {
    let Ok(text) = std::fs::read_to_string(dir.join(LEADER_EPOCHS)) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Vec::new();
    }
    let Some(count) = lines.next().and_then(|l| l.trim().parse::<usize>().ok()) else {
        return Vec::new();
    };
    let entries: Vec<(i32, i64)> = lines
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect();
    if entries.len() == count {
        entries
    } else {
        Vec::new()
    }
}
