//! Where the `fjord` binary is.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The environment variable that names the `fjord` binary.
pub const FJORD_BIN: &str = "FJORD_BIN";

/// The `fjord` binary: `explicit` when given, else `$FJORD_BIN`, else
/// `fjord` next to the running program or in its parent directory (test
/// programs live in `target/<profile>/deps/`, the binary one level up).
///
/// # Errors
/// None of those names a binary; the message says how to provide one.
pub fn fjord_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os(FJORD_BIN) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    match beside(&exe) {
        Some(path) => Ok(path),
        None => bail!(
            "no fjord binary next to {} (build it with `cargo build -p fjord`, or set {FJORD_BIN})",
            exe.display()
        ),
    }
}

/// `fjord` in the directory of `exe` or the one above it.
fn beside(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("fjord"))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_path_wins() {
        let path = Path::new("/opt/fjord/bin/fjord");
        assert_eq!(fjord_binary(Some(path)).unwrap(), path);
    }

    #[test]
    fn the_binary_is_found_next_to_the_program_or_one_level_up() {
        let dir = tempfile::tempdir().unwrap();
        let deps = dir.path().join("deps");
        std::fs::create_dir(&deps).unwrap();
        let program = deps.join("some_test-0123");
        assert_eq!(beside(&program), None);

        std::fs::write(dir.path().join("fjord"), b"").unwrap();
        assert_eq!(beside(&program), Some(dir.path().join("fjord")));

        std::fs::write(deps.join("fjord"), b"").unwrap();
        assert_eq!(beside(&program), Some(deps.join("fjord")));
    }

    #[test]
    fn a_directory_named_fjord_is_not_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("fjord")).unwrap();
        assert_eq!(beside(&dir.path().join("bench")), None);
    }
}
