//! lm-eval's output files (`lm_eval/result_schema.py`, `loggers/evaluation_tracker.py`):
//! `results_<date>.json` with `results` keyed `metric,filter` (+ `metric_stderr,filter`),
//! `configs`, `versions`, `n-shot`, `higher_is_better`, `n-samples`, `config`; and with
//! `--log-samples`, `samples_<task>_<date>.jsonl`. Groups (`mmlu`) get the size-weighted mean
//! of their subtasks with the pooled-variance stderr lm-eval uses.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};

use crate::runner::TaskOutcome;
use crate::{EvalError, Result};

/// `stderr` as lm-eval writes it: a number, or "N/A".
fn se_json(se: Option<f64>) -> Json {
    match se {
        Some(x) if x.is_finite() => json!(x),
        _ => json!("N/A"),
    }
}

/// lm-eval `pooled_sample_stderr` over (stderr, size) of subtasks.
fn pooled_stderr(parts: &[(f64, f64, usize)]) -> f64 {
    // parts: (mean, stderr, n)
    let n: usize = parts.iter().map(|p| p.2).sum();
    let mean: f64 = parts.iter().map(|p| p.0 * p.2 as f64).sum::<f64>() / n as f64;
    let mut var = 0.0;
    for &(m, se, k) in parts {
        let k = k as f64;
        let s2 = se * se * k; // variance of the subtask's items
        var += (k - 1.0) * s2 + k * (m - mean).powi(2);
    }
    (var / (n as f64 - 1.0) / n as f64).sqrt()
}

/// `groups`: group name → its subtasks' names.
pub fn results_json(outcomes: &[TaskOutcome], groups: &BTreeMap<String, Vec<String>>, config: Json) -> Json {
    let mut results = Map::new();
    let mut configs = Map::new();
    let mut versions = Map::new();
    let mut nshot = Map::new();
    let mut hib = Map::new();
    let mut nsamples = Map::new();
    let mut notes = Map::new();
    let mut timing = Map::new();
    for o in outcomes {
        let mut r = Map::new();
        r.insert("alias".into(), json!(o.name));
        let mut h = Map::new();
        for m in &o.metrics {
            r.insert(format!("{},{}", m.metric, m.filter), json!(m.value));
            r.insert(format!("{}_stderr,{}", m.metric, m.filter), se_json(m.stderr));
            h.insert(m.metric.clone(), json!(m.higher_is_better));
        }
        results.insert(o.name.clone(), Json::Object(r));
        configs.insert(o.name.clone(), o.config.clone());
        versions.insert(o.name.clone(), o.version.clone());
        nshot.insert(o.name.clone(), json!(o.num_fewshot));
        hib.insert(o.name.clone(), Json::Object(h));
        nsamples.insert(o.name.clone(), json!({"original": o.n_original, "effective": o.n_effective}));
        timing.insert(o.name.clone(), json!(o.seconds));
        if !o.notes.is_empty() {
            notes.insert(o.name.clone(), json!(o.notes));
        }
    }
    let mut group_json = Map::new();
    for (g, members) in groups {
        let subs: Vec<&TaskOutcome> = outcomes.iter().filter(|o| members.contains(&o.name)).collect();
        let Some(first) = subs.first() else { continue };
        let mut r = Map::new();
        r.insert("alias".into(), json!(g));
        for m in &first.metrics {
            let parts: Vec<(f64, f64, usize)> = subs
                .iter()
                .filter_map(|o| {
                    o.metrics
                        .iter()
                        .find(|x| x.metric == m.metric && x.filter == m.filter)
                        .map(|x| (x.value, x.stderr.unwrap_or(0.0), o.n_effective))
                })
                .collect();
            let n: usize = parts.iter().map(|p| p.2).sum();
            if n == 0 {
                continue;
            }
            let mean = parts.iter().map(|p| p.0 * p.2 as f64).sum::<f64>() / n as f64;
            r.insert(format!("{},{}", m.metric, m.filter), json!(mean));
            r.insert(format!("{}_stderr,{}", m.metric, m.filter), se_json(Some(pooled_stderr(&parts))));
        }
        group_json.insert(g.clone(), Json::Object(r));
    }
    json!({
        "results": results,
        "groups": group_json,
        "group_subtasks": groups,
        "configs": configs,
        "versions": versions,
        "n-shot": nshot,
        "higher_is_better": hib,
        "n-samples": nsamples,
        "config": config,
        "prom": {"notes": notes, "task_seconds": timing},
    })
}

/// A filesystem-safe timestamp like lm-eval's (`2026-11-29T11-05-00`).
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Writes `results_<ts>.json` (and `samples_<task>_<ts>.jsonl` per task when samples were
/// kept) under `dir`, or to the file `dir` when it ends in `.json`. Returns the results path.
pub fn write(out: &Path, results: &Json, outcomes: &[TaskOutcome]) -> Result<PathBuf> {
    let ts = timestamp();
    let (dir, file) = if out.extension().is_some_and(|e| e == "json") {
        (out.parent().map(Path::to_path_buf).unwrap_or_default(), out.to_path_buf())
    } else {
        (out.to_path_buf(), out.join(format!("results_{ts}.json")))
    };
    if !dir.as_os_str().is_empty() {
        std::fs::create_dir_all(&dir).map_err(EvalError::io("creating", &dir))?;
    }
    let text = serde_json::to_string_pretty(results).map_err(|e| EvalError::Config(e.to_string()))?;
    std::fs::write(&file, text).map_err(EvalError::io("writing", &file))?;
    for o in outcomes.iter().filter(|o| !o.samples.is_empty()) {
        let p = dir.join(format!("samples_{}_{ts}.jsonl", o.name));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p).map_err(EvalError::io("creating", &p))?);
        for s in &o.samples {
            serde_json::to_writer(&mut f, s).map_err(|e| EvalError::Config(e.to_string()))?;
            f.write_all(b"\n").map_err(EvalError::io("writing", &p))?;
        }
        f.flush().map_err(EvalError::io("writing", &p))?;
    }
    Ok(file)
}

/// lm-eval's markdown table.
pub fn table(results: &Json) -> String {
    let mut s = String::from("|Tasks|Version|Filter|n-shot|Metric|   |Value|   |Stderr|\n|-----|------:|------|-----:|------|---|----:|---|-----:|\n");
    let empty = Map::new();
    let res = results["results"].as_object().unwrap_or(&empty);
    for (task, r) in res.iter().chain(results["groups"].as_object().unwrap_or(&empty)) {
        let version = results["versions"].get(task).map(|v| v.to_string()).unwrap_or_default();
        let shot = results["n-shot"].get(task).map(|v| v.to_string()).unwrap_or_default();
        let mut first = true;
        for (k, v) in r.as_object().unwrap_or(&empty) {
            let Some((metric, filter)) = k.split_once(',') else { continue };
            if metric.ends_with("_stderr") {
                continue;
            }
            let se = r
                .get(format!("{metric}_stderr,{filter}"))
                .map_or("N/A".to_string(), |x| x.as_f64().map_or("N/A".into(), |x| format!("{x:.4}")));
            let up = results["higher_is_better"]
                .get(task)
                .and_then(|h| h.get(metric))
                .and_then(Json::as_bool)
                .map_or(" ", |b| if b { "↑" } else { "↓" });
            let (t, vv, sh) = if first { (task.as_str(), version.as_str(), shot.as_str()) } else { ("", "", "") };
            s.push_str(&format!(
                "|{t}|{vv}|{filter}|{sh}|{metric}|{up}|{:.4}|±|{se}|\n",
                v.as_f64().unwrap_or(f64::NAN)
            ));
            first = false;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_pooled_stderr() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
        // Two equal halves of 0/1 data pool to the stderr of the whole.
        let xs = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0];
        let (a, b) = xs.split_at(4);
        let part = |v: &[f64]| (crate::metrics::stderr::mean(v), crate::metrics::stderr::mean_stderr(v), v.len());
        let pooled = pooled_stderr(&[part(a), part(b)]);
        assert!((pooled - crate::metrics::stderr::mean_stderr(&xs)).abs() < 0.02, "{pooled}");
    }
}
