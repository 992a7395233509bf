//! The Python helpers lm-eval's built-in tasks name with `!function`, ported. A task file names
//! them `!function <family>.<name>`; lm-eval's own files say `utils.<name>`, so
//! `utils.<name>` is looked up under the task's family (the task name's first word).

use serde_json::{json, Value as Json};

use super::{bbq, minerva};
use crate::{EvalError, Result};

/// A per-document transform (`process_docs` is applied row by row).
pub type DocFn = fn(&Json) -> Result<Json>;

fn field<'a>(doc: &'a Json, k: &str) -> Result<&'a str> {
    doc.get(k).and_then(Json::as_str).ok_or_else(|| EvalError::Config(format!("document has no string field `{k}`")))
}

/// Python `str.capitalize()`: first character upper-cased, the rest lower-cased.
fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect())
}

/// lm-eval `hellaswag/utils.py::preprocess`.
fn hellaswag_preprocess(text: &str) -> String {
    use std::sync::OnceLock;
    static BRACKETS: OnceLock<regex::Regex> = OnceLock::new();
    let re = BRACKETS.get_or_init(|| regex::Regex::new(r"\[.*?\]").expect("static regex"));
    let t = text.trim().replace(" [title]", ". ");
    re.replace_all(&t, "").replace("  ", " ")
}

fn hellaswag_process_docs(doc: &Json) -> Result<Json> {
    let ctx = format!("{} {}", field(doc, "ctx_a")?, capitalize(field(doc, "ctx_b")?));
    let endings = doc
        .get("endings")
        .and_then(Json::as_array)
        .ok_or_else(|| EvalError::Config("hellaswag: no `endings`".into()))?;
    let label =
        doc.get("label").map(|l| l.as_str().map(str::to_string).unwrap_or_else(|| l.to_string())).unwrap_or_default();
    let mut out = doc.clone();
    out["query"] = json!(hellaswag_preprocess(&format!("{}: {ctx}", field(doc, "activity_label")?)));
    out["choices"] =
        json!(endings.iter().map(|e| hellaswag_preprocess(e.as_str().unwrap_or_default())).collect::<Vec<_>>());
    out["gold"] =
        json!(label.trim().parse::<i64>().map_err(|_| EvalError::Config(format!("hellaswag: label {label:?}")))?);
    Ok(out)
}

fn blank(doc: &Json) -> Result<(String, usize)> {
    let s = field(doc, "sentence")?;
    let i = s.find('_').ok_or_else(|| EvalError::Config("winogrande: sentence has no `_`".into()))?;
    Ok((s.to_string(), i))
}

/// lm-eval `winogrande/preprocess_winogrande.py`: the gold option's index.
fn winogrande_doc_to_text(doc: &Json) -> Result<Json> {
    match field(doc, "answer")? {
        "1" => Ok(json!(0)),
        "2" => Ok(json!(1)),
        a => Err(EvalError::Config(format!("winogrande: answer {a:?} is not \"1\" or \"2\""))),
    }
}

/// The sentence after the blank (the continuation scored for every option).
fn winogrande_doc_to_target(doc: &Json) -> Result<Json> {
    let (s, i) = blank(doc)?;
    Ok(json!(s[i + 1..].trim()))
}

/// The sentence up to the blank with each option filled in (one context per option).
fn winogrande_doc_to_choice(doc: &Json) -> Result<Json> {
    let (s, i) = blank(doc)?;
    Ok(json!([format!("{}{}", &s[..i], field(doc, "option1")?), format!("{}{}", &s[..i], field(doc, "option2")?)]))
}

/// `!function NAME` → `family.function`. lm-eval's files say `utils.<fn>` (the module beside the
/// YAML, whose directory names the family: `hellaswag/utils.fn`); built-in files say
/// `<family>.<fn>` or `utils.<fn>`, the family then being the task name's first word.
fn qualify(task: &str, spec: &str) -> (String, String) {
    let spec = spec.trim_start_matches("!function").trim();
    let (family, name) = match spec.split_once('/') {
        Some((dir, n)) => (dir, n),
        None => (task.split(['_', '-']).next().unwrap_or(task), spec),
    };
    let family = if family == "minerva_math" { "minerva" } else { family };
    let qualified = match name.strip_prefix("utils.").or_else(|| name.strip_prefix("preprocess_winogrande.")) {
        Some(f) => format!("{family}.{f}"),
        None => name.to_string(),
    };
    (qualified, name.to_string())
}

fn not_built_in(task: &str, name: &str, what: &str, available: &str) -> EvalError {
    EvalError::task(task, format!("`!function {name}` is not built in as {what}; available: {available}"))
}

/// Resolves a `doc_to_text` / `doc_to_target` / `doc_to_choice` function for `task`.
pub fn lookup(task: &str, spec: &str) -> Result<DocFn> {
    let (qualified, name) = qualify(task, spec);
    Ok(match qualified.as_str() {
        "winogrande.doc_to_text" => winogrande_doc_to_text,
        "winogrande.doc_to_target" => winogrande_doc_to_target,
        "winogrande.doc_to_choice" => winogrande_doc_to_choice,
        "bbq.doc_to_choice" => bbq::doc_to_choice,
        "bbq.doc_to_target" => bbq::doc_to_target,
        "minerva.doc_to_text" => minerva::doc_to_text,
        _ => {
            return Err(not_built_in(
                task,
                &name,
                "a document function",
                "winogrande.doc_to_text/doc_to_target/doc_to_choice, bbq.doc_to_choice/doc_to_target, \
                 minerva_math.doc_to_text",
            ))
        }
    })
}

/// A whole-split transform (`process_docs`; some filter, most map row by row).
pub type DocsFn = fn(Vec<Json>) -> Result<Vec<Json>>;

fn map_rows(rows: Vec<Json>, f: DocFn) -> Result<Vec<Json>> {
    rows.iter().map(f).collect()
}

fn bbq_rows(rows: Vec<Json>, condition: &str) -> Result<Vec<Json>> {
    rows.into_iter().filter(|d| bbq::in_condition(d, condition)).map(bbq::process_doc).collect()
}

/// Resolves `process_docs` for `task`.
pub fn lookup_process_docs(task: &str, spec: &str) -> Result<DocsFn> {
    let (qualified, name) = qualify(task, spec);
    Ok(match qualified.as_str() {
        "hellaswag.process_docs" => |rows| map_rows(rows, hellaswag_process_docs),
        "bbq.process_docs" => |rows| bbq_rows(rows, ""),
        "bbq.process_docs_ambig" => |rows| bbq_rows(rows, "amb"),
        "bbq.process_docs_disambig" => |rows| bbq_rows(rows, "disamb"),
        "minerva.process_docs" => |rows| map_rows(rows, minerva::process_doc),
        _ => {
            return Err(not_built_in(
                task,
                &name,
                "process_docs",
                "hellaswag.process_docs, bbq.process_docs/process_docs_ambig/process_docs_disambig, \
                 minerva_math.process_docs",
            ))
        }
    })
}

/// Resolves `fewshot_config.samples: !function ...` for `task`.
pub fn lookup_samples(task: &str, spec: &str) -> Result<Vec<Json>> {
    let (qualified, name) = qualify(task, spec);
    match qualified.as_str() {
        "minerva.list_fewshot_samples" => Ok(minerva::fewshot_samples()),
        _ => Err(not_built_in(task, &name, "few-shot samples", "minerva_math.list_fewshot_samples")),
    }
}

/// The ported `process_results` functions the runner scores with (code execution aside,
/// see [`crate::code::CodeFlavor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultsFn {
    /// TruthfulQA MC2: normalised probability of the true answers.
    TruthfulqaMc2,
    /// BBQ, answer = argmax loglikelihood; accuracy and bias scores.
    BbqMultipleChoice,
    /// BBQ, answer read from the generation.
    BbqGenerateUntil,
    /// MATH: Minerva answer extraction and equivalence.
    MinervaMath,
}

impl ResultsFn {
    pub fn lookup(task: &str, spec: &str) -> Option<Self> {
        Some(match qualify(task, spec).0.as_str() {
            "truthfulqa.process_results_mc2" => ResultsFn::TruthfulqaMc2,
            "bbq.process_results_multiple_choice" => ResultsFn::BbqMultipleChoice,
            "bbq.process_results_generate_until" => ResultsFn::BbqGenerateUntil,
            "minerva.process_results" => ResultsFn::MinervaMath,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellaswag_matches_lm_eval_preprocessing() {
        let doc = json!({
            "activity_label": "Removing ice from car",
            "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.",
            "ctx_b": "then",
            "endings": [", the man adds wax to the windshield and cuts it.", " [title] A person board [step] skis."],
            "label": "3"
        });
        let d = hellaswag_process_docs(&doc).unwrap();
        assert_eq!(d["query"], "Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. Then");
        // strip() runs first, so the leading " [title]" no longer matches; the brackets go.
        assert_eq!(d["choices"][1], " A person board skis.");
        assert_eq!(d["gold"], 3);
        assert_eq!(capitalize("hELLO wORLD"), "Hello world");
    }

    #[test]
    fn winogrande_partial_contexts() {
        let doc = json!({"sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.", "option1": "Sarah", "option2": "Maria", "answer": "1"});
        assert_eq!(winogrande_doc_to_text(&doc).unwrap(), json!(0));
        assert_eq!(winogrande_doc_to_target(&doc).unwrap(), json!("always got the harder cases."));
        assert_eq!(
            winogrande_doc_to_choice(&doc).unwrap()[1],
            json!("Sarah was a much better surgeon than Maria so Maria")
        );
        assert!(lookup("winogrande", "!function preprocess_winogrande.doc_to_text").is_ok());
        assert!(lookup_process_docs("hellaswag", "!function utils.process_docs").is_ok());
        assert!(lookup_process_docs("parity_hellaswag", "!function hellaswag/utils.process_docs").is_ok());
        assert!(lookup_process_docs("bbq_ambig", "!function utils.process_docs_ambig").is_ok());
        assert!(lookup("minerva_math500", "!function minerva_math/utils.doc_to_text").is_ok());
        assert_eq!(
            ResultsFn::lookup("x", "!function bbq/utils.process_results_generate_until"),
            Some(ResultsFn::BbqGenerateUntil)
        );
        assert_eq!(
            ResultsFn::lookup("truthfulqa_mc2", "!function truthfulqa.process_results_mc2"),
            Some(ResultsFn::TruthfulqaMc2)
        );
        assert!(lookup("x", "!function utils.nope").unwrap_err().to_string().contains("utils.nope"));
    }
}
