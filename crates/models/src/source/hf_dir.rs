//! What makes a directory an HF model: `config.json` plus safetensors weights (one
//! `model.safetensors`, or the shards that `model.safetensors.index.json` lists), and the
//! optional tokenizer, generation-config and chat-template files next to them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ModelFiles;
use crate::{Error, Result};

pub(crate) const CONFIG: &str = "config.json";
pub(crate) const SINGLE_WEIGHTS: &str = "model.safetensors";
pub(crate) const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// Files an HF model directory may have besides config and weights.
pub(crate) const OPTIONAL_FILES: [&str; 4] =
    ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"];

pub(crate) fn is_hf_dir(dir: &Path) -> bool {
    dir.join(CONFIG).is_file()
}

/// The shard file names an index's `weight_map` points at, sorted and deduplicated.
pub(crate) fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| Error::bad_file(index, format!("invalid JSON: {e}")))?;
    let Some(map) = json.get("weight_map").and_then(Value::as_object) else {
        return Err(Error::bad_file(index, "no `weight_map` object"));
    };
    let mut names = BTreeSet::new();
    for (tensor, file) in map {
        let Some(file) = file.as_str() else {
            return Err(Error::bad_file(index, format!("weight_map[`{tensor}`] is not a file name: {file}")));
        };
        // A shard name is a plain file name next to the index; refuse paths that leave the directory.
        if file.is_empty() || file.contains(['/', '\\']) || file == ".." {
            return Err(Error::bad_file(index, format!("weight_map[`{tensor}`] = `{file}` is not a file name")));
        }
        names.insert(file.to_string());
    }
    if names.is_empty() {
        return Err(Error::bad_file(index, "`weight_map` is empty"));
    }
    Ok(names.into_iter().collect())
}

/// Inspects an HF model directory; every weight file is checked to exist.
pub(crate) fn inspect(dir: &Path) -> Result<ModelFiles> {
    inspect_with(dir, true)
}

/// [`inspect`], with `require_weights` false accepting a directory of `config.json` (and
/// tokenizer files) alone: its `weights` come back empty (for `--load-format dummy`).
pub(crate) fn inspect_with(dir: &Path, require_weights: bool) -> Result<ModelFiles> {
    let config = dir.join(CONFIG);
    if !config.is_file() {
        return Err(Error::ModelNotFound(format!("{}: not an HF model directory (no {CONFIG})", dir.display())));
    }
    let index = dir.join(WEIGHTS_INDEX);
    let weights = if index.is_file() {
        let shards: Vec<PathBuf> = shard_names(&index)?.iter().map(|n| dir.join(n)).collect();
        let missing: Vec<String> = shards.iter().filter(|p| !p.is_file()).map(|p| p.display().to_string()).collect();
        if !missing.is_empty() {
            return Err(Error::bad_file(
                &index,
                format!("weight_map names {} missing shard(s): {}", missing.len(), missing.join(", ")),
            ));
        }
        shards
    } else if dir.join(SINGLE_WEIGHTS).is_file() {
        vec![dir.join(SINGLE_WEIGHTS)]
    } else if !require_weights {
        Vec::new()
    } else {
        let has_bin = dir.join("pytorch_model.bin").is_file() || dir.join("pytorch_model.bin.index.json").is_file();
        let hint = if has_bin { " (only PyTorch .bin weights are present; convert them to safetensors)" } else { "" };
        return Err(Error::ModelNotFound(format!(
            "{}: HF model directory without weights: neither {WEIGHTS_INDEX} nor {SINGLE_WEIGHTS}{hint} \
             (`--load-format dummy` runs its config with made-up weights)",
            dir.display()
        )));
    };
    let optional = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    Ok(ModelFiles::HfDir {
        dir: dir.to_path_buf(),
        config,
        weights,
        tokenizer_json: optional(OPTIONAL_FILES[0]),
        tokenizer_config: optional(OPTIONAL_FILES[1]),
        generation_config: optional(OPTIONAL_FILES[2]),
        chat_template_jinja: optional(OPTIONAL_FILES[3]),
    })
}

/// The `.gguf` files directly inside `dir`, sorted.
pub(crate) fn gguf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if is_gguf(&path) && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

pub(crate) fn is_gguf(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// A directory: HF layout if it has `config.json`, else its one `.gguf` file.
pub(crate) fn resolve_dir(dir: &Path) -> Result<ModelFiles> {
    if is_hf_dir(dir) {
        return inspect(dir);
    }
    match gguf_files(dir)?.as_slice() {
        [one] => Ok(ModelFiles::Gguf { path: one.clone() }),
        [] => Err(Error::ModelNotFound(format!(
            "{}: neither an HF model directory (no {CONFIG}) nor a directory with a .gguf file",
            dir.display()
        ))),
        several => Err(Error::ModelNotFound(format!(
            "{}: {} .gguf files, pass the one you want: {}",
            dir.display(),
            several.len(),
            several.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}
