//! The code sandbox against the committed hostile samples (tests/hostile/*.py): each one is
//! reported failed or timed out, nothing escapes (no file written or read outside the temp dir,
//! no TCP connection, no signal delivered outside, no process left behind), and the run ends.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use prom_eval::code;
use prom_eval::sandbox::{isolation, Outcome, SandboxConfig};

const HOSTILE: &[(&str, &str)] = &[
    ("fork_bomb", include_str!("hostile/fork_bomb.py")),
    ("memory_bomb", include_str!("hostile/memory_bomb.py")),
    ("infinite_loop", include_str!("hostile/infinite_loop.py")),
    ("write_outside", include_str!("hostile/write_outside.py")),
    ("read_outside", include_str!("hostile/read_outside.py")),
    ("open_socket", include_str!("hostile/open_socket.py")),
    ("signal_parent", include_str!("hostile/signal_parent.py")),
    ("orphan_daemon", include_str!("hostile/orphan_daemon.py")),
];

fn config(tag: &str) -> SandboxConfig {
    SandboxConfig {
        timeout: Duration::from_secs(3),
        tag: Some(tag.to_string()),
        parallel: 2,
        ..SandboxConfig::default()
    }
}

/// Processes whose command line carries `tag`.
fn leftovers(tag: &str) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(tag) {
                v.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    v
}

#[test]
fn benign_programs_pass_and_failing_ones_fail() {
    let cfg = config(&format!("prom-benign-{}", std::process::id()));
    let progs = vec![
        "def f(x):\n    return x + 1\nassert f(1) == 2\n".to_string(),
        "assert 1 + 1 == 3, 'arithmetic'\n".to_string(),
        "import math\nprint(math.sqrt(16))\n".to_string(),
    ];
    let out = code::run_all(&progs, &cfg, &|_| {}).unwrap();
    assert_eq!(out[0], Outcome::Passed);
    assert!(matches!(&out[1], Outcome::Failed(why) if why.contains("AssertionError")), "{:?}", out[1]);
    assert_eq!(out[2], Outcome::Passed);
}

#[test]
fn hostile_samples_are_contained_and_the_run_completes() {
    let iso = isolation();
    eprintln!("sandbox isolation: {iso}");
    let tag = format!("prom-hostile-{}", std::process::id());
    // A directory anyone may write to, so only the sandbox can stop the write.
    let target = tempfile::Builder::new().prefix("prom-hostile-target-").tempdir().unwrap();
    std::fs::set_permissions(target.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let secret_dir = tempfile::Builder::new().prefix("prom-hostile-secret-").tempdir().unwrap();
    std::fs::set_permissions(secret_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = secret_dir.path().join("secret.txt");
    std::fs::write(&secret, "the evaluator's secret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();

    let programs: Vec<String> = HOSTILE
        .iter()
        .map(|(_, src)| {
            src.replace("{TARGET_DIR}", &target.path().display().to_string())
                .replace("{TAG}", &tag)
                .replace("{SECRET_FILE}", &secret.display().to_string())
                .replace("{PORT}", &port.to_string())
                .replace("{EVALUATOR_PID}", &std::process::id().to_string())
                .replace("{BYSTANDER_PID}", &bystander.id().to_string())
        })
        .collect();
    let outcomes = code::run_all(&programs, &config(&tag), &|_| {}).unwrap();
    for ((name, _), o) in HOSTILE.iter().zip(&outcomes) {
        eprintln!("{name:>14}: {o}");
        assert!(!o.passed(), "{name} passed");
    }
    let by_name = |n: &str| &outcomes[HOSTILE.iter().position(|(k, _)| *k == n).unwrap()];
    assert_eq!(by_name("infinite_loop"), &Outcome::TimedOut);

    // Writes outside: the world-writable directory and /tmp stay clean.
    assert!(!target.path().join("escaped.txt").exists(), "write_outside escaped");
    let tmp_escape = std::path::PathBuf::from(format!("/tmp/prom-sandbox-escaped-{tag}.txt"));
    let escaped_tmp = tmp_escape.exists();
    let _ = std::fs::remove_file(&tmp_escape);
    assert!(!escaped_tmp, "write_outside wrote to /tmp");
    // Reads outside: the secret never reached a place we can see.
    assert!(!target.path().join("leaked.txt").exists(), "read_outside leaked the secret");
    if iso.landlock_abi.is_some() {
        let why = by_name("read_outside").to_string();
        assert!(why.contains("PermissionError"), "reading outside should be refused: {why}");
    }
    // Network: nothing connected to the host's loopback listener.
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("open_socket reached the host: {other:?}"),
    }
    // Signals: the bystander survived (and so did we, or this line would not run).
    assert!(bystander.try_wait().unwrap().is_none(), "signal_parent killed a process outside the sandbox");
    let _ = bystander.kill();
    let _ = bystander.wait();
    // Nothing left behind: not the fork bomb's children, not the detached daemon.
    std::thread::sleep(Duration::from_millis(300));
    let left = leftovers(&tag);
    assert!(left.is_empty(), "processes outlived their sample: {left:?}");
}
