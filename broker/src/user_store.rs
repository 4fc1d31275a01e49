//! A single node's users on disk (in a cluster they live in the metadata
//! quorum instead).
//!
//! # Format
//! `<data-dir>/users.json`: `{"version":1,"users":[{"name","password_hash",
//! "acls":[{"action":"publish|subscribe|all","filter","allow"}],
//! "superuser"}]}`, users sorted by name. `password_hash` is a PHC string;
//! no password is ever written. The file is created readable by its owner
//! only (mode 0600 on Unix).
//!
//! # Crash
//! Written atomically: a temp file, fsync, rename, fsync of the directory.
//! A crash leaves the old file or the new one, never a mix; a leftover
//! `users.json.tmp` is ignored and replaced by the next write.
//!
//! # Concurrency
//! Callers serialise writes (the broker's admin lock) and call from a
//! blocking thread: both functions do file I/O.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use fjord_raft::User;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const USERS_FILE: &str = "users.json";

#[derive(Serialize, Deserialize)]
struct UsersFile {
    version: u32,
    users: Vec<User>,
}

/// Reads `users.json`; an absent file is no users.
///
/// # Errors
/// `Metadata` naming the file when it cannot be read or parsed.
pub(crate) fn load_users(data_dir: &Path) -> Result<BTreeMap<String, User>> {
    let path = data_dir.join(USERS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::Metadata(format!("read {}: {e}", path.display()))),
    };
    let file: UsersFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Metadata(format!("{} is not a list of users: {e}", path.display())))?;
    if file.version != 1 {
        return Err(Error::Metadata(format!(
            "{}: unsupported version {}",
            path.display(),
            file.version
        )));
    }
    Ok(file
        .users
        .into_iter()
        .map(|u| (u.name.clone(), u))
        .collect())
}

/// Writes `users.json` atomically.
///
/// # Errors
/// `Metadata` naming the file.
pub(crate) fn save_users(data_dir: &Path, users: &BTreeMap<String, User>) -> Result<()> {
    let path = data_dir.join(USERS_FILE);
    let tmp = data_dir.join(format!("{USERS_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(&UsersFile {
        version: 1,
        users: users.values().cloned().collect(),
    })
    .map_err(|e| Error::Metadata(format!("encode users: {e}")))?;
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| Error::Metadata(format!("write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use fjord_raft::{AclAction, AclRule};

    use super::*;

    #[test]
    fn users_round_trip_and_a_missing_file_is_no_users() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_users(dir.path()).unwrap().is_empty());
        let user = User {
            name: "sensor".into(),
            password_hash: "$argon2id$v=19$m=4096,t=1,p=1$c2FsdA$aGFzaA".into(),
            acls: vec![AclRule {
                action: AclAction::Subscribe,
                filter: "cmd/%c".into(),
                allow: true,
            }],
            superuser: false,
        };
        let users = BTreeMap::from([(user.name.clone(), user)]);
        save_users(dir.path(), &users).unwrap();
        assert_eq!(load_users(dir.path()).unwrap(), users);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(USERS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(USERS_FILE), b"{not json").unwrap();
        let e = load_users(dir.path()).unwrap_err().to_string();
        assert!(e.contains("users.json"), "{e}");
        std::fs::write(dir.path().join(USERS_FILE), br#"{"version":2,"users":[]}"#).unwrap();
        let e = load_users(dir.path()).unwrap_err().to_string();
        assert!(e.contains("unsupported version 2"), "{e}");
    }
}
