//! The official `openai` Python SDK drives a real `prom serve`: chat and completions, streaming
//! and not, n > 1, logprobs, typed errors (`scripts/server/openai_sdk_test.py`). The SDK lives in
//! the venv `scripts/server/setup-venv.sh` makes (scripts/test.sh runs it first).

mod serve_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serve_common::{Server, MODEL};

fn venv_python() -> PathBuf {
    let artifacts = std::env::var_os("PROM_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/prometheus/artifacts")
    });
    let venv = std::env::var_os("PROM_SERVER_VENV").map(PathBuf::from).unwrap_or_else(|| artifacts.join("venv-server"));
    let py = venv.join("bin/python");
    assert!(py.is_file(), "{} not found: run scripts/server/setup-venv.sh", py.display());
    py
}

#[test]
fn official_openai_sdk() {
    let key = "sk-sdk-test";
    let s = Server::start(&["--api-key", key]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/server/openai_sdk_test.py");
    let out = Command::new(venv_python())
        .arg(&script)
        .args(["--base-url", &s.url("/v1"), "--model", MODEL, "--api-key", key])
        .output()
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "SDK checks failed:\n{stdout}\n{stderr}\n--- server log\n{}", s.logs());
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
