//! sacreBLEU's BLEU (mjpost/sacrebleu 2.x `metrics/bleu.py`): the 13a tokenizer, clipped n-gram
//! counts against the best of several references, closest-reference brevity penalty, and the
//! four smoothing methods. Corpus BLEU defaults to exp smoothing without effective order;
//! sentence BLEU turns effective order on, as sacreBLEU does.
//!
//! Out of scope: the `intl`, `char`, `zh`, `ja-mecab` tokenizers (only `13a` and `none`).

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

use crate::{EvalError, Result};

/// The sacreBLEU release whose behaviour this follows; it goes into the signature.
pub const SACREBLEU_VERSION: &str = "2.5.1";
const MAX_ORDER: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smooth {
    None,
    /// `floor`: a zero-match precision becomes `value / total` (default 0.1).
    Floor(f64),
    /// `add-k`: `k` added to matches and totals of orders above 1 (default 1).
    AddK(f64),
    /// `exp` (default): the i-th zero-match order gets `1 / (2^i · total)`.
    Exp,
}

impl Smooth {
    pub fn parse(method: &str, value: Option<f64>) -> Result<Self> {
        Ok(match method {
            "none" => Smooth::None,
            "floor" => Smooth::Floor(value.unwrap_or(0.1)),
            "add-k" => Smooth::AddK(value.unwrap_or(1.0)),
            "exp" => Smooth::Exp,
            other => {
                return Err(EvalError::Config(format!(
                    "`smooth_method` must be one of none, floor, add-k, exp. Given: {other}"
                )))
            }
        })
    }
    fn name(self) -> &'static str {
        match self {
            Smooth::None => "none",
            Smooth::Floor(_) => "floor",
            Smooth::AddK(_) => "add-k",
            Smooth::Exp => "exp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BleuTokenizer {
    /// mteval-v13a, sacreBLEU's default.
    T13a,
    /// Split on whitespace only.
    None,
}

#[derive(Debug, Clone)]
pub struct BleuConfig {
    pub tokenizer: BleuTokenizer,
    pub smooth: Smooth,
    pub lowercase: bool,
    pub effective_order: bool,
}

impl Default for BleuConfig {
    fn default() -> Self {
        Self { tokenizer: BleuTokenizer::T13a, smooth: Smooth::Exp, lowercase: false, effective_order: false }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    pub score: f64,
    pub counts: [f64; MAX_ORDER],
    pub totals: [f64; MAX_ORDER],
    pub precisions: [f64; MAX_ORDER],
    pub bp: f64,
    pub sys_len: usize,
    pub ref_len: usize,
}

impl std::fmt::Display for BleuScore {
    /// sacreBLEU's verbose line: `48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 ...)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p: Vec<String> = self.precisions.iter().map(|p| format!("{p:.1}")).collect();
        let ratio = if self.ref_len > 0 { self.sys_len as f64 / self.ref_len as f64 } else { 0.0 };
        write!(
            f,
            "{:.2} {} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            self.score,
            p.join("/"),
            self.bp,
            ratio,
            self.sys_len,
            self.ref_len
        )
    }
}

/// mteval-v13a tokenization as sacreBLEU does it (`tokenizer_13a.py` + `tokenizer_re.py`).
pub fn tokenize_13a(line: &str) -> String {
    static RES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let res = RES.get_or_init(|| {
        [
            (r"([\{-\~\[-\` -\&\(-\+\:-\@\/])", " $1 "),
            (r"([^0-9])([\.,])", "$1 $2 "),
            (r"([\.,])([^0-9])", " $1 $2"),
            (r"([0-9])(-)", "$1 $2 "),
        ]
        .into_iter()
        .map(|(re, rep)| (Regex::new(re).expect("static 13a regex"), rep))
        .collect()
    });
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (re, rep) in res {
        line = re.replace_all(&line, *rep).into_owned();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn tokenize(cfg: &BleuConfig, s: &str) -> Vec<String> {
    let s = s.trim_end();
    let s = if cfg.lowercase { s.to_lowercase() } else { s.to_string() };
    let t = match cfg.tokenizer {
        BleuTokenizer::T13a => tokenize_13a(&s),
        BleuTokenizer::None => s,
    };
    t.split_whitespace().map(str::to_string).collect()
}

fn ngrams(toks: &[String]) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in toks.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// Closest reference length; ties go to the shorter reference.
fn closest_ref_len(hyp_len: usize, refs: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for &r in refs {
        let d = hyp_len.abs_diff(r);
        best = match best {
            None => Some((d, r)),
            Some((bd, br)) if d < bd || (d == bd && r < br) => Some((d, r)),
            b => b,
        };
    }
    best.map_or(0, |(_, r)| r)
}

/// Corpus BLEU. `refs[k][i]` is the k-th reference stream's reference for hypothesis `i`
/// (sacreBLEU's layout); every stream must be as long as `hyps`.
pub fn corpus_bleu(hyps: &[String], refs: &[Vec<String>], cfg: &BleuConfig) -> Result<BleuScore> {
    if let Some(bad) = refs.iter().find(|r| r.len() != hyps.len()) {
        return Err(EvalError::Config(format!(
            "every reference stream must have one line per hypothesis ({}). Given: {}",
            hyps.len(),
            bad.len()
        )));
    }
    let (mut correct, mut total) = ([0f64; MAX_ORDER], [0f64; MAX_ORDER]);
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (i, hyp) in hyps.iter().enumerate() {
        let h = tokenize(cfg, hyp);
        let rs: Vec<Vec<String>> = refs.iter().map(|s| tokenize(cfg, &s[i])).collect();
        let mut max_ref: HashMap<&[String], usize> = HashMap::new();
        for r in &rs {
            for (g, c) in ngrams(r) {
                let e = max_ref.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        for (g, c) in ngrams(&h) {
            correct[g.len() - 1] += c.min(max_ref.get(g).copied().unwrap_or(0)) as f64;
        }
        for n in 1..=MAX_ORDER {
            total[n - 1] += h.len().saturating_sub(n - 1) as f64;
        }
        sys_len += h.len();
        ref_len += closest_ref_len(h.len(), &rs.iter().map(Vec::len).collect::<Vec<_>>());
    }
    Ok(compute_bleu(correct, total, sys_len, ref_len, cfg.smooth, cfg.effective_order))
}

/// Sentence BLEU: one hypothesis against its references, with effective order (sacreBLEU).
pub fn sentence_bleu(hyp: &str, refs: &[&str], smooth: Smooth, tokenizer: BleuTokenizer) -> BleuScore {
    let cfg = BleuConfig { tokenizer, smooth, lowercase: false, effective_order: true };
    let streams: Vec<Vec<String>> = refs.iter().map(|r| vec![r.to_string()]).collect();
    // One line per stream by construction, so the length check cannot fail.
    corpus_bleu(&[hyp.to_string()], &streams, &cfg)
        .unwrap_or_else(|_| compute_bleu([0.0; 4], [0.0; 4], 0, 0, smooth, true))
}

/// BLEU from sufficient statistics (sacreBLEU `BLEU.compute_bleu`).
pub fn compute_bleu(
    mut correct: [f64; MAX_ORDER],
    mut total: [f64; MAX_ORDER],
    sys_len: usize,
    ref_len: usize,
    smooth: Smooth,
    effective_order: bool,
) -> BleuScore {
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0f64; MAX_ORDER];
    let done = |score, correct, total, precisions| BleuScore {
        score,
        counts: correct,
        totals: total,
        precisions,
        bp,
        sys_len,
        ref_len,
    };
    // No match at all: 0 whatever the smoothing (sacreBLEU #141).
    if correct.iter().all(|&c| c == 0.0) {
        return done(0.0, correct, total, precisions);
    }
    let (mut smooth_mteval, mut eff_order) = (1.0f64, MAX_ORDER);
    for n in 1..=MAX_ORDER {
        if let Smooth::AddK(k) = smooth {
            if n > 1 {
                correct[n - 1] += k;
                total[n - 1] += k;
            }
        }
        if total[n - 1] == 0.0 {
            break;
        }
        if effective_order {
            eff_order = n;
        }
        precisions[n - 1] = if correct[n - 1] == 0.0 {
            match smooth {
                Smooth::Exp => {
                    smooth_mteval *= 2.0;
                    100.0 / (smooth_mteval * total[n - 1])
                }
                Smooth::Floor(v) => 100.0 * v / total[n - 1],
                _ => 0.0,
            }
        } else {
            100.0 * correct[n - 1] / total[n - 1]
        };
    }
    let my_log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    let score = bp * (precisions[..eff_order].iter().map(|&p| my_log(p)).sum::<f64>() / eff_order as f64).exp();
    done(score, correct, total, precisions)
}

/// sacreBLEU's signature, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1`.
pub fn signature(cfg: &BleuConfig, nrefs: usize) -> String {
    let tok = match cfg.tokenizer {
        BleuTokenizer::T13a => "13a",
        BleuTokenizer::None => "none",
    };
    let mut s = format!(
        "nrefs:{nrefs}|case:{}|eff:{}|tok:{tok}|smooth:{}",
        if cfg.lowercase { "lc" } else { "mixed" },
        if cfg.effective_order { "yes" } else { "no" },
        cfg.smooth.name()
    );
    match cfg.smooth {
        Smooth::Floor(v) | Smooth::AddK(v) => s.push_str(&format!("[{v:.2}]")),
        _ => {}
    }
    s.push_str(&format!("|version:{SACREBLEU_VERSION}"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// sacreBLEU README / `test/test_bleu.py`: two reference streams.
    #[test]
    fn readme_corpus_example_is_48_530827() {
        let hyps = s(&["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]);
        let refs = vec![
            s(&["The dog bit the man.", "It was not unexpected.", "The man bit him first."]),
            s(&["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]),
        ];
        let cfg = BleuConfig::default();
        let b = corpus_bleu(&hyps, &refs, &cfg).unwrap();
        assert!((b.score - 48.530827).abs() < 1e-6, "{b}");
        assert_eq!(b.counts, [14.0, 7.0, 5.0, 3.0]);
        assert_eq!(b.totals, [17.0, 14.0, 11.0, 8.0]);
        assert_eq!((b.sys_len, b.ref_len), (17, 18));
        assert_eq!(b.to_string(), "48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
        assert_eq!(signature(&cfg, 2), "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1");
        let none = BleuConfig { tokenizer: BleuTokenizer::None, ..BleuConfig::default() };
        assert!((corpus_bleu(&hyps, &refs, &none).unwrap().score - 49.1919566).abs() < 1e-6);
    }

    /// sacreBLEU `test/test_sentence_bleu.py` (the #98 Romanian pair and the #141 zero case).
    #[test]
    fn sentence_level_cases() {
        let r = "producţia de zahăr brut se exprimă în zahăr alb;";
        let h = "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;";
        let t = BleuTokenizer::T13a;
        for (smooth, want) in [
            (Smooth::Exp, 8.493),
            (Smooth::None, 0.0),
            (Smooth::Floor(0.1), 4.51688),
            (Smooth::Floor(0.5), 10.10),
            (Smooth::AddK(1.0), 14.882),
            (Smooth::AddK(2.0), 21.389),
        ] {
            let got = sentence_bleu(h, &[r], smooth, t).score;
            assert!((got - want).abs() < 1e-3, "{smooth:?}: {got} vs {want}");
        }
        assert!((sentence_bleu(h, &[r], Smooth::Exp, BleuTokenizer::None).score - 7.347).abs() < 1e-3);
        for smooth in [Smooth::Exp, Smooth::None, Smooth::Floor(0.1), Smooth::AddK(1.0)] {
            assert_eq!(sentence_bleu("this is a cat", &["okay thanks"], smooth, t).score, 0.0);
        }
    }

    #[test]
    fn compute_bleu_from_statistics() {
        let b = compute_bleu([9.0, 7.0, 5.0, 3.0], [10.0, 8.0, 6.0, 4.0], 11, 11, Smooth::None, false);
        assert!((b.score / 100.0 - 0.8375922397).abs() < 1e-9, "{}", b.score);
    }

    #[test]
    fn tokenizer_13a_splits_punctuation_but_not_numbers() {
        assert_eq!(tokenize_13a("Hello, world! It costs $3.50-ish."), "Hello , world ! It costs $ 3.50 - ish .");
        assert_eq!(tokenize_13a("a &amp; b"), "a & b");
    }

    #[test]
    fn mismatched_streams_are_an_error() {
        let e = corpus_bleu(&s(&["a", "b"]), &[s(&["a"])], &BleuConfig::default()).unwrap_err();
        assert!(e.to_string().contains("Given: 1"), "{e}");
    }
}
