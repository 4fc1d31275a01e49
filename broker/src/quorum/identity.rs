//! The node's identity: `<data-dir>/cluster.json` holds the cluster id and
//! the node id, recorded on first start (`{"cluster_id":..,"node_id":..}`)
//! and checked on every later one.
//!
//! # Crash
//! Written atomically (see `files.rs`): a crash leaves no identity (the
//! next start records it) or the whole one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Identity {
    pub(super) cluster_id: String,
    pub(super) node_id: u64,
}

const IDENTITY_FILE: &str = "cluster.json";

/// True when `dir` belongs to a node that was part of a cluster before
/// (it has a cluster identity).
///
/// # Errors
/// `Metadata` when the identity file is unreadable.
pub(crate) fn has_identity(dir: &Path) -> Result<bool> {
    read_identity(dir).map(|i| i.is_some())
}

pub(super) fn read_identity(dir: &Path) -> Result<Option<Identity>> {
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Metadata(format!("{} is not a cluster identity: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Metadata(format!("read {}: {e}", path.display()))),
    }
}

pub(super) fn write_identity(dir: &Path, identity: &Identity) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(identity)
        .map_err(|e| Error::Metadata(format!("encode cluster identity: {e}")))?;
    crate::files::write_atomic(dir, IDENTITY_FILE, &bytes, false)
}

/// A fresh cluster id: 16 hex digits of randomness.
pub(super) fn new_cluster_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
