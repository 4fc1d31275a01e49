//! Producer ids for idempotent producers, unique across restarts.
//!
//! # Format
//! `<data-dir>/producer-ids`: the next id to hand out, as text, replaced
//! atomically (temp file, fsync, rename) before the id is returned, so an id
//! is never handed out twice even across a crash. The node's id fills the
//! high bits, so the nodes of a cluster never hand out the same id.

use std::path::PathBuf;

use crate::{Error, Result};

const FILE: &str = "producer-ids";

/// Hands out producer ids; one per node.
#[derive(Debug)]
pub(crate) struct ProducerIds {
    dir: PathBuf,
    node_id: u64,
    /// One id at a time (the counter file is read and replaced).
    turn: tokio::sync::Mutex<()>,
}

impl ProducerIds {
    pub(crate) fn new(dir: PathBuf, node_id: u64) -> ProducerIds {
        ProducerIds {
            dir,
            node_id,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// A new producer id (epoch 0).
    ///
    /// # Errors
    /// `Metadata` when the counter file cannot be read or written.
    pub(crate) async fn next(&self) -> Result<(i64, i16)> {
        let _turn = self.turn.lock().await;
        let dir = self.dir.clone();
        let id = tokio::task::spawn_blocking(move || -> std::io::Result<i64> {
            let path = dir.join(FILE);
            let next = match std::fs::read_to_string(&path) {
                Ok(text) => text.trim().parse::<i64>().map_err(std::io::Error::other)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(e),
            };
            crate::files::write_atomic(&dir, FILE, format!("{}\n", next + 1).as_bytes(), false)
                .map_err(std::io::Error::other)?;
            Ok(next)
        })
        .await
        .map_err(|e| Error::Metadata(format!("producer id task: {e}")))?
        .map_err(|e| Error::Metadata(format!("producer id counter in {FILE}: {e}")))?;
        // Every node of a cluster hands out ids: the node id in the high
        // bits keeps them apart.
        let node = (self.node_id & 0x7fff) as i64;
        let id = (node << 47) | (id & ((1 << 47) - 1));
        Ok((id, 0))
    }
}
