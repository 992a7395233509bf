//! HumanEval and MBPP: a completion becomes a Python program with the task's tests
//! (human-eval `execution.py`: `prompt + completion + "\n" + test + "\n" + f"check({entry_point})"`;
//! MBPP: the completion, its setup code and its `assert` lines), each run in the [`sandbox`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::Value as Json;

use crate::backend::Progress;
use crate::sandbox::{self, Outcome, SandboxConfig};
use crate::{EvalError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeFlavor {
    HumanEval,
    Mbpp,
}

impl CodeFlavor {
    /// `process_results: !function code.humaneval` (or `code.mbpp`).
    pub fn from_process_results(s: &str) -> Option<Self> {
        match s.trim_start_matches("!function").trim() {
            "code.humaneval" => Some(CodeFlavor::HumanEval),
            "code.mbpp" => Some(CodeFlavor::Mbpp),
            _ => None,
        }
    }
}

/// `pass@10` → 10.
pub fn metric_k(name: &str) -> Option<usize> {
    name.strip_prefix("pass@").and_then(|k| k.parse().ok()).filter(|&k| k > 0)
}

fn s<'a>(doc: &'a Json, k: &str) -> Result<&'a str> {
    doc.get(k)
        .and_then(Json::as_str)
        .ok_or_else(|| EvalError::Config(format!("code task document has no string `{k}`")))
}

pub fn program(flavor: CodeFlavor, doc: &Json, completion: &str) -> Result<String> {
    Ok(match flavor {
        CodeFlavor::HumanEval => {
            format!("{}{completion}\n{}\ncheck({})\n", s(doc, "prompt")?, s(doc, "test")?, s(doc, "entry_point")?)
        }
        CodeFlavor::Mbpp => {
            let tests: Vec<&str> = doc
                .get("test_list")
                .and_then(Json::as_array)
                .ok_or_else(|| EvalError::Config("MBPP document has no `test_list`".into()))?
                .iter()
                .filter_map(Json::as_str)
                .collect();
            let setup = doc.get("test_setup_code").and_then(Json::as_str).unwrap_or_default();
            format!("{completion}\n{setup}\n{}\n", tests.join("\n"))
        }
    })
}

/// Runs every program in its own sandbox, `cfg.parallel` at a time, in order.
pub fn run_all(programs: &[String], cfg: &SandboxConfig, progress: Progress) -> Result<Vec<Outcome>> {
    let slots: Vec<Mutex<Option<Result<Outcome>>>> = programs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..cfg.parallel.max(1).min(programs.len()) {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = programs.get(i) else { break };
                let r = sandbox::run_python(p, cfg);
                progress(1);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(EvalError::Sandbox("a program was never run".into())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn programs_are_assembled_like_human_eval() {
        let doc = json!({"prompt": "def f(x):\n", "test": "def check(c):\n    assert c(1) == 2\n", "entry_point": "f"});
        let p = program(CodeFlavor::HumanEval, &doc, "    return x + 1\n").unwrap();
        assert_eq!(p, "def f(x):\n    return x + 1\n\ndef check(c):\n    assert c(1) == 2\n\ncheck(f)\n");
        let m = json!({"test_list": ["assert g() == 1"], "test_setup_code": ""});
        assert!(program(CodeFlavor::Mbpp, &m, "def g(): return 1").unwrap().ends_with("assert g() == 1\n"));
        assert_eq!(metric_k("pass@10"), Some(10));
        assert_eq!(metric_k("pass@0"), None);
        assert_eq!(CodeFlavor::from_process_results("!function code.mbpp"), Some(CodeFlavor::Mbpp));
    }
}
