//! The process behind a broker a benchmark started: a Fjord node (from
//! `fjord-testkit`) or another broker's child process. Killed on drop.

use std::path::Path;
use std::process::{Child, ExitStatus};

use fjord_testkit::Node;

pub(crate) enum Process {
    /// Boxed: a node is large next to a `Child`.
    Fjord(Box<Node>),
    Other(Child),
}

impl Process {
    /// The process id (0 once a Fjord node was killed).
    pub(crate) fn id(&self) -> u32 {
        match self {
            Process::Fjord(node) => node.pid().unwrap_or_default(),
            Process::Other(child) => child.id(),
        }
    }

    /// `Some(status)` if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        match self {
            Process::Fjord(node) => node.exited(),
            Process::Other(child) => child.try_wait().ok().flatten(),
        }
    }

    /// SIGKILL, and reap.
    pub(crate) fn kill(&mut self) {
        match self {
            Process::Fjord(node) => node.kill9(),
            Process::Other(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The last `lines` lines of a server's `log`, indented and marked (or a
/// note that it is empty).
pub(crate) fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return format!("  ({} is empty)", log.display());
    }
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
