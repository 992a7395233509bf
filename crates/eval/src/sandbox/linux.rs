//! The Linux implementation of the sandbox layers described in the parent module.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use super::{Isolation, Outcome, SandboxConfig};
use crate::{EvalError, Result};

const NOBODY: libc::uid_t = 65534;
/// Per-sample uids come from here up: no account uses them, and `RLIMIT_NPROC` counts processes
/// per uid, so one sample's fork bomb cannot starve a sample running next to it.
const SAMPLE_UID_BASE: u32 = 1_900_000_000;
static NEXT_UID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A uid no other live sample (of this or another evaluator process) is likely to hold.
fn sample_uid() -> libc::uid_t {
    let n = NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4096;
    SAMPLE_UID_BASE + (std::process::id() % 50_000) * 4096 + n
}
const SYS_LANDLOCK_CREATE_RULESET: libc::c_long = 444;
const SYS_LANDLOCK_ADD_RULE: libc::c_long = 445;
const SYS_LANDLOCK_RESTRICT_SELF: libc::c_long = 446;
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
// Filesystem rights (ABI 1 bits 0..12, REFER 13 in ABI 2, TRUNCATE 14 in ABI 3).
const FS_EXECUTE: u64 = 1;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
const NET_BIND_CONNECT_TCP: u64 = 0b11;
const SCOPE_ABSTRACT_UNIX_AND_SIGNAL: u64 = 0b11;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

fn landlock_abi() -> Option<u32> {
    // SAFETY: the version query takes no pointer and changes nothing.
    let r = unsafe {
        libc::syscall(SYS_LANDLOCK_CREATE_RULESET, std::ptr::null::<u8>(), 0usize, LANDLOCK_CREATE_RULESET_VERSION)
    };
    (r > 0).then_some(r as u32)
}

fn handled_fs(abi: u32) -> u64 {
    match abi {
        1 => (1 << 13) - 1,
        2 => (1 << 14) - 1,
        _ => (1 << 15) - 1,
    }
}

/// Probed once: can a child drop to nobody and enter new user/net/pid namespaces?
pub fn isolation() -> Isolation {
    static ISO: OnceLock<Isolation> = OnceLock::new();
    *ISO.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut probe = Command::new("/bin/true");
        probe.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: the closure calls only async-signal-safe functions (setgid/setuid/unshare).
        unsafe {
            probe.pre_exec(move || {
                if root {
                    drop_to(NOBODY)?;
                }
                check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWPID | libc::CLONE_NEWIPC))
            });
        }
        let namespaces = probe.status().map(|s| s.success()).unwrap_or(false);
        Isolation { namespaces, landlock_abi: landlock_abi(), drops_root: root }
    })
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// SAFETY (callers): async-signal-safe; for use between fork and exec.
unsafe fn drop_to(uid: libc::uid_t) -> std::io::Result<()> {
    check(libc::setgroups(0, std::ptr::null()))?;
    check(libc::setgid(uid))?;
    check(libc::setuid(uid))
}

/// Everything the child needs, allocated before fork.
struct Plan {
    limits: [(libc::__rlimit_resource_t, u64); 6],
    /// The uid to become when started as root.
    drop_root: Option<libc::uid_t>,
    namespaces: bool,
    landlock: Option<(u32, Vec<CString>, CString)>,
}

/// SAFETY (callers): runs between fork and exec; only async-signal-safe calls, no allocation.
unsafe fn enter_sandbox(p: &Plan) -> std::io::Result<()> {
    check(libc::setsid())?;
    for &(res, v) in &p.limits {
        let lim = libc::rlimit { rlim_cur: v, rlim_max: v };
        check(libc::setrlimit(res, &lim))?;
    }
    if let Some(uid) = p.drop_root {
        drop_to(uid)?;
    }
    if p.namespaces {
        check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWPID | libc::CLONE_NEWIPC))?;
        // The next child is PID 1 of the new namespace; this process stays outside as its
        // reaper and exits with its status, so the parent's timeout and wait work unchanged.
        let pid = libc::fork();
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid > 0 {
            // Let go of std's exec-status pipe, or spawn() would wait for this process.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0 {}
            let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
            libc::_exit(code);
        }
        // If the reaper is killed (timeout), take the namespace down with it.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
    }
    if let Some((abi, ro, rw)) = &p.landlock {
        landlock(*abi, ro, rw)?;
    }
    Ok(())
}

unsafe fn landlock(abi: u32, ro: &[CString], rw: &CString) -> std::io::Result<()> {
    let fs = handled_fs(abi);
    let attr = RulesetAttr {
        handled_access_fs: fs,
        handled_access_net: if abi >= 4 { NET_BIND_CONNECT_TCP } else { 0 },
        scoped: if abi >= 6 { SCOPE_ABSTRACT_UNIX_AND_SIGNAL } else { 0 },
    };
    let size = match abi {
        1..=3 => 8,
        4 | 5 => 16,
        _ => std::mem::size_of::<RulesetAttr>(),
    };
    let fd = libc::syscall(SYS_LANDLOCK_CREATE_RULESET, &attr as *const RulesetAttr, size, 0u32) as libc::c_int;
    check(fd)?;
    let add = |path: &CString, access: u64| -> std::io::Result<()> {
        let dir = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        if dir < 0 {
            return Ok(()); // absent on this system: nothing to allow
        }
        let rule = PathBeneathAttr { allowed_access: access, parent_fd: dir };
        let r =
            libc::syscall(SYS_LANDLOCK_ADD_RULE, fd, LANDLOCK_RULE_PATH_BENEATH, &rule as *const PathBeneathAttr, 0u32);
        libc::close(dir);
        check(r as libc::c_int)
    };
    for p in ro {
        add(p, FS_EXECUTE | FS_READ_FILE | FS_READ_DIR)?;
    }
    add(rw, fs)?;
    check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    check(libc::syscall(SYS_LANDLOCK_RESTRICT_SELF, fd, 0u32) as libc::c_int)?;
    libc::close(fd);
    Ok(())
}

fn cstring(p: &std::path::Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| EvalError::Sandbox(format!("path {} contains a NUL byte", p.display())))
}

/// Kills the whole process group `pgid` (ignoring "no such process").
fn kill_group(pgid: u32) {
    // SAFETY: kill with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
    }
}

/// Runs `program` with `cfg.python` in a fresh sandbox and reports how it ended.
pub fn run_python(program: &str, cfg: &SandboxConfig) -> Result<Outcome> {
    let iso = isolation();
    let dir = tempfile::Builder::new()
        .prefix("prom-sandbox-")
        .tempdir()
        .map_err(|e| EvalError::Sandbox(format!("temp dir: {e}")))?;
    let path = dir.path().to_path_buf();
    let script = path.join("program.py");
    std::fs::write(&script, program).map_err(EvalError::io("writing", &script))?;
    let stderr_path = path.join("stderr.txt");
    let stderr = File::create(&stderr_path).map_err(EvalError::io("creating", &stderr_path))?;
    let uid = iso.drops_root.then(sample_uid);
    if let Some(uid) = uid {
        let c = cstring(&path)?;
        // SAFETY: plain syscalls on a path we own; the dir becomes the sample uid's own (0700).
        unsafe {
            libc::chown(c.as_ptr(), uid, uid);
            libc::chmod(c.as_ptr(), 0o700);
        }
        let _ = std::os::unix::fs::chown(&stderr_path, Some(uid), Some(uid));
        let _ = std::os::unix::fs::chown(&script, Some(uid), Some(uid));
    }
    let cpu = cfg.timeout.as_secs() + 1;
    let mut ro: Vec<CString> = cfg.read_only_paths.iter().map(|p| cstring(p)).collect::<Result<_>>()?;
    if let Some(prefix) = cfg.python.parent().and_then(|p| p.parent()) {
        ro.push(cstring(prefix)?);
    }
    let plan = Plan {
        limits: [
            (libc::RLIMIT_CPU, cpu),
            (libc::RLIMIT_AS, cfg.memory_bytes),
            (libc::RLIMIT_NPROC, cfg.max_processes),
            (libc::RLIMIT_FSIZE, cfg.max_file_bytes),
            (libc::RLIMIT_NOFILE, 64),
            (libc::RLIMIT_CORE, 0),
        ],
        drop_root: uid,
        namespaces: iso.namespaces,
        landlock: iso.landlock_abi.map(|abi| (abi, ro, cstring(&path).unwrap_or_default())),
    };
    let mut cmd = Command::new(&cfg.python);
    cmd.arg("-I").arg("-B").arg("program.py");
    if let Some(t) = &cfg.tag {
        cmd.arg(t);
    }
    cmd.current_dir(&path)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &path)
        .env("TMPDIR", &path)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: `enter_sandbox` only makes async-signal-safe calls on memory allocated before fork.
    unsafe {
        cmd.pre_exec(move || enter_sandbox(&plan));
    }
    let mut child = cmd.spawn().map_err(|e| EvalError::Sandbox(format!("starting {}: {e}", cfg.python.display())))?;
    let pgid = child.id();
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() >= cfg.timeout => {
                kill_group(pgid);
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(e) => {
                kill_group(pgid);
                return Err(EvalError::Sandbox(format!("waiting for the sample: {e}")));
            }
        }
    };
    // Whatever is left of the group (a straggler that outlived its parent) goes too.
    kill_group(pgid);
    let Some(status) = status else { return Ok(Outcome::TimedOut) };
    if status.success() {
        return Ok(Outcome::Passed);
    }
    // Killed for CPU time (directly, or reported by the namespace reaper as 128 + signal).
    if status.signal() == Some(libc::SIGXCPU) || status.code() == Some(128 + libc::SIGXCPU) {
        return Ok(Outcome::TimedOut);
    }
    let mut err = String::new();
    let _ = File::open(&stderr_path).and_then(|f| f.take(1 << 16).read_to_string(&mut err));
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().chars().take(200).collect::<String>());
    let why = last.unwrap_or_else(|| match (status.code(), status.signal()) {
        (Some(c), _) if c > 128 => format!("killed by signal {}", c - 128),
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown".into(),
    });
    Ok(Outcome::Failed(why))
}
