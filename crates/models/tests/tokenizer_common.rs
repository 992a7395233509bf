//! Helpers shared by the `tokenizer_*` tests (included with `#[path]`; as its own test target it
//! has no tests).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use prom_models::Tokenizer;

/// `$PROM_ARTIFACTS`, default `~/.cache/prometheus/artifacts`. Panics (never skips) when the
/// pinned artifacts are not there.
pub fn artifacts() -> PathBuf {
    let dir = match std::env::var_os("PROM_ARTIFACTS") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home).join(".cache/prometheus/artifacts")
        }
    };
    assert!(
        dir.join("llama-cpp-python-0.3.36/.unpacked").exists() && dir.join("npm").exists(),
        "pinned test artifacts missing under {}: run scripts/fetch-artifacts.sh (or set PROM_ARTIFACTS)",
        dir.display()
    );
    dir
}

/// A file under the artifacts dir, with the same advice when it is missing.
pub fn artifact(rel: &str) -> PathBuf {
    let p = artifacts().join(rel);
    assert!(p.exists(), "{} is missing: run scripts/fetch-artifacts.sh", p.display());
    p
}

pub fn read_content(path: &Path) -> Content {
    assert!(path.exists(), "{} is missing: run scripts/fetch-artifacts.sh", path.display());
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Content::read(&mut f).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn load_gguf(path: &Path) -> Tokenizer {
    let content = read_content(path);
    Tokenizer::from_gguf(&content, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
