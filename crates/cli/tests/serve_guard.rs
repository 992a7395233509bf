//! `prom serve --guard rails.yaml` driven by the official `openai` Python SDK
//! (scripts/guard/openai_guard_test.py): input rails block injections and redact PII, output
//! rails redact (a secret split over SSE chunks included) and block, for chat and completions,
//! streaming and not; decisions show in /metrics and in the audit log, without the values.

mod serve_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serve_common::{Server, MODEL};

/// The server tests' Python venv (official `openai` SDK), as scripts/server/setup-venv.sh makes
/// and prints it (idempotent; scripts/test.sh runs it first).
fn venv_python() -> PathBuf {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/server/setup-venv.sh");
    let out = Command::new("bash").arg(&setup).output().expect("run scripts/server/setup-venv.sh");
    assert!(out.status.success(), "setup-venv.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

const RAILS: &str = r#"
refusal: "Blocked by Prometheus guardrails."
hash_salt: "serve-guard-test-salt-0123456789"
audit_log: AUDIT
stream_lookback: 64
input:
  - {check: injection, threshold: 0.5, action: block}
  - {check: pii, entities: [EMAIL_ADDRESS, US_SSN, CREDIT_CARD], action: redact}
output:
  - {check: secrets, action: redact}
  - {check: pii, entities: [EMAIL_ADDRESS], action: redact}
profiles:
  # The output checks make the model copy a value from its prompt: no input redaction here.
  - name: raw
    api_keys: [sk-raw]
    input: [{check: injection, action: block}]
    output: []
  - name: output-only
    api_keys: [sk-out]
    input: [{check: injection, action: block}]
  - name: block-secrets
    api_keys: [sk-block]
    output: [{check: secrets, action: block}]
  - name: perplexity
    api_keys: [sk-ppl]
    input: [{check: perplexity, threshold: 2000, action: block}]
    output: []
"#;

#[test]
fn guard_rails_with_the_official_openai_sdk() {
    let dir = std::env::temp_dir().join(format!("prom-serve-guard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let rails = dir.join("rails.yaml");
    std::fs::write(&rails, RAILS.replace("AUDIT", audit.to_str().unwrap())).unwrap();
    let s = Server::start(&[
        "--guard",
        rails.to_str().unwrap(),
        "--api-key",
        "sk-guard",
        "--api-key",
        "sk-raw",
        "--api-key",
        "sk-out",
        "--api-key",
        "sk-block",
        "--api-key",
        "sk-ppl",
    ]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/guard/openai_guard_test.py");
    let out = Command::new(venv_python())
        .arg(&script)
        .args(["--base-url", &s.url("/v1"), "--model", MODEL, "--audit-log", audit.to_str().unwrap()])
        .output()
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "guard SDK checks failed:\n{stdout}\n{stderr}\n--- server log\n{}", s.logs());
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_rails_file_is_a_clear_startup_error() {
    let dir = std::env::temp_dir().join(format!("prom-serve-guard-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rails = dir.join("rails.yaml");
    std::fs::write(&rails, "input:\n  - {check: pii, action: shout}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_prom"))
        .args(["serve", "--offline", "-m"])
        .arg(serve_common::gguf())
        .args(["--port", "0", "--guard"])
        .arg(&rails)
        .output()
        .expect("run prom serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("input[0].action must be block, redact or warn. Given: \"shout\""), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
