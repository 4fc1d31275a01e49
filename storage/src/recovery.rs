//! Opening a partition directory after a clean stop or a crash.
//!
//! # What it does
//! 1. Takes inventory: every `<20 digits>.log` is a segment; leftovers of an
//!    interrupted compaction (`*.cleaned`, `*.swap`) and checkpoint temp
//!    files are removed (a `.swap` is a finished compaction output and is
//!    renamed into place first); any other name is reported and left alone.
//! 2. Segments below the one holding the recovery point were flushed: their
//!    batch chain is walked (lengths and magic, no CRC) and their indexes are
//!    checked, and rebuilt when they look wrong.
//! 3. From the segment holding the recovery point on (all segments without a
//!    checkpoint) every batch's CRC is verified and the indexes are rebuilt.
//! 4. At the first torn or corrupt batch the segment is cut there and every
//!    later segment is deleted: a log has no holes. Each cut is reported with
//!    its file name.
//!
//! Errors are returned only for real I/O failures; garbage never stops the
//! open.

use std::path::Path;

use tracing::warn;

use crate::checkpoint::{self, LEADER_EPOCHS, RECOVERY_POINT};
use crate::index_file::io_err;
use crate::log::RecoveryReport;
use crate::segment::Segment;
use crate::{LogConfig, Result};

pub(crate) struct Recovered {
    pub(crate) segments: Vec<Segment>,
    pub(crate) report: RecoveryReport,
}

/// Lists segment base offsets, cleaning up leftovers and reporting strays.
fn inventory(dir: &Path, report: &mut RecoveryReport) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("list partition directory", dir, e))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let path = dir.join(name);
        if let Some(target) = name.strip_suffix(".swap") {
            // A compaction finished writing this file: put it in place.
            std::fs::rename(&path, dir.join(target))
                .map_err(|e| io_err("finish compaction swap", &path, e))?;
            // Its indexes describe the old file: rebuild them.
            if let Some(stem) = target.strip_suffix(".log") {
                for ext in ["index", "timeindex"] {
                    let _ = std::fs::remove_file(dir.join(format!("{stem}.{ext}")));
                }
            }
            report.problems.push(format!(
                "{}: finished an interrupted compaction",
                path.display()
            ));
            continue;
        }
        if name.ends_with(".cleaned") || name.ends_with(".tmp") {
            std::fs::remove_file(&path).map_err(|e| io_err("remove leftover", &path, e))?;
            continue;
        }
        if name == RECOVERY_POINT || name == LEADER_EPOCHS || name == ".lock" {
            continue;
        }
        let stem = name.split('.').next().unwrap_or_default();
        let is_segment_file = stem.len() == 20
            && stem.bytes().all(|b| b.is_ascii_digit())
            && [".log", ".index", ".timeindex"]
                .iter()
                .any(|ext| &name[20..] == *ext);
        if !is_segment_file {
            report
                .problems
                .push(format!("{}: not a segment file, ignored", path.display()));
            continue;
        }
        if let Some(base) = name
            .strip_suffix(".log")
            .and_then(|s| s.parse::<i64>().ok())
        {
            bases.push(base);
        }
    }
    // Index files without a log file are orphans.
    for name in &names {
        for ext in [".index", ".timeindex"] {
            if let Some(base) = name.strip_suffix(ext).and_then(|s| s.parse::<i64>().ok())
                && !bases.contains(&base)
                && name.len() == 20 + ext.len()
            {
                {
                    let path = dir.join(name);
                    std::fs::remove_file(&path)
                        .map_err(|e| io_err("remove orphan index", &path, e))?;
                    report.problems.push(format!(
                        "{}: index without a segment, removed",
                        path.display()
                    ));
                }
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

pub(crate) fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let bases = inventory(dir, &mut report)?;
    let recovery_point = checkpoint::read_recovery_point(dir);
    let max_index = config.max_index_bytes as usize;
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    let mut cut = false;
    for (i, &base) in bases.iter().enumerate() {
        let mut segment = Segment::open(dir, base, config)?;
        if cut {
            let path = segment.log_path().to_path_buf();
            report.truncated.push((path.clone(), segment.size));
            report.problems.push(format!(
                "{}: after a corrupt segment, deleted",
                path.display()
            ));
            segment.delete_files()?;
            continue;
        }
        let next_base = bases.get(i + 1).copied();
        let flushed = matches!((recovery_point, next_base), (Some(rp), Some(next)) if next <= rp);
        let expected_start = segments.last().map(|s| s.next_offset);
        let outcome = segment.scan(!flushed, !flushed, max_index)?;
        if flushed && !segment.indexes_look_valid() {
            segment.scan(false, true, max_index)?;
            for path in segment.index_paths() {
                report.rebuilt_indexes.push(path.to_path_buf());
            }
        } else if !flushed {
            report
                .rebuilt_indexes
                .extend(segment.index_paths().iter().map(|p| p.to_path_buf()));
        }
        if let Some(problem) = &outcome.problem {
            report
                .problems
                .push(format!("{}: {problem}", segment.log_path().display()));
        }
        if outcome.truncated > 0 {
            report
                .truncated
                .push((segment.log_path().to_path_buf(), outcome.truncated));
        }
        // A segment that ends before the next one starts, or overlaps the
        // previous one, breaks the chain: keep what is consistent.
        let overlaps = expected_start.is_some_and(|start| segment.base_offset < start);
        if overlaps {
            let path = segment.log_path().to_path_buf();
            report.problems.push(format!(
                "{}: overlaps the previous segment, deleted",
                path.display()
            ));
            report.truncated.push((path, segment.size));
            segment.delete_files()?;
            cut = true;
            continue;
        }
        let ends_early =
            next_base.is_some_and(|next| segment.next_offset < next && outcome.problem.is_some());
        cut = ends_early;
        if segment.size == 0 && next_base.is_some() && outcome.problem.is_some() {
            // Nothing valid in it: drop it entirely, the log ends before it.
            let path = segment.log_path().to_path_buf();
            segment.delete_files()?;
            report
                .problems
                .push(format!("{}: no valid batch, deleted", path.display()));
            cut = true;
            continue;
        }
        segments.push(segment);
    }
    for problem in &report.problems {
        warn!(partition = %dir.display(), "recovery: {problem}");
    }
    Ok(Recovered { segments, report })
}
