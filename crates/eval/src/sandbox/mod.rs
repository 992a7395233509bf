//! Runs untrusted Python (HumanEval/MBPP completions) one process per sample.
//!
//! Layers, each applied in the child between fork and exec (only async-signal-safe calls):
//! 1. `setsid`: the sample leads its own process group, which the wall-clock timeout kills
//!    whole (SIGKILL to `-pgid`), and which is killed again after every run to reap stragglers.
//! 2. rlimits: CPU seconds, address space, process count, file size, open files, no core dumps.
//! 3. When run as root: drop to an unused per-sample uid (from 1 900 000 000 up) so
//!    `RLIMIT_NPROC` binds (root is exempt) and counts only that sample's processes.
//! 4. Namespaces, where the kernel allows unprivileged user namespaces: new user, network
//!    (no interface but a down loopback), PID and IPC namespaces. The sample runs as PID 1 of
//!    its namespace under a small reaper that forwards its exit status; when it exits or is
//!    killed, the kernel kills everything it spawned, even processes that left the group.
//!    Outside processes are invisible, so it cannot signal them.
//! 5. Landlock (Linux ≥ 5.13, ABI probed): the filesystem is read/execute-only under the
//!    Python installation and system library directories, read-write only in the sample's
//!    private temp dir; TCP bind/connect denied (ABI ≥ 4); signals to processes outside the
//!    sandbox and abstract Unix sockets denied (ABI ≥ 6).
//!
//! Where a layer is unavailable the others still apply, and [`isolation`] reports which ran
//! (it goes into the results file). Without namespaces and Landlock ABI ≥ 4, UDP and non-TCP
//! network access is *not* blocked; without Landlock, reads of world-readable files outside
//! the temp dir are not blocked. Non-Linux systems are refused.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(not(target_os = "linux"))]
use crate::{EvalError, Result};

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// A Python the `nobody` user can execute (not one under /root).
    pub python: PathBuf,
    /// Wall-clock limit; the process group is killed past it.
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub max_processes: u64,
    pub max_file_bytes: u64,
    /// Samples run at once.
    pub parallel: usize,
    /// Read/execute-only directories besides the Python installation.
    pub read_only_paths: Vec<PathBuf>,
    /// Extra argv word, so tests can find leftover processes.
    pub tag: Option<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            python: PathBuf::from("/usr/bin/python3"),
            timeout: Duration::from_secs(10),
            memory_bytes: 1 << 30,
            max_processes: 16,
            max_file_bytes: 16 << 20,
            parallel: 2,
            read_only_paths: ["/usr", "/lib", "/lib64", "/bin"].iter().map(PathBuf::from).collect(),
            tag: None,
        }
    }
}

/// human-eval's three results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    TimedOut,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Passed => write!(f, "passed"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::TimedOut => write!(f, "timed out"),
        }
    }
}

/// Which layers this machine gives the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Isolation {
    pub namespaces: bool,
    pub landlock_abi: Option<u32>,
    pub drops_root: bool,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rlimits+process group; user/net/pid namespaces: {}; landlock: {}; per-sample uid: {}",
            if self.namespaces { "yes" } else { "no (network not isolated by namespace)" },
            self.landlock_abi.map_or("no (filesystem reads not confined)".to_string(), |a| format!("ABI {a}")),
            if self.drops_root { "yes" } else { "no (already unprivileged)" }
        )
    }
}

#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
pub use linux::{isolation, run_python};

#[cfg(not(target_os = "linux"))]
pub fn isolation() -> Isolation {
    Isolation { namespaces: false, landlock_abi: None, drops_root: false }
}

#[cfg(not(target_os = "linux"))]
pub fn run_python(_program: &str, _cfg: &SandboxConfig) -> Result<Outcome> {
    Err(EvalError::Sandbox(
        "running generated code needs Linux (rlimits, namespaces, Landlock); refusing to run it unconfined".into(),
    ))
}
