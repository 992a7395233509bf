//! A task's YAML in lm-eval's shape (`lm_eval/config/task.py`), after `include:` is merged and
//! `!function module.name` tags are turned into the names of built-in Rust functions
//! (see [`super::functions`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml::Value as Yaml;

use crate::{EvalError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    MultipleChoice,
    Loglikelihood,
    LoglikelihoodRolling,
    GenerateUntil,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FewshotConfig {
    /// `default` (random, seeded) or `first_n`.
    pub sampler: Option<String>,
    /// Few-shot documents: a list, or `!function module.name` giving one.
    pub samples: Option<Yaml>,
    pub doc_to_text: Option<Yaml>,
    pub doc_to_target: Option<Yaml>,
    pub doc_to_choice: Option<Yaml>,
    pub target_delimiter: Option<String>,
    pub fewshot_delimiter: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct GenerationKwargs {
    pub until: Option<Yaml>,
    pub max_gen_toks: Option<usize>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
}

impl GenerationKwargs {
    pub fn until(&self) -> Vec<String> {
        match &self.until {
            Some(Yaml::String(s)) => vec![s.clone()],
            Some(Yaml::Sequence(v)) => v.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => vec![],
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FilterStep {
    pub function: String,
    pub regex_pattern: Option<String>,
    pub group_select: Option<i64>,
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FilterPipeline {
    pub name: String,
    pub filter: Vec<FilterStep>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct MetricConfig {
    pub metric: String,
    pub aggregation: Option<String>,
    pub higher_is_better: Option<bool>,
    pub ignore_case: bool,
    pub ignore_punctuation: bool,
    pub ignore_numbers: bool,
    pub regexes_to_ignore: Vec<String>,
    /// pass@k values for code tasks.
    pub k: Option<Vec<usize>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TaskConfig {
    pub task: String,
    pub tag: Option<Yaml>,
    pub dataset_path: Option<String>,
    pub dataset_name: Option<String>,
    pub dataset_kwargs: Option<Yaml>,
    pub training_split: Option<String>,
    pub validation_split: Option<String>,
    pub test_split: Option<String>,
    pub fewshot_split: Option<String>,
    pub process_docs: Option<String>,
    pub output_type: Option<OutputType>,
    pub doc_to_text: Option<Yaml>,
    pub doc_to_target: Option<Yaml>,
    pub doc_to_choice: Option<Yaml>,
    pub process_results: Option<String>,
    pub description: Option<String>,
    pub target_delimiter: String,
    pub fewshot_delimiter: String,
    pub num_fewshot: Option<usize>,
    pub fewshot_config: Option<FewshotConfig>,
    pub generation_kwargs: Option<GenerationKwargs>,
    pub filter_list: Option<Vec<FilterPipeline>>,
    pub metric_list: Option<Vec<MetricConfig>>,
    pub repeats: usize,
    pub metadata: Option<Yaml>,
    /// Keys we read but do not act on (decontamination and the like), kept for the report.
    #[serde(flatten)]
    pub other: BTreeMap<String, Yaml>,
    /// Where the YAML came from (relative data paths resolve against its directory).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            task: String::new(),
            tag: None,
            dataset_path: None,
            dataset_name: None,
            dataset_kwargs: None,
            training_split: None,
            validation_split: None,
            test_split: None,
            fewshot_split: None,
            process_docs: None,
            output_type: None,
            doc_to_text: None,
            doc_to_target: None,
            doc_to_choice: None,
            process_results: None,
            description: None,
            target_delimiter: " ".into(),
            fewshot_delimiter: "\n\n".into(),
            num_fewshot: None,
            fewshot_config: None,
            generation_kwargs: None,
            filter_list: None,
            metric_list: None,
            repeats: 1,
            metadata: None,
            other: BTreeMap::new(),
            source: None,
        }
    }
}

/// Keys lm-eval knows that do not change what we compute.
const IGNORED: &[&str] = &[
    "should_decontaminate",
    "doc_to_decontamination_query",
    "group",
    "group_alias",
    "aggregate_metric_list",
    "unsafe_code",
];

impl TaskConfig {
    pub fn output_type(&self) -> OutputType {
        self.output_type.unwrap_or(OutputType::GenerateUntil)
    }

    pub fn version(&self) -> serde_json::Value {
        self.metadata
            .as_ref()
            .and_then(|m| m.get("version"))
            .and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The split evaluated: test, else validation (lm-eval's order).
    pub fn eval_split(&self) -> Option<&str> {
        self.test_split.as_deref().or(self.validation_split.as_deref())
    }

    pub fn unknown_keys(&self) -> Vec<&str> {
        self.other.keys().map(String::as_str).filter(|k| !IGNORED.contains(k)).collect()
    }

    /// A field given as text (templates are strings; integers are literal indices).
    pub fn field(v: &Option<Yaml>) -> Option<String> {
        match v.as_ref()? {
            Yaml::String(s) => Some(s.clone()),
            Yaml::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// `!function utils.process_docs` → `"!function utils.process_docs"`, recursively. In a file
/// under `.../hellaswag/` it becomes `"!function hellaswag/utils.process_docs"`: lm-eval
/// resolves the module next to the YAML file, so its directory names the task family.
fn untag(v: Yaml, family: Option<&str>) -> Yaml {
    match v {
        Yaml::Tagged(t) if t.tag == "function" => {
            let name = t.value.as_str().unwrap_or_default();
            match family {
                Some(f) if !name.contains('/') => Yaml::String(format!("!function {f}/{name}")),
                _ => Yaml::String(format!("!function {name}")),
            }
        }
        Yaml::Tagged(t) => untag(t.value, family),
        Yaml::Mapping(m) => Yaml::Mapping(m.into_iter().map(|(k, v)| (k, untag(v, family))).collect()),
        Yaml::Sequence(s) => Yaml::Sequence(s.into_iter().map(|v| untag(v, family)).collect()),
        other => other,
    }
}

/// Parses YAML text, resolving `include:` with `resolve(name, including_dir)` (a path or a
/// built-in task's text). Keys of the including file win, as in lm-eval.
pub fn parse(
    text: &str,
    source: Option<&Path>,
    resolve: &dyn Fn(&str, Option<&Path>) -> Result<(String, Option<PathBuf>)>,
) -> Result<TaskConfig> {
    let merged = merged_mapping(text, source, resolve, 0)?;
    let mut cfg: TaskConfig = serde_yaml::from_value(Yaml::Mapping(merged)).map_err(|e| {
        EvalError::Config(format!("{}: {e}", source.map_or("<built-in>".into(), |p| p.display().to_string())))
    })?;
    if cfg.task.is_empty() {
        return Err(EvalError::Config(format!(
            "{}: `task` (the task's name) is missing",
            source.map_or("<built-in>".into(), |p| p.display().to_string())
        )));
    }
    cfg.source = source.map(Path::to_path_buf);
    Ok(cfg)
}

fn merged_mapping(
    text: &str,
    source: Option<&Path>,
    resolve: &dyn Fn(&str, Option<&Path>) -> Result<(String, Option<PathBuf>)>,
    depth: usize,
) -> Result<serde_yaml::Mapping> {
    let where_ = || source.map_or("<built-in>".into(), |p| p.display().to_string());
    if depth > 8 {
        return Err(EvalError::Config(format!("{}: `include:` nests deeper than 8 files", where_())));
    }
    let v: Yaml = serde_yaml::from_str(text).map_err(|e| EvalError::Config(format!("{}: {e}", where_())))?;
    let family = source.and_then(Path::parent).and_then(Path::file_name).and_then(|f| f.to_str());
    let Yaml::Mapping(mut m) = untag(v, family) else {
        return Err(EvalError::Config(format!("{}: a task file must be a YAML mapping", where_())));
    };
    let Some(inc) = m.remove("include") else { return Ok(m) };
    let inc = inc.as_str().ok_or_else(|| EvalError::Config(format!("{}: `include` must be a string", where_())))?;
    let dir = source.and_then(Path::parent);
    let (base_text, base_src) = resolve(inc, dir)?;
    let mut base = merged_mapping(&base_text, base_src.as_deref(), resolve, depth + 1)?;
    for (k, v) in m {
        base.insert(k, v);
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_include(name: &str, _: Option<&Path>) -> Result<(String, Option<PathBuf>)> {
        if name == "base.yaml" {
            return Ok((
                "task: base\noutput_type: multiple_choice\ndoc_to_text: \"Q: {{q}}\"\nmetadata:\n  version: 2.0\n"
                    .into(),
                None,
            ));
        }
        Err(EvalError::Config(format!("no {name}")))
    }

    #[test]
    fn include_merges_and_the_including_file_wins() {
        let cfg =
            parse("include: base.yaml\ntask: derived\nprocess_docs: !function utils.process_docs\n", None, &no_include)
                .unwrap();
        assert_eq!(cfg.task, "derived");
        assert_eq!(cfg.output_type(), OutputType::MultipleChoice);
        assert_eq!(cfg.process_docs.as_deref(), Some("!function utils.process_docs"));
        assert_eq!(cfg.version(), serde_json::json!(2.0));
        assert_eq!(cfg.target_delimiter, " ");
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(parse("output_type: multiple_choice\n", None, &no_include).unwrap_err().to_string().contains("`task`"));
        assert!(parse("task: x\noutput_type: essay\n", None, &no_include).is_err());
        assert!(parse("include: missing.yaml\ntask: x\n", None, &no_include)
            .unwrap_err()
            .to_string()
            .contains("no missing.yaml"));
    }
}
