//! A full disk during append: the append fails with a clear error, nothing
//! partial becomes visible (now or after reopening), and appends work again
//! once space frees. Uses a small tmpfs, so it needs root (CI runs as root).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::read_all;
use fjord_storage::{BatchBuilder, Compression, Log, LogConfig, Record};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn big_batch(i: usize) -> Bytes {
    BatchBuilder::new(Compression::None)
        .push(Record::new(
            None,
            Some(Bytes::from(vec![b'a' + (i % 26) as u8; 50_000])),
            1,
        ))
        .build()
        .unwrap()
}

#[test]
fn disk_full_fails_cleanly_and_recovers_when_space_frees() {
    let outer = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(outer.path(), "2m") else {
        println!("skipped: needs root to mount tmpfs");
        return;
    };
    let filler = outer.path().join("filler");
    std::fs::write(&filler, vec![0u8; 600_000]).unwrap();
    let config = LogConfig {
        max_index_bytes: 4096,
        ..LogConfig::default()
    };
    let mut log = Log::open(outer.path().join("p-0"), config.clone()).unwrap();
    let mut appended = 0;
    let err = loop {
        match log.append(big_batch(appended), 0, 1) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 100, "tmpfs never filled up");
    };
    assert!(err.is_disk_full(), "{err}");
    assert!(
        err.to_string().contains("00000000000000000000.log"),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), appended as i64);
    assert_eq!(read_all(&log).len(), appended);
    log.flush().unwrap();

    std::fs::remove_file(&filler).unwrap();
    log.append(big_batch(99), 0, 1).unwrap();
    assert_eq!(read_all(&log).len(), appended + 1);
    drop(log);
    let log = Log::open(outer.path().join("p-0"), config).unwrap();
    let all = read_all(&log);
    assert_eq!(all.len(), appended + 1);
    assert_eq!(all.last().unwrap().1[0], b'a' + (99 % 26) as u8);
}
