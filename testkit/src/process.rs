//! What the kit sends to and reads about a process by its id: signals
//! (through `kill(1)`; the workspace forbids `unsafe`), and its state and
//! resident memory from `/proc`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// A signal the kit sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Term,
    Stop,
    Cont,
}

impl Signal {
    fn flag(self) -> &'static str {
        match self {
            Signal::Term => "-TERM",
            Signal::Stop => "-STOP",
            Signal::Cont => "-CONT",
        }
    }
}

/// Sends `signal` to process `pid`.
pub(crate) fn send(pid: u32, signal: Signal) -> Result<()> {
    let status = Command::new("kill")
        .args([signal.flag(), &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("kill {} {pid}: {status}", signal.flag());
    }
    Ok(())
}

/// The one-letter state of process `pid` (`R`, `S`, `T` for stopped…),
/// from `/proc/<pid>/stat`.
pub(crate) fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits (bounded) until process `pid` is stopped (`true`) or running
/// again (`false`); signals arrive asynchronously.
pub(crate) fn wait_stopped(pid: u32, stopped: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = state(pid);
        if now.is_none() || (now == Some('T')) == stopped {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("process {pid} is still in state {now:?} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Resident set size of process `pid` in bytes, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_has_resident_memory() {
        let me = std::process::id();
        assert!(matches!(state(me), Some('R' | 'S')), "{:?}", state(me));
        assert!(rss_bytes(me).unwrap() > 0);
        assert_eq!(rss_bytes(u32::MAX), None);
    }
}
