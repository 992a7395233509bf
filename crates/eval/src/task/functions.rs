//! The Python helpers lm-eval's built-in tasks name with `!function`, ported. A task file names
//! them `!function <family>.<name>`; lm-eval's own files say `utils.<name>`, so
//! `utils.<name>` is looked up under the task's family (the task name's first word).

use serde_json::{json, Value as Json};

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

/// Resolves `!function NAME` for `task`.
pub fn lookup(task: &str, spec: &str) -> Result<DocFn> {
    let spec = spec.trim_start_matches("!function").trim();
    // `family/utils.fn` (from a file in lm-eval's tasks/<family>/), else the task name's first word.
    let (family, name) = match spec.split_once('/') {
        Some((dir, n)) => (dir, n),
        None => (task.split(['_', '-']).next().unwrap_or(task), spec),
    };
    let qualified = match name.strip_prefix("utils.").or_else(|| name.strip_prefix("preprocess_winogrande.")) {
        Some(f) => format!("{family}.{f}"),
        None => name.to_string(),
    };
    Ok(match qualified.as_str() {
        "hellaswag.process_docs" => hellaswag_process_docs,
        "winogrande.doc_to_text" => winogrande_doc_to_text,
        "winogrande.doc_to_target" => winogrande_doc_to_target,
        "winogrande.doc_to_choice" => winogrande_doc_to_choice,
        _ => {
            return Err(EvalError::task(
                task,
                format!(
                    "`!function {name}` is not built in; available: hellaswag.process_docs, winogrande.doc_to_text, \
                     winogrande.doc_to_target, winogrande.doc_to_choice (process_results: truthfulqa.process_results_mc2, \
                     code.pass_at_k)"
                ),
            ))
        }
    })
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
        assert!(lookup("hellaswag", "!function utils.process_docs").is_ok());
        assert!(lookup("parity_hellaswag", "!function hellaswag/utils.process_docs").is_ok());
        assert!(lookup("x", "!function utils.nope").is_err());
    }
}
