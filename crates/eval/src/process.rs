//! Per-document scoring (lm-eval `process_results`) and corpus aggregation
//! (`metric_list[].aggregation`), with the stderr lm-eval attaches to each aggregation.

use serde_json::{json, Value as Json};

use crate::metrics::{bleu, perplexity, rouge, stderr};
use crate::task::bbq::{self, BiasObs};
use crate::task::config::MetricConfig;

/// What one document contributes to one metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Value(f64),
    /// `(loglikelihood, weight)` for weighted perplexities.
    Weighted(f64, f64),
    /// `(references, prediction)` for corpus BLEU.
    Pair(Vec<String>, String),
    /// BBQ's `(acc, n_biased_ans, n_non_unk, mask_disambiguated)`.
    Bias(BiasObs),
}

impl Item {
    pub fn to_json(&self) -> Json {
        match self {
            Item::Value(v) => json!(v),
            Item::Weighted(a, b) => json!([a, b]),
            Item::Pair(r, p) => json!([r, p]),
            Item::Bias(o) => json!([o.acc, o.n_biased, o.n_non_unknown, o.disambiguated]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Mean,
    WeightedPerplexity,
    BitsPerByte,
    Perplexity,
    Bleu,
    /// BBQ (`!function utils.agg_*`): accuracy on ambiguous / disambiguated contexts, bias scores.
    BbqAccuracyAmb,
    BbqAccuracyDisamb,
    BbqAmbBias,
    BbqDisambBias,
}

impl Aggregation {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "mean" => Aggregation::Mean,
            "weighted_perplexity" => Aggregation::WeightedPerplexity,
            "bits_per_byte" => Aggregation::BitsPerByte,
            "perplexity" => Aggregation::Perplexity,
            "bleu" => Aggregation::Bleu,
            f if f.starts_with("!function") => match f.rsplit(['.', ' ']).next()? {
                "agg_accuracy_amb" => Aggregation::BbqAccuracyAmb,
                "agg_accuracy_disamb" => Aggregation::BbqAccuracyDisamb,
                "agg_amb_bias_scores" => Aggregation::BbqAmbBias,
                "agg_disamb_bias_scores" => Aggregation::BbqDisambBias,
                _ => return None,
            },
            _ => return None,
        })
    }

    /// lm-eval's default aggregation for a metric name.
    pub fn default_for(metric: &str) -> Self {
        match metric {
            "word_perplexity" | "byte_perplexity" => Aggregation::WeightedPerplexity,
            "bits_per_byte" => Aggregation::BitsPerByte,
            "perplexity" => Aggregation::Perplexity,
            "bleu" => Aggregation::Bleu,
            _ => Aggregation::Mean,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Mean => "mean",
            Aggregation::WeightedPerplexity => "weighted_perplexity",
            Aggregation::BitsPerByte => "bits_per_byte",
            Aggregation::Perplexity => "perplexity",
            Aggregation::Bleu => "bleu",
            Aggregation::BbqAccuracyAmb => "agg_accuracy_amb",
            Aggregation::BbqAccuracyDisamb => "agg_accuracy_disamb",
            Aggregation::BbqAmbBias => "agg_amb_bias_scores",
            Aggregation::BbqDisambBias => "agg_disamb_bias_scores",
        }
    }
}

pub fn higher_is_better(m: &MetricConfig) -> bool {
    m.higher_is_better.unwrap_or(!matches!(
        m.metric.as_str(),
        "word_perplexity" | "byte_perplexity" | "bits_per_byte" | "perplexity" | "brier_score"
    ))
}

fn values(items: &[Item]) -> Vec<f64> {
    items.iter().filter_map(|i| if let Item::Value(v) = i { Some(*v) } else { None }).collect()
}

fn weighted(items: &[Item]) -> Vec<(f64, f64)> {
    items.iter().filter_map(|i| if let Item::Weighted(a, b) = i { Some((*a, *b)) } else { None }).collect()
}

fn corpus_bleu(items: &[Item]) -> f64 {
    let pairs: Vec<(&Vec<String>, &String)> =
        items.iter().filter_map(|i| if let Item::Pair(r, p) = i { Some((r, p)) } else { None }).collect();
    let hyps: Vec<String> = pairs.iter().map(|(_, p)| (*p).clone()).collect();
    let nrefs = pairs.iter().map(|(r, _)| r.len()).max().unwrap_or(0);
    // sacreBLEU streams: the k-th reference of each line, "" where a line has fewer (lm-eval pads the same way).
    let refs: Vec<Vec<String>> =
        (0..nrefs).map(|k| pairs.iter().map(|(r, _)| r.get(k).cloned().unwrap_or_default()).collect()).collect();
    bleu::corpus_bleu(&hyps, &refs, &bleu::BleuConfig::default()).map_or(f64::NAN, |b| b.score)
}

fn bias(items: &[Item]) -> Vec<BiasObs> {
    items.iter().filter_map(|i| if let Item::Bias(o) = i { Some(*o) } else { None }).collect()
}

/// The aggregate and its stderr (`None` where lm-eval reports "N/A": it bootstraps only the
/// aggregations it knows, never a task's own functions such as BBQ's).
pub fn aggregate(agg: Aggregation, items: &[Item], bootstrap_iters: usize) -> (f64, Option<f64>) {
    match agg {
        Aggregation::Mean => {
            let v = values(items);
            (stderr::mean(&v), Some(stderr::mean_stderr(&v)))
        }
        Aggregation::WeightedPerplexity => (perplexity::weighted_perplexity(&weighted(items)), None),
        Aggregation::BitsPerByte => (perplexity::bits_per_byte(&weighted(items)), None),
        Aggregation::Perplexity => {
            let f = |v: &[f64]| (-stderr::mean(v)).exp();
            let v = values(items);
            let se = (bootstrap_iters > 0).then(|| stderr::bootstrap_stderr(&v, f, bootstrap_iters, 0));
            (f(&v), se)
        }
        Aggregation::Bleu => {
            // lm-eval caps BLEU's bootstrap at 100 resamples (each is a corpus BLEU).
            let se = (bootstrap_iters > 0)
                .then(|| stderr::bootstrap_stderr(items, corpus_bleu, bootstrap_iters.min(100), 0));
            (corpus_bleu(items), se)
        }
        Aggregation::BbqAccuracyAmb => (bbq::accuracy(&bias(items), false), None),
        Aggregation::BbqAccuracyDisamb => (bbq::accuracy(&bias(items), true), None),
        Aggregation::BbqAmbBias => (bbq::amb_bias(&bias(items)), None),
        Aggregation::BbqDisambBias => (bbq::disamb_bias(&bias(items)), None),
    }
}

/// ROUGE F-measure of the best reference, lm-eval style (`rouge1`, `rouge2`, `rougeL`, `rougeLsum`).
pub fn rouge_max(kind: &str, refs: &[String], pred: &str) -> Option<f64> {
    refs.iter().map(|r| rouge::rouge(kind, r, pred).map(|s| s.fmeasure)).try_fold(0.0f64, |m, x| x.map(|x| m.max(x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregations() {
        let items = vec![Item::Value(1.0), Item::Value(0.0), Item::Value(1.0), Item::Value(1.0)];
        let (m, se) = aggregate(Aggregation::Mean, &items, 0);
        assert_eq!(m, 0.75);
        assert!((se.unwrap() - 0.25).abs() < 1e-12);
        let w = vec![Item::Weighted(-100.0, 10.0)];
        assert!((aggregate(Aggregation::WeightedPerplexity, &w, 0).0 - 22026.465794806718).abs() < 1e-6);
        let pairs = vec![Item::Pair(vec!["the cat sat on the mat".into()], "the cat sat on the mat".into())];
        assert!((aggregate(Aggregation::Bleu, &pairs, 0).0 - 100.0).abs() < 1e-9);
        assert_eq!(rouge_max("rouge1", &["a b".into(), "a c d".into()], "a b"), Some(1.0));
        let agg = Aggregation::parse("!function bbq/utils.agg_amb_bias_scores").unwrap();
        assert_eq!((agg, agg.name()), (Aggregation::BbqAmbBias, "agg_amb_bias_scores"));
        assert_eq!(Aggregation::parse("!function utils.agg_accuracy_disamb"), Some(Aggregation::BbqAccuracyDisamb));
        assert_eq!(Aggregation::parse("!function utils.agg_other"), None);
    }
}
