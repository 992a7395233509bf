//! Golden test: every chat template shipped with llama.cpp (the pinned llama-cpp-python sdist),
//! rendered by [`ChatTemplate`] and by transformers (`scripts/chat/expected.py` →
//! `tests/fixtures/chat/expected.json`), must give byte-identical prompts.
//!
//! Templates we cannot match are listed in `KNOWN_FAILURES` with the reason; the test fails if
//! an unlisted case differs *or* a listed one starts matching (so the list stays honest).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use prom_models::chat::{ChatTemplate, RenderOptions};
use serde_json::{Map, Value};

/// 2025-07-26 09:30:00 UTC, the instant `expected.py` freezes `strftime_now` at.
const FIXED_NOW_UNIX: u64 = 1_753_522_200;

/// (template file, case, why we differ from transformers).
const KNOWN_FAILURES: &[(&str, &str, &str)] = &[
    ("meetkai-functionary-medium-v3.1.jinja", "tool_call", MARKUP_ADD),
    ("meetkai-functionary-medium-v3.1.jinja", "tool_call_string_args", MARKUP_ADD),
];

const MARKUP_ADD: &str = "jinja2 `Markup` semantics: `'...'|safe + x` HTML-escapes `x` (Markup.__add__), so Python \
    prints the tool schema as `{&#34;name&#34;: ...}`. minijinja has no hook into `+`, and the escaped prompt is a \
    template bug we would rather not copy.";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn artifact(rel: &str) -> PathBuf {
    let artifacts = std::env::var_os("PROM_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dirs::home_dir().unwrap_or_default().join(".cache/prometheus/artifacts"));
    let path = artifacts.join(rel);
    assert!(path.exists(), "{} not found: run scripts/fetch-artifacts.sh (or set PROM_ARTIFACTS)", path.display());
    path
}

fn read_json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn options(case: &Value) -> RenderOptions {
    RenderOptions {
        add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap_or(false),
        tools: case.get("tools").cloned(),
        extra: case.get("extra").and_then(Value::as_object).cloned().unwrap_or_else(Map::new),
    }
}

/// The first differing line of two renderings, for a readable failure message.
fn first_difference(expected: &str, got: &str) -> String {
    let at = expected.chars().zip(got.chars()).take_while(|(a, b)| a == b).count();
    let ctx = |s: &str| s.chars().skip(at.saturating_sub(40)).take(100).collect::<String>();
    format!("differs at char {at}:\n      python: {:?}\n      ours:   {:?}", ctx(expected), ctx(got))
}

#[test]
fn chat_templates_match_transformers() {
    let dir = artifact("llama-cpp-python-0.3.36/vendor/llama.cpp/models/templates");
    let cases = read_json(repo_root().join("tests/fixtures/chat/cases.json"));
    let expected = read_json(repo_root().join("tests/fixtures/chat/expected.json"));
    let templates = expected["templates"].as_object().expect("expected.json: `templates` object");

    let mut failures: Vec<(String, String, String)> = Vec::new();
    let mut python_only_errors = 0;
    let mut compared = 0;
    let mut fully_matching = 0;
    for (file, entry) in templates {
        let source = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let bos = entry["bos_token"].as_str();
        let eos = entry["eos_token"].as_str();
        let template = match ChatTemplate::new(&source, bos, eos) {
            Ok(t) => t.with_fixed_time(UNIX_EPOCH + Duration::from_secs(FIXED_NOW_UNIX)),
            Err(e) => {
                failures.push((file.clone(), "*".into(), format!("compile: {e}")));
                continue;
            }
        };
        let mut all_ok = true;
        for (name, want) in entry["cases"].as_object().expect("cases object") {
            let case = &cases["cases"][name];
            let messages = case["messages"].as_array().expect("messages array");
            let got = template.render(messages, &options(case));
            match (want.get("output").and_then(Value::as_str), got) {
                (Some(want), Ok(got)) if want == got => compared += 1,
                (Some(want), Ok(got)) => {
                    all_ok = false;
                    failures.push((file.clone(), name.clone(), first_difference(want, &got)));
                }
                (Some(_), Err(e)) => {
                    all_ok = false;
                    failures.push((file.clone(), name.clone(), format!("error: {e}")));
                }
                // `raise_exception` is the template refusing the input: we must refuse too.
                (None, Ok(_)) if want["error"].as_str().is_some_and(|e| e.starts_with("TemplateError")) => {
                    all_ok = false;
                    failures.push((
                        file.clone(),
                        name.clone(),
                        format!("rendered, but Python raised {}", want["error"]),
                    ));
                }
                // Type errors Python hits and we do not (iterating `none`, serializing a generator).
                (None, Ok(_)) => {
                    python_only_errors += 1;
                    eprintln!("lenient: {file} / {name}: Python raised {}", want["error"]);
                }
                (None, Err(_)) => {}
            }
        }
        if all_ok {
            fully_matching += 1;
        }
    }

    let known: BTreeSet<(&str, &str)> = KNOWN_FAILURES.iter().map(|(t, c, _)| (*t, *c)).collect();
    let failed: BTreeSet<(&str, &str)> = failures.iter().map(|(t, c, _)| (t.as_str(), c.as_str())).collect();
    eprintln!(
        "{fully_matching}/{} templates match transformers on every case; {compared} renderings identical; \
         {} known failures; {python_only_errors} cases where Python raised but we rendered",
        templates.len(),
        KNOWN_FAILURES.len(),
    );
    let unexpected: Vec<_> = failures.iter().filter(|(t, c, _)| !known.contains(&(t.as_str(), c.as_str()))).collect();
    let fixed: Vec<_> = known.difference(&failed).collect();
    for (t, c, why) in &unexpected {
        eprintln!("MISMATCH {t} / {c}: {why}");
    }
    assert!(unexpected.is_empty(), "{} renderings differ from transformers (see above)", unexpected.len());
    assert!(fixed.is_empty(), "listed as known failures but now match, remove them from KNOWN_FAILURES: {fixed:?}");
}

/// The loader path: template and special tokens read from real `tokenizer_config.json` files,
/// against transformers' `AutoTokenizer(...).apply_chat_template`.
#[test]
fn tokenizer_configs_match_transformers() {
    let cases = read_json(repo_root().join("tests/fixtures/chat/cases.json"));
    let expected = read_json(repo_root().join("tests/fixtures/chat/expected.json"));
    let packages = expected["tokenizer_configs"].as_object().expect("expected.json: `tokenizer_configs` object");
    assert_eq!(packages.len(), 2, "tokenizer-qwen3 and tokenizer-llama3");
    let mut compared = 0;
    for (package, entry) in packages {
        let path = artifact(&format!("npm/{package}/models/tokenizer_config.json"));
        let template = ChatTemplate::from_tokenizer_config(&path)
            .unwrap_or_else(|e| panic!("{package}: {e}"))
            .unwrap_or_else(|| panic!("{package}: no chat_template"))
            .with_fixed_time(UNIX_EPOCH + Duration::from_secs(FIXED_NOW_UNIX));
        for (name, want) in entry.as_object().expect("cases object") {
            let case = &cases["cases"][name];
            let got = template.render(case["messages"].as_array().expect("messages"), &options(case));
            match (want.get("output").and_then(Value::as_str), got) {
                (Some(want), Ok(got)) => {
                    assert!(want == got, "{package} / {name}: {}", first_difference(want, &got));
                    compared += 1;
                }
                (Some(_), Err(e)) => panic!("{package} / {name}: {e}"),
                (None, _) => {}
            }
        }
    }
    assert!(compared >= 10, "only {compared} renderings compared");
}
