//! Built-in tasks (YAML files under `crates/eval/tasks/`, compiled in) and task lookup:
//! `--tasks` names built-in tasks, groups (`mmlu`, `ai2_arc`, `truthfulqa`) or YAML files.

use std::path::{Path, PathBuf};

use super::config::{self, TaskConfig};
use crate::{EvalError, Result};

const BUILTIN: &[(&str, &str)] = &[
    ("arc_easy", include_str!("../../tasks/arc_easy.yaml")),
    ("arc_challenge", include_str!("../../tasks/arc_challenge.yaml")),
    ("hellaswag", include_str!("../../tasks/hellaswag.yaml")),
    ("piqa", include_str!("../../tasks/piqa.yaml")),
    ("winogrande", include_str!("../../tasks/winogrande.yaml")),
    ("boolq", include_str!("../../tasks/boolq.yaml")),
    ("truthfulqa_mc1", include_str!("../../tasks/truthfulqa_mc1.yaml")),
    ("truthfulqa_mc2", include_str!("../../tasks/truthfulqa_mc2.yaml")),
    ("gsm8k", include_str!("../../tasks/gsm8k.yaml")),
    ("humaneval", include_str!("../../tasks/humaneval.yaml")),
    ("mbpp", include_str!("../../tasks/mbpp.yaml")),
    ("triviaqa", include_str!("../../tasks/triviaqa.yaml")),
    ("wikitext", include_str!("../../tasks/wikitext.yaml")),
    ("bbq", include_str!("../../tasks/bbq.yaml")),
    ("bbq_ambig", include_str!("../../tasks/bbq_ambig.yaml")),
    ("bbq_disambig", include_str!("../../tasks/bbq_disambig.yaml")),
    ("bbq_generate", include_str!("../../tasks/bbq_generate.yaml")),
    ("bbq_generate_ambig", include_str!("../../tasks/bbq_generate_ambig.yaml")),
    ("bbq_generate_disambig", include_str!("../../tasks/bbq_generate_disambig.yaml")),
    ("minerva_math500", include_str!("../../tasks/minerva_math500.yaml")),
];

const MMLU_TEMPLATE: &str = include_str!("../../tasks/mmlu.yaml");

pub const MMLU_SUBJECTS: [&str; 57] = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
];

/// Groups: a name standing for several tasks.
const GROUPS: &[(&str, &[&str])] =
    &[("ai2_arc", &["arc_easy", "arc_challenge"]), ("truthfulqa", &["truthfulqa_mc1", "truthfulqa_mc2"])];

fn builtin_text(name: &str) -> Option<String> {
    let name = name.trim_end_matches(".yaml");
    if let Some((_, t)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        return Some(t.to_string());
    }
    let subject = name.strip_prefix("mmlu_")?;
    MMLU_SUBJECTS
        .contains(&subject)
        .then(|| MMLU_TEMPLATE.replace("SUBJECT_NAME", &subject.replace('_', " ")).replace("SUBJECT", subject))
}

/// Every built-in task and group name.
pub fn names() -> Vec<String> {
    let mut v: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    v.extend(GROUPS.iter().map(|(g, _)| g.to_string()));
    v.push("mmlu".into());
    v.extend(MMLU_SUBJECTS.iter().map(|s| format!("mmlu_{s}")));
    v
}

/// `include:` targets: a file next to the including one (or an absolute path), else a
/// built-in task by name.
fn resolve_include(name: &str, dir: Option<&Path>) -> Result<(String, Option<PathBuf>)> {
    let candidates: Vec<PathBuf> =
        [dir.map(|d| d.join(name)), Some(PathBuf::from(name))].into_iter().flatten().collect();
    for p in candidates {
        if p.is_file() {
            let text = std::fs::read_to_string(&p).map_err(EvalError::io("reading", &p))?;
            return Ok((text, Some(p)));
        }
    }
    builtin_text(name)
        .map(|t| (t, None))
        .ok_or_else(|| EvalError::Config(format!("`include: {name}`: no such file or built-in task")))
}

pub fn parse_file(path: &Path) -> Result<TaskConfig> {
    let text = std::fs::read_to_string(path).map_err(EvalError::io("reading", path))?;
    config::parse(&text, Some(path), &resolve_include)
}

/// The task configs one `--tasks` entry stands for: a YAML file, a directory of YAML files, a
/// built-in task, or a group.
pub fn lookup(spec: &str) -> Result<Vec<TaskConfig>> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(vec![parse_file(path)?]);
    }
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(EvalError::io("listing", path))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        return files.iter().map(|p| parse_file(p)).collect();
    }
    if spec == "mmlu" {
        return MMLU_SUBJECTS.iter().map(|s| lookup_one(&format!("mmlu_{s}"))).collect();
    }
    if let Some((_, members)) = GROUPS.iter().find(|(g, _)| *g == spec) {
        return members.iter().map(|m| lookup_one(m)).collect();
    }
    Ok(vec![lookup_one(spec)?])
}

fn lookup_one(name: &str) -> Result<TaskConfig> {
    let text = builtin_text(name).ok_or_else(|| {
        EvalError::Config(format!(
            "unknown task `{name}`: not a YAML file and not built in (built in: {})",
            names().join(", ")
        ))
    })?;
    config::parse(&text, None, &resolve_include)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::OutputType;

    #[test]
    fn every_builtin_parses() {
        for n in names() {
            let cfgs = lookup(&n).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert!(!cfgs.is_empty());
        }
        assert_eq!(lookup("mmlu").unwrap().len(), 57);
        let arc = lookup("arc_challenge").unwrap().remove(0);
        assert_eq!((arc.task.as_str(), arc.dataset_name.as_deref()), ("arc_challenge", Some("ARC-Challenge")));
        assert_eq!(arc.output_type(), Some(OutputType::MultipleChoice).unwrap());
        let mmlu = lookup("mmlu_college_physics").unwrap().remove(0);
        assert!(mmlu.description.unwrap().contains("about college physics."));
        assert!(lookup("nope").unwrap_err().to_string().contains("unknown task `nope`"));
    }
}
