//! `prom` on bad input exits non-zero with one `error:` message that names the path and the
//! problem, and never panics. The library's error texts are tested in detail in
//! `crates/models/tests/bad_input.rs`; here we check that they reach the user intact.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn golden(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden").join(case)
}

/// A scratch directory removed on drop (the CLI crate has no tempfile dependency).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("prom-cli-bad-input-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A copy of a golden fixture's config and weights in `<scratch>/<case>`.
    fn copy_case(&self, case: &str) -> PathBuf {
        let dst = self.0.join(case);
        fs::create_dir_all(&dst).unwrap();
        for f in ["config.json", "model.safetensors"] {
            fs::copy(golden(case).join(f), dst.join(f)).unwrap();
        }
        dst
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `prom` with the network and every model cache switched off.
fn prom(args: &[&str]) -> (Option<i32>, String, String) {
    let nowhere = std::env::temp_dir().join("prom-cli-bad-input-no-cache");
    let out = Command::new(env!("CARGO_BIN_EXE_prom"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", &nowhere)
        .env("PROM_CACHE", &nowhere)
        .env("PROM_ARTIFACTS", &nowhere)
        .env_remove("PROM_LOG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `prom args` fails with exit code 1 and an `error:` line containing each of `needles`.
#[track_caller]
fn fails_cleanly(args: &[&str], needles: &[&str]) -> String {
    let (code, stdout, stderr) = prom(args);
    let shown = format!("prom {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}", args.join(" "));
    assert_eq!(code, Some(1), "expected exit code 1:\n{shown}");
    assert!(!stderr.contains("panicked"), "panicked:\n{shown}");
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no `error:` line:\n{shown}"));
    for n in needles {
        assert!(stderr.contains(n), "stderr does not mention {n:?}:\n{shown}");
    }
    line.to_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn corrupt_safetensors_dir() {
    let scratch = Scratch::new("corrupt");
    let dir = scratch.copy_case("llama_gqa");
    let st = dir.join("model.safetensors");
    let len = fs::metadata(&st).unwrap().len();
    fs::OpenOptions::new().write(true).open(&st).unwrap().set_len(len / 2).unwrap();
    for args in [
        vec!["score", s(&dir), "--ids", "1,2", "--offline"],
        vec!["run", "--model", s(&dir), "--offline", "hi"],
        vec!["inspect", s(&dir), "--offline"],
    ] {
        fails_cleanly(&args, &[s(&st), "truncated"]);
    }
}

#[test]
fn bad_config_dir() {
    let scratch = Scratch::new("config");
    let dir = scratch.copy_case("llama_gqa");
    let cfg = dir.join("config.json");
    let text = fs::read_to_string(&cfg).unwrap().replace("\"llama\"", "\"mamba-xyz\"");
    fs::write(&cfg, text).unwrap();
    fails_cleanly(&["inspect", s(&dir), "--offline"], &[s(&cfg), "unsupported architecture `mamba-xyz`"]);
    fs::write(&cfg, "{\"model_type\": \"llama\",").unwrap();
    fails_cleanly(&["score", s(&dir), "--ids", "1", "--offline"], &[s(&cfg), "invalid config.json"]);
}

#[test]
fn bad_gguf_file() {
    let scratch = Scratch::new("gguf");
    let empty = scratch.0.join("empty-model.gguf");
    fs::write(&empty, b"").unwrap();
    fails_cleanly(
        &["run", "--model", s(&empty), "--offline", "hi"],
        &[s(&empty), "not a valid GGUF file", "the file is empty"],
    );
    let junk = scratch.0.join("junk.gguf");
    fs::write(&junk, b"GGUF\x03\x00\x00\x00 and then nothing useful").unwrap();
    fails_cleanly(&["inspect", s(&junk), "--offline"], &[s(&junk), "not a valid GGUF file"]);
}

#[test]
fn nonexistent_paths() {
    let scratch = Scratch::new("missing");
    let dir = scratch.0.join("no-such-model");
    let line = fails_cleanly(&["run", "--model", s(&dir), "--offline", "hi"], &[s(&dir), "not found", "no such file"]);
    assert!(line.contains(s(&dir)), "the error line itself names the path: {line}");
    let gguf = scratch.0.join("no-such-model.gguf");
    fails_cleanly(&["score", s(&gguf), "--ids", "1", "--offline"], &[s(&gguf), "no such file"]);
    // An existing directory that is no model.
    fails_cleanly(&["inspect", s(&scratch.0), "--offline"], &[s(&scratch.0), "config.json"]);
}

#[test]
fn token_id_out_of_range() {
    let dir = golden("llama_gqa");
    fails_cleanly(&["score", s(&dir), "--ids", "1,999999", "--offline"], &["999999", "vocab_size 256"]);
}

#[test]
fn weights_only_dir_has_no_tokenizer() {
    let dir = golden("llama_gqa");
    fails_cleanly(&["run", "--model", s(&dir), "--offline", "hi"], &["no tokenizer"]);
    fails_cleanly(&["score", s(&dir), "--text", "hi", "--offline"], &["no tokenizer"]);
}
