//! Crash recovery: torn tails, corrupt batches, garbage files, property test.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::OpenOptions;
use std::io::Write;

use common::{batch, read_all, small_segments};
use fjord_storage::{Log, LogConfig};
use proptest::prelude::*;

fn segment_files(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn torn_tail_is_cut_and_reported_with_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for i in 0..10 {
        log.append(batch(&format!("b{i}"), 3, 1), 0, 1).unwrap();
    }
    log.flush().unwrap();
    drop(log);
    let seg = segment_files(dir.path(), "log").pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 27);
    let report = log.recovery_report();
    assert_eq!(report.truncated.len(), 1);
    assert_eq!(report.truncated[0].0, seg);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("00000000000000000000.log")),
        "{:?}",
        report.problems
    );
    assert_eq!(read_all(&log).len(), 27);
}

#[test]
fn a_corrupt_batch_in_the_middle_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let mut positions = Vec::new();
    for i in 0..10 {
        positions.push(log.size_bytes());
        log.append(batch(&format!("b{i}"), 3, 1), 0, 1).unwrap();
    }
    drop(log); // a crash: no close, no checkpoint of the end
    std::fs::remove_file(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
    let seg = segment_files(dir.path(), "log").pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[positions[4] as usize + 70] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(
        log.log_end_offset(),
        12,
        "batches from the corrupt one on are gone"
    );
    assert!(
        log.recovery_report()
            .problems
            .iter()
            .any(|p| p.contains("CRC"))
    );
    assert_eq!(read_all(&log).len(), 12);
}

#[test]
fn garbage_files_do_not_stop_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..200 {
        log.append(batch(&format!("g{i}"), 4, 1), 0, 1).unwrap();
    }
    log.close().unwrap();
    let logs = segment_files(dir.path(), "log");
    let indexes = segment_files(dir.path(), "index");
    assert!(logs.len() >= 4);
    // A garbage offset index of a sealed segment, a truncated time index,
    // garbage in the checkpoint, and a file that is not ours.
    std::fs::write(&indexes[1], b"\xff\xff\xff\xff\x00\x00\x00\x01garbage!").unwrap();
    let tidx = segment_files(dir.path(), "timeindex");
    OpenOptions::new()
        .write(true)
        .open(&tidx[0])
        .unwrap()
        .set_len(5)
        .unwrap();
    std::fs::write(
        dir.path().join("recovery-point-offset-checkpoint"),
        b"\x00\x01junk",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), 800);
    assert_eq!(read_all(&log).len(), 800);
    assert!(
        log.recovery_report()
            .problems
            .iter()
            .any(|p| p.contains("notes.txt"))
    );

    // Now a garbage sealed segment in the middle: the log keeps its valid prefix.
    drop(log);
    let mut f = OpenOptions::new().write(true).open(&logs[2]).unwrap();
    f.write_all(b"this is not a record batch at all, it is garbage")
        .unwrap();
    drop(f);
    std::fs::remove_file(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    let report = log.recovery_report();
    assert!(
        report.truncated.iter().any(|(p, _)| p == &logs[2]),
        "{report:?}"
    );
    let all = read_all(&log);
    assert!(!all.is_empty());
    assert_eq!(all.len() as i64, log.log_end_offset());
    assert!((log.log_end_offset() as usize) < 800);
}

#[test]
fn compaction_leftovers_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    log.append(batch("a", 3, 1), 0, 1).unwrap();
    log.close().unwrap();
    std::fs::write(
        dir.path().join("00000000000000000000.log.cleaned"),
        b"half-written",
    )
    .unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(read_all(&log).len(), 3);
    assert!(!dir.path().join("00000000000000000000.log.cleaned").exists());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Write batches, flush some, crash with the tail cut or corrupted at a
    /// random byte: what reopens is a prefix of what was written and holds
    /// every flushed batch.
    #[test]
    fn reopen_after_a_torn_tail_is_a_prefix_holding_everything_flushed(
        sizes in prop::collection::vec(1usize..6, 2..40),
        flushed_fraction in 0.0f64..1.0,
        cut_fraction in 0.0f64..1.0,
        corrupt in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = small_segments();
        let mut log = Log::open(dir.path(), config.clone()).unwrap();
        let mut written = Vec::new();
        let flush_at = ((sizes.len() as f64) * flushed_fraction) as usize;
        let mut flushed_end = 0;
        for (i, n) in sizes.iter().enumerate() {
            log.append(batch(&format!("p{i}"), *n, 1), 0, 1).unwrap();
            for j in 0..*n { written.push(format!("p{i}-{j}")); }
            if i + 1 == flush_at {
                log.flush().unwrap();
                flushed_end = log.log_end_offset();
            }
        }
        drop(log);
        // Damage the unflushed part of the last segment.
        let seg = segment_files(dir.path(), "log").pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let base: i64 = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        if base >= flushed_end && !bytes.is_empty() {
            let at = ((bytes.len() as f64) * cut_fraction) as usize;
            if corrupt {
                let at = at.min(bytes.len() - 1);
                bytes[at] ^= 0x5a;
            } else {
                bytes.truncate(at);
            }
            std::fs::write(&seg, &bytes).unwrap();
        }
        let log = Log::open(dir.path(), config).unwrap();
        let got: Vec<String> = read_all(&log).into_iter().map(|(_, v)| String::from_utf8(v.to_vec()).unwrap()).collect();
        prop_assert!(got.len() <= written.len());
        prop_assert_eq!(&got[..], &written[..got.len()]);
        prop_assert!(got.len() as i64 >= flushed_end);
    }
}
