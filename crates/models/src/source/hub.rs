//! The Hugging Face hub: its local cache (read without network, laid out as
//! `models--org--name/refs/<rev>` → `snapshots/<commit>/`) and downloads through `hf-hub`.
//!
//! Every place looked at is appended to a `tried` list, so that a failure can say exactly what
//! was looked for where.

use std::collections::BTreeSet;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use super::hf_dir::{self, CONFIG, OPTIONAL_FILES, SINGLE_WEIGHTS, WEIGHTS_INDEX};
use super::{ModelFiles, ResolveOptions};
use crate::{Error, Result};

pub(crate) const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// How long we wait to learn whether the hub answers at all; a closed network should cost seconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `org/name[@revision][:file.gguf]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoSpec {
    pub repo: String,
    pub revision: Option<String>,
    pub file: Option<String>,
}

impl RepoSpec {
    pub(crate) fn parse(spec: &str) -> Option<Self> {
        let (repo_rev, file) = match spec.split_once(':') {
            Some((r, f)) => (r, Some(f)),
            None => (spec, None),
        };
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((r, rev)) => (r, Some(rev)),
            None => (repo_rev, None),
        };
        let (org, name) = repo.split_once('/')?;
        let valid = |s: &str| {
            !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !valid(org) || !valid(name) {
            return None;
        }
        if revision.is_some_and(|r| r.is_empty() || r.contains("..")) {
            return None;
        }
        if file.is_some_and(|f| f.is_empty() || f.contains("..") || f.starts_with('/')) {
            return None;
        }
        Some(Self { repo: repo.to_string(), revision: revision.map(str::to_string), file: file.map(str::to_string) })
    }

    pub(crate) fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }
}

/// Where the hub is and whether we may use the network.
pub(crate) struct Hub {
    pub cache: PathBuf,
    pub endpoint: String,
    /// `Some(reason)` when downloads are off.
    pub offline: Option<String>,
    pub progress: bool,
}

impl Hub {
    pub(crate) fn new(opts: &ResolveOptions) -> Self {
        let offline = if opts.offline {
            Some("offline mode requested".to_string())
        } else {
            std::env::var("HF_HUB_OFFLINE")
                .ok()
                .filter(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
                .map(|v| format!("HF_HUB_OFFLINE={v}"))
        };
        let endpoint = opts.endpoint.clone().or_else(|| std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()));
        Self {
            cache: opts.hub_cache.clone().unwrap_or_else(default_hub_cache),
            endpoint: endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()).trim_end_matches('/').to_string(),
            offline,
            progress: opts.progress,
        }
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache.join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The cached snapshot directory of `repo` at `revision` (a branch, tag or commit hash).
    fn snapshot(&self, repo: &str, revision: &str, tried: &mut Vec<String>) -> Option<PathBuf> {
        let repo_dir = self.repo_dir(repo);
        let ref_file = repo_dir.join("refs").join(revision);
        let commit = match std::fs::read_to_string(&ref_file) {
            Ok(commit) => commit.trim().to_string(),
            // A commit hash has no ref file; its snapshot is named after it.
            Err(_) if repo_dir.join("snapshots").join(revision).is_dir() => revision.to_string(),
            Err(_) => {
                let by_hash = repo_dir.join("snapshots").join(revision);
                tried.push(format!(
                    "HF hub cache: {} (no such ref), {} (no such snapshot)",
                    ref_file.display(),
                    by_hash.display()
                ));
                return None;
            }
        };
        let snapshot = repo_dir.join("snapshots").join(&commit);
        if snapshot.is_dir() {
            Some(snapshot)
        } else {
            tried.push(format!("HF hub cache: {} (ref `{revision}` → {commit}, snapshot missing)", snapshot.display()));
            None
        }
    }

    /// The model from the local hub cache, without network. A snapshot with several `.gguf` files
    /// and no file named is an error (downloading cannot make that choice for the user).
    pub(crate) fn cached(&self, spec: &RepoSpec, tried: &mut Vec<String>) -> Result<Option<ModelFiles>> {
        let Some(snapshot) = self.snapshot(&spec.repo, spec.revision(), tried) else {
            return Ok(None);
        };
        if let Some(file) = &spec.file {
            let path = snapshot.join(file);
            if path.is_file() {
                return Ok(Some(ModelFiles::Gguf { path }));
            }
            tried.push(format!("HF hub cache: {} (not found)", path.display()));
            return Ok(None);
        }
        if hf_dir::is_hf_dir(&snapshot) {
            return match hf_dir::inspect(&snapshot) {
                Ok(files) => Ok(Some(files)),
                Err(e) => {
                    tried.push(format!("HF hub cache: {} (incomplete: {e})", snapshot.display()));
                    Ok(None)
                }
            };
        }
        match hf_dir::gguf_files(&snapshot)?.as_slice() {
            [one] => Ok(Some(ModelFiles::Gguf { path: one.clone() })),
            [] => {
                tried.push(format!("HF hub cache: {} (no {CONFIG} and no .gguf file)", snapshot.display()));
                Ok(None)
            }
            several => Err(several_ggufs(&spec.repo, several.iter().filter_map(|p| p.file_name()?.to_str()))),
        }
    }

    /// Whether downloading is allowed and the hub answers; records why not in `tried`.
    pub(crate) fn online(&self, what: &str, tried: &mut Vec<String>) -> bool {
        if let Some(reason) = &self.offline {
            tried.push(format!("{what}: not tried ({reason})"));
            return false;
        }
        match probe(&self.endpoint) {
            Ok(()) => true,
            Err(e) => {
                tried.push(format!("{what}: hub unreachable ({e})"));
                false
            }
        }
    }

    pub(crate) fn api_repo(&self, repo: &str, revision: &str) -> Result<ApiRepo> {
        let cache = Cache::new(self.cache.clone());
        let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| cache.token());
        let api = ApiBuilder::from_cache(cache)
            .with_endpoint(self.endpoint.clone())
            .with_progress(self.progress)
            .with_token(token)
            .build()
            .map_err(|e| Error::ModelNotFound(format!("cannot set up the HF hub client: {e}")))?;
        Ok(api.repo(Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string())))
    }

    /// Downloads what `spec` names into the hub cache (a no-op for files already there).
    pub(crate) fn download(&self, spec: &RepoSpec, tried: &mut Vec<String>) -> Result<Option<ModelFiles>> {
        let rev = spec.revision();
        let what = format!("{}/{}@{rev}", self.endpoint, spec.repo);
        if !self.online(&what, tried) {
            return Ok(None);
        }
        let api = self.api_repo(&spec.repo, rev)?;
        let get = |file: &str, tried: &mut Vec<String>| -> Option<PathBuf> {
            tracing::info!("fetching {file} from {what}");
            api.get(file).map_err(|e| tried.push(format!("{}: {e}", api.url(file)))).ok()
        };
        if let Some(file) = &spec.file {
            return Ok(get(file, tried).map(|path| ModelFiles::Gguf { path }));
        }
        let info_url = format!("{}/api/models/{}/revision/{rev}", self.endpoint, spec.repo);
        let info = match api.info() {
            Ok(info) => info,
            Err(e) => {
                tried.push(format!("{info_url}: {e}"));
                return Ok(None);
            }
        };
        let files: BTreeSet<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        if !files.contains(CONFIG) {
            let ggufs: Vec<&str> = files.iter().map(String::as_str).filter(|f| hf_dir::is_gguf(Path::new(f))).collect();
            return match ggufs.as_slice() {
                [one] => Ok(get(one, tried).map(|path| ModelFiles::Gguf { path })),
                [] => {
                    tried.push(format!("{info_url}: the repo has neither {CONFIG} nor a .gguf file"));
                    Ok(None)
                }
                several => Err(several_ggufs(&spec.repo, several.iter().copied())),
            };
        }
        let Some(config) = get(CONFIG, tried) else { return Ok(None) };
        let weights: Vec<String> = if files.contains(WEIGHTS_INDEX) {
            let Some(index) = get(WEIGHTS_INDEX, tried) else { return Ok(None) };
            hf_dir::shard_names(&index)?
        } else if files.contains(SINGLE_WEIGHTS) {
            vec![SINGLE_WEIGHTS.to_string()]
        } else {
            tried.push(format!("{info_url}: no safetensors weights ({WEIGHTS_INDEX} or {SINGLE_WEIGHTS})"));
            return Ok(None);
        };
        let wanted =
            weights.iter().map(String::as_str).chain(OPTIONAL_FILES.into_iter().filter(|f| files.contains(*f)));
        for file in wanted {
            if get(file, tried).is_none() {
                return Ok(None);
            }
        }
        let Some(dir) = config.parent() else { return Ok(None) };
        hf_dir::inspect(dir).map(Some)
    }
}

fn several_ggufs<'a>(repo: &str, files: impl Iterator<Item = &'a str>) -> Error {
    let files: Vec<&str> = files.collect();
    Error::ModelNotFound(format!(
        "{repo} has {} .gguf files; name one as `{repo}:FILE`: {}",
        files.len(),
        files.join(", ")
    ))
}

/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (as huggingface_hub).
pub(crate) fn default_hub_cache() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("HF_HUB_CACHE") {
        return dir;
    }
    if let Some(home) = var("HF_HOME") {
        return home.join("hub");
    }
    dirs::home_dir().unwrap_or_default().join(".cache/huggingface/hub")
}

/// `host:port` of a URL like `https://host[:port]/...`.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default_port = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Can we open a TCP connection to the hub (or to the proxy that would carry the request) within
/// [`PROBE_TIMEOUT`]? Name resolution can hang on a closed network, so it runs on a thread we
/// stop waiting for.
fn probe(endpoint: &str) -> std::result::Result<(), String> {
    let proxy = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|p| !p.is_empty()));
    let target = proxy.as_deref().unwrap_or(endpoint);
    let Some((host, port)) = host_port(target) else {
        return Err(format!("cannot parse host from `{target}`"));
    };
    let (tx, rx) = mpsc::channel();
    let deadline = Instant::now() + PROBE_TIMEOUT;
    std::thread::spawn(move || {
        let result = (|| {
            let addrs = (host.as_str(), port).to_socket_addrs().map_err(|e| format!("resolving {host}: {e}"))?;
            let mut last = format!("{host} has no address");
            for addr in addrs {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match TcpStream::connect_timeout(&addr, left) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("connecting to {addr}: {e}"),
                }
            }
            Err(last)
        })();
        let _ = tx.send(result);
    });
    match rx.recv_timeout(PROBE_TIMEOUT + Duration::from_millis(100)) {
        Ok(result) => result,
        Err(_) => Err(format!("no answer from {target} within {}s", PROBE_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repo_specs() {
        let s = RepoSpec::parse("org/name@v1.0:model.Q4_0.gguf").unwrap();
        assert_eq!((s.repo.as_str(), s.revision(), s.file.as_deref()), ("org/name", "v1.0", Some("model.Q4_0.gguf")));
        assert_eq!(RepoSpec::parse("HuggingFaceTB/SmolLM2-135M-Instruct").unwrap().revision(), "main");
        for bad in ["name", "a/b/c", "/abs", "org/", "../x", "org/name@", "org/name:", "org name/x"] {
            assert_eq!(RepoSpec::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn host_and_port_from_urls() {
        assert_eq!(host_port("https://huggingface.co"), Some(("huggingface.co".into(), 443)));
        assert_eq!(host_port("http://user:pw@proxy:3128/"), Some(("proxy".into(), 3128)));
        assert_eq!(host_port("http://[::1]:8080/x"), Some(("::1".into(), 8080)));
        assert_eq!(host_port("https://"), None);
    }

    #[test]
    fn probe_of_a_closed_port_fails_fast() {
        let started = Instant::now();
        assert!(probe("http://127.0.0.1:9").is_err());
        assert!(started.elapsed() < PROBE_TIMEOUT + Duration::from_secs(1));
    }
}
