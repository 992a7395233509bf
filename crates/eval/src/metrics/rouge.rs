//! ROUGE-1/2/L/Lsum as google-research `rouge_score` computes them: lowercase, `[^a-z0-9]+` →
//! space, whitespace split (so non-ASCII text has no tokens); n-gram overlap with count
//! clipping; LCS for rougeL; union-LCS over newline-split sentences for rougeLsum.
//!
//! Out of scope: Porter stemming (`use_stemmer=True`); lm-eval's tasks that use ROUGE call it
//! without stemming.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeScore {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl RougeScore {
    fn new(hits: f64, pred: usize, target: usize) -> Self {
        let precision = hits / pred.max(1) as f64;
        let recall = hits / target.max(1) as f64;
        Self { precision, recall, fmeasure: fmeasure(precision, recall) }
    }
}

fn fmeasure(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// rouge_score's default tokenizer.
pub fn tokenize(text: &str) -> Vec<String> {
    static NON_ALNUM: OnceLock<Regex> = OnceLock::new();
    let re = NON_ALNUM.get_or_init(|| Regex::new(r"[^a-z0-9]+").expect("static regex"));
    re.replace_all(&text.to_lowercase(), " ").split_whitespace().map(str::to_string).collect()
}

fn ngram_counts(toks: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    for w in toks.windows(n) {
        *m.entry(w).or_insert(0) += 1;
    }
    m
}

/// ROUGE-N of `prediction` against `target` (argument order as `RougeScorer.score(target, prediction)`).
pub fn rouge_n(target: &str, prediction: &str, n: usize) -> RougeScore {
    let (t, p) = (tokenize(target), tokenize(prediction));
    let (tc, pc) = (ngram_counts(&t, n), ngram_counts(&p, n));
    let hits: usize = tc.iter().map(|(g, &c)| c.min(pc.get(g).copied().unwrap_or(0))).sum();
    RougeScore::new(hits as f64, pc.values().sum(), tc.values().sum())
}

fn lcs_table(a: &[String], b: &[String]) -> Vec<Vec<usize>> {
    let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i][j] = if a[i - 1] == b[j - 1] { t[i - 1][j - 1] + 1 } else { t[i - 1][j].max(t[i][j - 1]) };
        }
    }
    t
}

pub fn rouge_l(target: &str, prediction: &str) -> RougeScore {
    let (t, p) = (tokenize(target), tokenize(prediction));
    if t.is_empty() || p.is_empty() {
        return RougeScore::default();
    }
    let lcs = lcs_table(&t, &p)[t.len()][p.len()];
    RougeScore::new(lcs as f64, p.len(), t.len())
}

/// Indices into `r` of one LCS with `c` (rouge_score `_backtrack_norec`).
fn lcs_indices(r: &[String], c: &[String]) -> Vec<usize> {
    let t = lcs_table(r, c);
    let (mut i, mut j, mut out) = (r.len(), c.len(), Vec::new());
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i][j - 1] > t[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

/// Summary-level ROUGE-L: sentences are the `\n`-separated lines.
pub fn rouge_lsum(target: &str, prediction: &str) -> RougeScore {
    let sents = |s: &str| -> Vec<Vec<String>> { s.split('\n').map(tokenize).filter(|t| !t.is_empty()).collect() };
    let (refs, cands) = (sents(target), sents(prediction));
    let m: usize = refs.iter().map(Vec::len).sum();
    let n: usize = cands.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return RougeScore::default();
    }
    let mut cnt_r: HashMap<&String, usize> = HashMap::new();
    let mut cnt_c: HashMap<&String, usize> = HashMap::new();
    refs.iter().flatten().for_each(|t| *cnt_r.entry(t).or_insert(0) += 1);
    cands.iter().flatten().for_each(|t| *cnt_c.entry(t).or_insert(0) += 1);
    let mut hits = 0usize;
    for r in &refs {
        let mut union: Vec<usize> = cands.iter().flat_map(|c| lcs_indices(r, c)).collect();
        union.sort_unstable();
        union.dedup();
        for i in union {
            let tok = &r[i];
            let (Some(cc), Some(rc)) = (cnt_c.get(tok).copied(), cnt_r.get(tok).copied()) else { continue };
            if cc > 0 && rc > 0 {
                hits += 1;
                cnt_c.insert(tok, cc - 1);
                cnt_r.insert(tok, rc - 1);
            }
        }
    }
    RougeScore::new(hits as f64, n, m)
}

/// A ROUGE type by its rouge_score name (`rouge1`, `rouge2`, `rougeL`, `rougeLsum`).
pub fn rouge(kind: &str, target: &str, prediction: &str) -> Option<RougeScore> {
    match kind {
        "rougeL" => Some(rouge_l(target, prediction)),
        "rougeLsum" => Some(rouge_lsum(target, prediction)),
        k => k
            .strip_prefix("rouge")
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .map(|n| rouge_n(target, prediction, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(s: RougeScore, p: f64, r: f64, f: f64) {
        assert!(
            (s.precision - p).abs() < 1e-9 && (s.recall - r).abs() < 1e-9 && (s.fmeasure - f).abs() < 1e-9,
            "{s:?}"
        );
    }

    // Cases from rouge_score's `rouge_scorer_test.py`.
    #[test]
    fn rouge1_partial_and_identical() {
        close(rouge_n("testing one two", "testing", 1), 1.0, 1.0 / 3.0, 0.5);
        close(rouge_n("testing one two", "testing one two", 1), 1.0, 1.0, 1.0);
        close(rouge_n("testing one two", "", 1), 0.0, 0.0, 0.0);
    }

    #[test]
    fn rouge2_partial() {
        close(rouge_n("testing one two", "testing one", 2), 1.0, 0.5, 2.0 / 3.0);
    }

    #[test]
    fn rouge_l_consecutive_and_non_consecutive() {
        close(rouge_l("testing one two", "testing one"), 1.0, 2.0 / 3.0, 0.8);
        close(rouge_l("testing one two", "testing two"), 1.0, 2.0 / 3.0, 0.8);
    }

    #[test]
    fn rouge_lsum_union_lcs() {
        close(rouge_lsum("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5"), 0.4, 0.8, 0.8 / 1.5);
        // Without sentence breaks rougeLsum is rougeL.
        let (t, p) = ("the quick brown fox", "quick fox jumps");
        assert_eq!(rouge_lsum(t, p), rouge_l(t, p));
    }

    #[test]
    fn tokenizer_drops_non_ascii_and_punctuation() {
        assert_eq!(tokenize("Hello, World! naïve"), vec!["hello", "world", "na", "ve"]);
        assert!(tokenize("东京").is_empty());
        assert!(rouge("rouge3", "a b c", "a b c").is_some() && rouge("rougeX", "a", "a").is_none());
    }
}
