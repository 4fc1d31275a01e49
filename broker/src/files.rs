//! Small files the broker keeps beside its logs (the cluster identity,
//! partition marks, the producer-id counter), written so that a crash
//! leaves the old file or the new one, never a mix.
//!
//! # Crash
//! A write goes to `<name>.tmp`, is fsync'd, renamed over `<name>`, and the
//! directory is fsync'd. A leftover `.tmp` is ignored and replaced by the
//! next write.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Replaces `dir/name` with `bytes` atomically; `private` files are
/// readable by their owner only (mode 0600 on Unix).
///
/// # Errors
/// `Metadata` naming the file.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8], private: bool) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| Error::Metadata(format!("write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_and_private_ones_are_the_owners_only() {
        let dir = tempfile::tempdir().expect("a temp dir");
        write_atomic(dir.path(), "f", b"one", false).expect("write");
        write_atomic(dir.path(), "f", b"two", true).expect("write");
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"two");
        assert!(!dir.path().join("f.tmp").exists());
        write_atomic(dir.path(), "secret", b"x", true).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret"))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }
}
