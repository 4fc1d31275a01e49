//! The broker's layout holds: its parts import only the parts above them
//! (no cycle between them), `Broker` is implemented in `broker.rs` only,
//! the shared modules import no part, and no crate but `raft` names
//! openraft.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// The parts, each a folder of `broker/src`, in the order they may use
/// each other: a part uses only parts before it.
const PARTS: [&str; 5] = ["quorum", "replica", "router", "admin", "coordinator"];

/// Modules every part may use, which use no part.
const SHARED: [&str; 8] = [
    "api.rs",
    "batch.rs",
    "clock.rs",
    "config.rs",
    "error.rs",
    "files.rs",
    "metrics.rs",
    "murmur2.rs",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The parts `file` names as `crate::<part>`, outside comments.
fn parts_used(file: &Path) -> Vec<&'static str> {
    let text = std::fs::read_to_string(file).unwrap();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    PARTS
        .iter()
        .copied()
        .filter(|p| {
            code.contains(&format!("crate::{p}::")) || code.contains(&format!("crate::{p}::{{"))
        })
        .collect()
}

#[test]
fn each_part_uses_only_the_parts_above_it() {
    let mut broken = Vec::new();
    for (rank, part) in PARTS.iter().enumerate() {
        for file in rust_files(&src().join(part)) {
            for used in parts_used(&file) {
                let used_rank = PARTS.iter().position(|p| *p == used).unwrap();
                if used_rank > rank {
                    broken.push(format!("{} uses {used}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "a part uses one below it: {broken:#?}");
}

#[test]
fn the_shared_modules_use_no_part() {
    for name in SHARED {
        let used = parts_used(&src().join(name));
        assert!(used.is_empty(), "{name} uses {used:?}");
    }
}

#[test]
fn only_broker_rs_implements_the_broker_handle() {
    let mut found = Vec::new();
    for file in rust_files(&src()) {
        let text = std::fs::read_to_string(&file).unwrap();
        if text
            .lines()
            .any(|l| l.trim_start().starts_with("impl Broker {"))
            && file.file_name().is_none_or(|n| n != "broker.rs")
        {
            found.push(file.display().to_string());
        }
    }
    assert!(found.is_empty(), "impl Broker outside broker.rs: {found:?}");
}

#[test]
fn no_crate_but_raft_names_openraft() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let needle = ["open", "raft::"].concat();
    let mut found = Vec::new();
    for krate in std::fs::read_dir(&root).unwrap() {
        let dir = krate.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if name == "raft" || name == "target" || !dir.join("Cargo.toml").exists() {
            continue;
        }
        for sub in ["src", "tests"] {
            if !dir.join(sub).is_dir() {
                continue;
            }
            for file in rust_files(&dir.join(sub)) {
                let text = std::fs::read_to_string(&file).unwrap();
                if text.contains(&needle) {
                    found.push(file.display().to_string());
                }
            }
        }
    }
    assert!(found.is_empty(), "openraft named outside raft/: {found:?}");
}
