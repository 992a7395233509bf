//! Precision and recall per entity type on the labelled synthetic corpus
//! (tests/data/pii_corpus.jsonl, made by scripts/guard/gen_pii_corpus.py: ≥ 500 positives over
//! every entity type, ≥ 500 hard negatives). A prediction counts as a true positive when it has
//! the gold type and overlaps the gold span; each must be ≥ 0.95. Printed as the table in
//! docs/guard.md (`cargo test -p prom-guard --test pii_corpus -- --nocapture`).

use std::collections::BTreeMap;

use prom_guard::{Analyzer, Entity, Kind};

#[derive(Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

#[test]
fn precision_and_recall_per_entity_type() {
    let a = Analyzer::new();
    let mut per: BTreeMap<&'static str, Counts> = BTreeMap::new();
    let (mut positives, mut negatives) = (0, 0);
    let show = std::env::var("GUARD_SHOW").is_ok();
    for line in include_str!("data/pii_corpus.jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = v["text"].as_str().unwrap();
        let gold: Vec<(&str, usize, usize)> = v["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap(),
                    e["start"].as_u64().unwrap() as usize,
                    e["end"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        if gold.is_empty() {
            negatives += 1;
        } else {
            positives += gold.len();
        }
        let pred: Vec<(&'static str, usize, usize)> = a
            .analyze(text, None, 0.5)
            .into_iter()
            .map(|f| match f.kind {
                Kind::Pii(e) => (e.name(), f.start, f.end),
                _ => unreachable!(),
            })
            .collect();
        let hit = |t: &str, s: usize, e: usize, other: &[(&str, usize, usize)]| {
            other.iter().any(|&(t2, s2, e2)| t2 == t && s < e2 && s2 < e)
        };
        for &(t, s, e) in &pred {
            let c = per.entry(t).or_default();
            if hit(t, s, e, &gold) {
                c.tp += 1;
            } else {
                c.fp += 1;
                if show {
                    println!("FP {t} {:?} in {text:?}", &text[s..e]);
                }
            }
        }
        for &(t, s, e) in &gold {
            let name = Entity::parse(t).expect("corpus type").name();
            if !hit(t, s, e, &pred) {
                per.entry(name).or_default().fn_ += 1;
                if show {
                    println!("FN {t} {:?} in {text:?} got {pred:?}", &text[s..e]);
                }
            }
        }
    }
    assert!(positives >= 500 && negatives >= 500, "corpus too small: {positives} positives, {negatives} negatives");
    println!("{positives} positives, {negatives} hard negatives\n");
    println!("| entity | TP | FP | FN | precision | recall |\n|---|---:|---:|---:|---:|---:|");
    let mut bad = vec![];
    for e in Entity::ALL {
        let c = per.get(e.name()).unwrap_or(&Counts::default()).clone_counts();
        let p = c.tp as f64 / (c.tp + c.fp).max(1) as f64;
        let r = c.tp as f64 / (c.tp + c.fn_).max(1) as f64;
        println!("| {} | {} | {} | {} | {p:.3} | {r:.3} |", e.name(), c.tp, c.fp, c.fn_);
        if c.tp + c.fn_ == 0 || p < 0.95 || r < 0.95 {
            bad.push(format!("{} (precision {p:.3}, recall {r:.3}, {} gold)", e.name(), c.tp + c.fn_));
        }
    }
    assert!(bad.is_empty(), "below 0.95 or missing from the corpus: {bad:?}");
}

impl Counts {
    fn clone_counts(&self) -> Counts {
        Counts { tp: self.tp, fp: self.fp, fn_: self.fn_ }
    }
}
