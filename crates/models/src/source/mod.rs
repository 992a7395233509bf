//! Model source resolution: what the user typed (`--model ...`) → the files on disk.
//!
//! A spec is, in the order we try it:
//! - a path: a `.gguf` file; a directory with `config.json` (HF layout); a directory holding
//!   exactly one `.gguf`;
//! - [`DEFAULT_MODEL`] (see `default_model.rs` for where it is fetched from);
//! - a hub id `org/name`, `org/name@revision` or `org/name:file.gguf` (combinable as
//!   `org/name@revision:file.gguf`): the local HF hub cache first, then — unless offline
//!   (`HF_HUB_OFFLINE=1` or [`ResolveOptions::offline`]) and if the hub answers within a few
//!   seconds — a download through `hf-hub`.
//!
//! A failure is [`Error::ModelNotFound`] listing every place looked at and why it did not fit.
//! Nothing here parses model contents beyond the shard index; that is the loaders' job.

mod default_model;
mod hf_dir;
mod hub;

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The model used when none is named: SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB).
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct-q4_1";

/// The files a model is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// An HF model directory. Every path listed exists.
    HfDir {
        dir: PathBuf,
        config: PathBuf,
        /// `model.safetensors`, or the shards `model.safetensors.index.json` lists (sorted);
        /// empty only from [`resolve_config_dir`].
        weights: Vec<PathBuf>,
        tokenizer_json: Option<PathBuf>,
        tokenizer_config: Option<PathBuf>,
        generation_config: Option<PathBuf>,
        chat_template_jinja: Option<PathBuf>,
    },
    /// A single GGUF file: weights, tokenizer and chat template in one.
    Gguf { path: PathBuf },
}

/// How [`resolve`] may look for a model. Fields left `None` fall back to the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// Never use the network (`HF_HUB_OFFLINE=1` has the same effect).
    pub offline: bool,
    /// The HF hub cache; `None`: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub hub_cache: Option<PathBuf>,
    /// Where the default model is kept; `None`: `$PROM_CACHE`, else `<cache dir>/prometheus/models`.
    pub model_cache: Option<PathBuf>,
    /// The hub's base URL; `None`: `$HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Show progress bars while downloading.
    pub progress: bool,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self { offline: false, hub_cache: None, model_cache: None, endpoint: None, progress: true }
    }
}

/// An HF model directory that may hold no weights (`config.json` and tokenizer files alone),
/// for `--load-format dummy`: the weights it lists, if any, are not read.
pub fn resolve_config_dir(dir: &Path) -> Result<ModelFiles> {
    hf_dir::inspect_with(dir, false)
}

/// Resolves `spec` (a path, [`DEFAULT_MODEL`] or a hub id) to the model's files.
pub fn resolve(spec: &str, opts: &ResolveOptions) -> Result<ModelFiles> {
    let path = Path::new(spec);
    if path.is_file() {
        if hf_dir::is_gguf(path) {
            return Ok(ModelFiles::Gguf { path: path.to_path_buf() });
        }
        return Err(Error::ModelNotFound(format!(
            "{spec}: a file, but not a .gguf; pass a .gguf file, a model directory or an `org/name` hub id"
        )));
    }
    if path.is_dir() {
        return hf_dir::resolve_dir(path);
    }
    let hub = hub::Hub::new(opts);
    if spec.eq_ignore_ascii_case(DEFAULT_MODEL) {
        return default_model::resolve(opts, &hub);
    }
    let mut tried = vec![format!("path {}: no such file or directory", path.display())];
    let repo = match hub::RepoSpec::parse(spec) {
        Some(repo) if !(hf_dir::is_gguf(path) && repo.file.is_none()) => repo,
        // `dir/model.gguf` that does not exist is a mistyped path, not a hub repo named `model.gguf`.
        _ => {
            tried.push(format!(
                "`{spec}` is not a hub id (`org/name`, `org/name@revision`, `org/name:file.gguf`) either"
            ));
            return Err(not_found(spec, &tried));
        }
    };
    if let Some(files) = hub.cached(&repo, &mut tried)? {
        return Ok(files);
    }
    if let Some(files) = hub.download(&repo, &mut tried)? {
        return Ok(files);
    }
    Err(not_found(spec, &tried))
}

fn not_found(spec: &str, tried: &[String]) -> Error {
    let mut msg = format!("model `{spec}` not found. Looked for:");
    for line in tried {
        msg.push_str("\n  - ");
        msg.push_str(line);
    }
    Error::ModelNotFound(msg)
}
