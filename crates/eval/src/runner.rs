//! Runs tasks against a backend: every document becomes requests (lm-eval
//! `construct_requests`), all of a task's requests go to the backend in one call so the engine
//! batches them, then each document is scored and the scores aggregated.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::backend::{self, Backend, GenRequest};
use crate::code::{self, CodeFlavor};
use crate::filters::Filter;
use crate::metrics::choice::{self, ChoiceLl};
use crate::metrics::pass_at_k::pass_at_k;
use crate::metrics::perplexity::word_count;
use crate::metrics::text::ExactMatch;
use crate::process::{aggregate, higher_is_better, rouge_max, Aggregation, Item};
use crate::sandbox::SandboxConfig;
use crate::task::config::MetricConfig;
use crate::task::functions::ResultsFn;
use crate::task::{bbq, minerva, OutputType, Target, Task};
use crate::{EvalError, Result};

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Resamples for bootstrap stderrs (lm-eval's default is 100000; BLEU caps at 100).
    pub bootstrap_iters: usize,
    /// Overrides every task's `max_gen_toks`.
    pub max_gen_toks: Option<usize>,
    pub log_samples: bool,
    pub sandbox: SandboxConfig,
    /// Draw progress bars (on stderr, when it is a terminal).
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            bootstrap_iters: 100_000,
            max_gen_toks: None,
            log_samples: false,
            sandbox: SandboxConfig::default(),
            progress: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MetricResult {
    pub metric: String,
    pub filter: String,
    pub value: f64,
    pub stderr: Option<f64>,
    pub higher_is_better: bool,
    pub aggregation: Aggregation,
}

/// One task's results, ready for [`crate::results`].
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    pub name: String,
    pub metrics: Vec<MetricResult>,
    pub samples: Vec<Json>,
    pub n_original: usize,
    pub n_effective: usize,
    pub num_fewshot: usize,
    pub version: Json,
    pub config: Json,
    pub notes: Vec<String>,
    pub seconds: f64,
}

fn default_metrics(ot: OutputType) -> Vec<MetricConfig> {
    let names: &[&str] = match ot {
        OutputType::MultipleChoice => &["acc", "acc_norm"],
        OutputType::Loglikelihood => &["perplexity", "acc"],
        OutputType::LoglikelihoodRolling => &["word_perplexity", "byte_perplexity", "bits_per_byte"],
        OutputType::GenerateUntil => &["exact_match"],
    };
    names.iter().map(|n| MetricConfig { metric: n.to_string(), ..Default::default() }).collect()
}

fn hash(v: &impl serde::Serialize) -> String {
    let s = serde_json::to_string_pretty(v).unwrap_or_default();
    format!("{:x}", Sha256::digest(s.as_bytes()))
}

fn bar(opts: &EvalOptions, len: usize, task: &str, what: &str) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len as u64);
    let style =
        ProgressStyle::with_template("{prefix:>20} {msg:<16} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b.set_prefix(task.to_string());
    b.set_message(what.to_string());
    b
}

/// Per-document scores: metric name → item, in metric_list order.
type DocScores = Vec<(String, Item)>;

struct Collected {
    /// (filter name, per-document scores, per-document sample record)
    per_filter: Vec<(String, Vec<DocScores>, Vec<Json>)>,
}

pub fn evaluate_task(task: &Task, b: &dyn Backend, opts: &EvalOptions) -> Result<TaskOutcome> {
    let start = Instant::now();
    let ot = task.cfg.output_type();
    let metrics = task.cfg.metric_list.clone().unwrap_or_else(|| default_metrics(ot));
    let collected = match ot {
        OutputType::MultipleChoice => multiple_choice(task, b, opts, &metrics)?,
        OutputType::Loglikelihood => loglikelihood(task, b, opts)?,
        OutputType::LoglikelihoodRolling => rolling(task, b, opts)?,
        OutputType::GenerateUntil => generate(task, b, opts, &metrics)?,
    };
    let mut results = Vec::new();
    let mut samples = Vec::new();
    let mut notes = task.notes.clone();
    for (filter, scores, records) in collected.per_filter {
        for m in &metrics {
            let items: Vec<Item> =
                scores.iter().filter_map(|d| d.iter().find(|(k, _)| *k == m.metric).map(|(_, v)| v.clone())).collect();
            if items.is_empty() {
                let note = format!("metric `{}` is not computed for this task (not implemented here)", m.metric);
                if !notes.contains(&note) {
                    notes.push(note);
                }
                continue;
            }
            let agg = match &m.aggregation {
                Some(a) => Aggregation::parse(a).ok_or_else(|| {
                    EvalError::task(task.name(), format!("unknown aggregation `{a}` for `{}`", m.metric))
                })?,
                None => Aggregation::default_for(&m.metric),
            };
            let (value, stderr) = aggregate(agg, &items, opts.bootstrap_iters);
            results.push(MetricResult {
                metric: m.metric.clone(),
                filter: filter.clone(),
                value,
                stderr,
                higher_is_better: higher_is_better(m),
                aggregation: agg,
            });
        }
        if opts.log_samples {
            for (rec, sc) in records.into_iter().zip(&scores) {
                let mut rec = rec;
                rec["filter"] = json!(filter);
                rec["metrics"] = json!(sc.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
                for (k, v) in sc {
                    rec[k.as_str()] = v.to_json();
                }
                samples.push(rec);
            }
        }
    }
    if results.is_empty() {
        return Err(EvalError::task(task.name(), "no metric in `metric_list` applies to this task's output type"));
    }
    Ok(TaskOutcome {
        name: task.name().to_string(),
        metrics: results,
        samples,
        n_original: task.n_original,
        n_effective: task.docs.len(),
        num_fewshot: task.num_fewshot,
        version: task.cfg.version(),
        config: config_json(task),
        notes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn results_fn(task: &Task) -> Option<ResultsFn> {
    task.cfg.process_results.as_deref().and_then(|p| ResultsFn::lookup(task.name(), p))
}

/// BBQ's per-document metrics: `acc` is averaged; the rest feed BBQ's own aggregations.
fn bbq_scores(doc: &Json, answer: i64) -> Result<DocScores> {
    Ok(bbq::results(doc, answer)?
        .into_iter()
        .map(|(k, o)| {
            let item = if k == "acc" { Item::Value(o.acc) } else { Item::Bias(o) };
            (k, item)
        })
        .collect())
}

fn config_json(task: &Task) -> Json {
    let mut c = serde_json::to_value(&task.cfg).unwrap_or(Json::Null);
    if let Json::Object(m) = &mut c {
        m.insert("num_fewshot".into(), json!(task.num_fewshot));
        m.insert("evaluated_split".into(), json!(task.eval_split));
        m.insert("data_files".into(), json!(task.data_origin));
        m.insert("fewshot_sampler".into(), json!(task.sampler.kind()));
    }
    c
}

fn record(i: usize, doc: &Json, target: Json, arguments: Json, resps: Json, filtered: Json) -> Json {
    json!({
        "doc_id": i, "doc": doc, "target": target, "arguments": arguments, "resps": resps, "filtered_resps": filtered,
        "doc_hash": hash(doc), "prompt_hash": hash(&arguments), "target_hash": hash(&target),
    })
}

fn multiple_choice(task: &Task, b: &dyn Backend, opts: &EvalOptions, metrics: &[MetricConfig]) -> Result<Collected> {
    struct Doc {
        choices: Vec<String>,
        golds: Vec<usize>,
        target: Target,
        range: std::ops::Range<usize>,
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut docs = Vec::new();
    let delim = &task.cfg.target_delimiter;
    for (i, doc) in task.docs.iter().enumerate() {
        let choices = task
            .doc_to_choice(doc)?
            .ok_or_else(|| EvalError::task(task.name(), "multiple_choice needs `doc_to_choice`"))?;
        let ctxs = task.contexts(i)?;
        let target = task.doc_to_target(doc, true)?;
        let start = pairs.len();
        let golds = if task.is_multiple_input(doc)? {
            // Winogrande: one context per choice, the same continuation; the gold is doc_to_text.
            let cont = target.texts(None).into_iter().next().unwrap_or_default();
            pairs.extend(ctxs.iter().map(|c| (c.clone(), format!("{delim}{cont}"))));
            vec![task.doc_to_text(doc)?.as_u64().unwrap_or(0) as usize]
        } else {
            let ctx = ctxs.into_iter().next().unwrap_or_default();
            pairs.extend(choices.iter().map(|c| (ctx.clone(), format!("{delim}{c}"))));
            task.gold_indices(&target, &choices)?
        };
        docs.push(Doc { choices, golds, target, range: start..pairs.len() });
    }
    let pb = bar(opts, pairs.len(), task.name(), "loglikelihood");
    let lls = backend::loglikelihood(b, &pairs, &|n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    let results_fn = results_fn(task);
    let mut scores = Vec::new();
    let mut records = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let l: Vec<ChoiceLl> =
            lls[d.range.clone()].iter().map(|s| ChoiceLl { logprob: s.logprob, is_greedy: s.is_greedy }).collect();
        let mut sc: DocScores = Vec::new();
        if results_fn == Some(ResultsFn::BbqMultipleChoice) {
            let raw: Vec<f64> = l.iter().map(|x| x.logprob).collect();
            sc = bbq_scores(&task.docs[i], bbq::answer_from_loglikelihoods(&raw))?;
        } else if results_fn == Some(ResultsFn::TruthfulqaMc2) {
            let labels: Vec<i64> = task.docs[i]
                .pointer("/mc2_targets/labels")
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(Json::as_i64).collect())
                .ok_or_else(|| EvalError::task(task.name(), "mc2 needs `mc2_targets.labels`"))?;
            let raw: Vec<f64> = l.iter().map(|x| x.logprob).collect();
            sc.push(("acc".into(), Item::Value(choice::truthfulqa_mc2(&raw, &labels))));
        } else {
            let s = choice::score(&d.choices, &l, &d.golds);
            for m in metrics {
                let v = match m.metric.as_str() {
                    "acc" => s.acc,
                    "acc_norm" => s.acc_norm,
                    "acc_bytes" => s.acc_bytes,
                    "exact_match" => s.exact_match,
                    "brier_score" => s.brier_score,
                    other => {
                        return Err(EvalError::task(
                            task.name(),
                            format!("metric `{other}` is not defined for multiple_choice"),
                        ))
                    }
                };
                sc.push((m.metric.clone(), Item::Value(v)));
            }
        }
        let args: Vec<Json> = pairs[d.range.clone()].iter().map(|(c, x)| json!([c, x])).collect();
        let resps: Vec<Json> = l.iter().map(|x| json!([[x.logprob, x.is_greedy]])).collect();
        let filtered: Vec<Json> = l.iter().map(|x| json!([x.logprob, x.is_greedy])).collect();
        records.push(record(i, &task.docs[i], d.target.to_json(), json!(args), json!(resps), json!(filtered)));
        scores.push(sc);
    }
    Ok(Collected { per_filter: vec![("none".into(), scores, records)] })
}

fn loglikelihood(task: &Task, b: &dyn Backend, opts: &EvalOptions) -> Result<Collected> {
    let mut pairs = Vec::new();
    let mut targets = Vec::new();
    for (i, doc) in task.docs.iter().enumerate() {
        let ctx = task.contexts(i)?.into_iter().next().unwrap_or_default();
        let t = task.doc_to_target(doc, false)?;
        pairs.push((ctx, t.texts(None).into_iter().next().unwrap_or_default()));
        targets.push(t);
    }
    let pb = bar(opts, pairs.len(), task.name(), "loglikelihood");
    let lls = backend::loglikelihood(b, &pairs, &|n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    let mut scores = Vec::new();
    let mut records = Vec::new();
    for (i, (s, (c, x))) in lls.iter().zip(&pairs).enumerate() {
        scores.push(vec![
            ("perplexity".into(), Item::Value(s.logprob)),
            ("acc".into(), Item::Value(f64::from(s.is_greedy))),
        ]);
        records.push(record(
            i,
            &task.docs[i],
            targets[i].to_json(),
            json!([c, x]),
            json!([[s.logprob, s.is_greedy]]),
            json!([s.logprob, s.is_greedy]),
        ));
    }
    Ok(Collected { per_filter: vec![("none".into(), scores, records)] })
}

fn rolling(task: &Task, b: &dyn Backend, opts: &EvalOptions) -> Result<Collected> {
    let texts: Vec<String> = task
        .docs
        .iter()
        .map(|d| Ok(task.doc_to_target(d, false)?.texts(None).into_iter().next().unwrap_or_default()))
        .collect::<Result<_>>()?;
    let pb = bar(opts, texts.len(), task.name(), "rolling windows");
    let lls = backend::loglikelihood_rolling(b, &texts, &|_| {})?;
    pb.finish_and_clear();
    let mut scores = Vec::new();
    let mut records = Vec::new();
    for (i, (ll, t)) in lls.iter().zip(&texts).enumerate() {
        let (w, by) = (word_count(t) as f64, t.len() as f64);
        scores.push(vec![
            ("word_perplexity".into(), Item::Weighted(*ll, w)),
            ("byte_perplexity".into(), Item::Weighted(*ll, by)),
            ("bits_per_byte".into(), Item::Weighted(*ll, by)),
        ]);
        records.push(record(i, &task.docs[i], json!(t), json!([t]), json!([[ll]]), json!([ll])));
    }
    Ok(Collected { per_filter: vec![("none".into(), scores, records)] })
}

fn generate(task: &Task, b: &dyn Backend, opts: &EvalOptions, metrics: &[MetricConfig]) -> Result<Collected> {
    let g = task.cfg.generation_kwargs.clone().unwrap_or_default();
    let mut until = g.until();
    if g.until.is_none() {
        until.push(task.cfg.fewshot_delimiter.clone());
    }
    let sample = g.do_sample.unwrap_or(false);
    let temperature = if sample { g.temperature.unwrap_or(1.0) } else { 0.0 };
    let repeats = task.cfg.repeats.max(1);
    let max_gen_toks = opts.max_gen_toks.or(g.max_gen_toks).unwrap_or(256);
    let mut reqs = Vec::new();
    for i in 0..task.docs.len() {
        let context = task.contexts(i)?.into_iter().next().unwrap_or_default();
        for r in 0..repeats {
            let seed = if temperature > 0.0 { Some(g.seed.unwrap_or(1234) + (i * repeats + r) as u64) } else { g.seed };
            reqs.push(GenRequest {
                context: context.clone(),
                until: until.clone(),
                max_gen_toks,
                temperature,
                top_p: g.top_p.unwrap_or(1.0),
                seed,
            });
        }
    }
    let pb = bar(opts, reqs.len(), task.name(), "generate_until");
    let outs = b.generate(&reqs, &|n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    let resps: Vec<Vec<String>> = outs.chunks(repeats).map(<[String]>::to_vec).collect();
    let targets: Vec<Target> = task.docs.iter().map(|d| task.doc_to_target(d, false)).collect::<Result<_>>()?;
    if let Some(flavor) = task.cfg.process_results.as_deref().and_then(CodeFlavor::from_process_results) {
        return code_results(task, opts, metrics, flavor, &reqs, &resps, &targets, repeats);
    }
    let filters: Vec<Filter> = match &task.cfg.filter_list {
        Some(l) => l.iter().map(Filter::new).collect::<Result<_>>()?,
        None => vec![Filter::none()],
    };
    let ems: Vec<Option<ExactMatch>> = metrics
        .iter()
        .map(|m| {
            (m.metric == "exact_match")
                .then(|| ExactMatch::new(&m.regexes_to_ignore, m.ignore_case, m.ignore_punctuation, m.ignore_numbers))
                .transpose()
        })
        .collect::<Result<_>>()?;
    let results_fn = results_fn(task);
    let mut per_filter = Vec::new();
    for f in &filters {
        let mut scores = Vec::new();
        let mut records = Vec::new();
        for (i, r) in resps.iter().enumerate() {
            let filtered = f.apply(r);
            let pred = filtered.first().cloned().unwrap_or_default();
            let refs = targets[i].texts(None);
            let doc = &task.docs[i];
            let mut sc = match results_fn {
                Some(ResultsFn::BbqGenerateUntil) => bbq_scores(doc, bbq::answer_from_generation(doc, &pred)?)?,
                Some(ResultsFn::MinervaMath) => {
                    vec![("exact_match".to_string(), Item::Value(minerva::exact_match(doc, &pred)?))]
                }
                _ => DocScores::new(),
            };
            // A ported `process_results` gives the document's metrics itself.
            let generic = metrics.iter().zip(&ems).filter(|_| results_fn.is_none());
            for (m, em) in generic {
                let item = match (m.metric.as_str(), em) {
                    ("exact_match", Some(em)) => {
                        Item::Value(refs.iter().map(|t| em.score(&pred, t)).fold(0.0, f64::max))
                    }
                    ("bleu", _) => Item::Pair(refs.clone(), pred.clone()),
                    (k, _) if k.starts_with("rouge") => Item::Value(
                        rouge_max(k, &refs, &pred)
                            .ok_or_else(|| EvalError::task(task.name(), format!("unknown ROUGE type `{k}`")))?,
                    ),
                    (other, _) => {
                        return Err(EvalError::task(
                            task.name(),
                            format!("metric `{other}` is not defined for generate_until"),
                        ))
                    }
                };
                sc.push((m.metric.clone(), item));
            }
            let args = json!([[reqs[i * repeats].context, {"until": until, "max_gen_toks": max_gen_toks, "temperature": temperature}]]);
            records.push(record(i, &task.docs[i], targets[i].to_json(), args, json!([r]), json!(filtered)));
            scores.push(sc);
        }
        per_filter.push((f.name.clone(), scores, records));
    }
    Ok(Collected { per_filter })
}

#[allow(clippy::too_many_arguments)]
fn code_results(
    task: &Task,
    opts: &EvalOptions,
    metrics: &[MetricConfig],
    flavor: CodeFlavor,
    reqs: &[GenRequest],
    resps: &[Vec<String>],
    targets: &[Target],
    repeats: usize,
) -> Result<Collected> {
    for m in metrics {
        let k = code::metric_k(&m.metric).ok_or_else(|| {
            EvalError::task(task.name(), format!("code tasks report pass@k; `{}` is not one", m.metric))
        })?;
        if k > repeats {
            return Err(EvalError::task(
                task.name(),
                format!("`{}` needs at least {k} samples per problem; `repeats` is {repeats}", m.metric),
            ));
        }
    }
    let programs: Vec<String> = task
        .docs
        .iter()
        .zip(resps)
        .flat_map(|(doc, rs)| rs.iter().map(move |r| code::program(flavor, doc, r)))
        .collect::<Result<_>>()?;
    let pb = bar(opts, programs.len(), task.name(), "executing code");
    let outcomes = code::run_all(&programs, &opts.sandbox, &|n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    let mut scores = Vec::new();
    let mut records = Vec::new();
    for (i, chunk) in outcomes.chunks(repeats).enumerate() {
        let c = chunk.iter().filter(|o| o.passed()).count();
        let sc: DocScores = metrics
            .iter()
            .map(|m| {
                (
                    m.metric.clone(),
                    Item::Value(code::metric_k(&m.metric).and_then(|k| pass_at_k(repeats, c, k)).unwrap_or(f64::NAN)),
                )
            })
            .collect();
        let mut rec = record(
            i,
            &task.docs[i],
            targets[i].to_json(),
            json!([[reqs[i * repeats].context]]),
            json!([resps[i]]),
            json!(chunk.iter().map(|o| o.to_string()).collect::<Vec<_>>()),
        );
        rec["execution"] =
            Json::Object(Map::from_iter([("passed".to_string(), json!(c)), ("n".to_string(), json!(repeats))]));
        records.push(rec);
        scores.push(sc);
    }
    Ok(Collected { per_filter: vec![("create_test".into(), scores, records)] })
}
