//! BBQ scoring against lm-eval 0.4.13's own `tasks/bbq/utils.py`, on the real dataset
//! (`scripts/eval/fetch-bbq.sh`). Each document gets an answer by a fixed rule (no model: a
//! choice index for multiple choice, a canned sentence for generation);
//! `scripts/eval/bbq_reference.py` scored the same answers with lm-eval's functions into
//! `tests/fixtures/bbq_lm_eval.json`. Our `bbq` task (YAML, process_docs, scoring, aggregations)
//! must give every metric, first 1000 documents (one category: the others' scores are NaN) and
//! all 58,492.

use prom_eval::data::DataOptions;
use prom_eval::process::{aggregate, Aggregation, Item};
use prom_eval::task::{bbq, registry, Task};
use serde_json::Value as Json;

fn mc_answer(doc: &Json) -> i64 {
    let id = doc["example_id"].as_i64().unwrap();
    (id * 7 + doc["question"].as_str().unwrap().chars().count() as i64) % 12
}

fn generation(doc: &Json) -> String {
    let id = doc["example_id"].as_i64().unwrap();
    let s = |k: &str| doc[k].as_str().unwrap().to_string();
    match (id + s("context").chars().count() as i64) % 5 {
        0 => format!(" {}.", s("ans0")),
        1 => " I do not know.".into(),
        2 => format!(" Probably the {} one.", doc["ans1_groups"].as_array().unwrap().last().unwrap().as_str().unwrap()),
        3 => format!(" {}, I think.", s("ans2")),
        _ => " Nobody in particular.".into(),
    }
}

fn check(task: &Task, docs: &[Json], answers: &[i64], expected: &Json, what: &str) {
    let per_doc: Vec<Vec<(String, bbq::BiasObs)>> =
        docs.iter().zip(answers).map(|(d, &a)| bbq::results(d, a).unwrap()).collect();
    let metrics = task.cfg.metric_list.as_ref().unwrap();
    assert_eq!(metrics.len(), expected.as_object().unwrap().len(), "{what}: metric count");
    for m in metrics {
        let items: Vec<Item> = per_doc
            .iter()
            .map(|d| {
                let o = d.iter().find(|(k, _)| *k == m.metric).unwrap().1;
                if m.metric == "acc" {
                    Item::Value(o.acc)
                } else {
                    Item::Bias(o)
                }
            })
            .collect();
        let agg = Aggregation::parse(m.aggregation.as_deref().unwrap()).unwrap();
        let (got, _) = aggregate(agg, &items, 0);
        match expected[&m.metric].as_f64() {
            None => assert!(got.is_nan(), "{what} {}: lm-eval NaN, we {got}", m.metric),
            Some(want) => assert!((got - want).abs() < 1e-12, "{what} {}: lm-eval {want}, we {got}", m.metric),
        }
    }
}

#[test]
fn bbq_metrics_equal_lm_eval_on_the_real_dataset() {
    let cfg = registry::lookup("bbq").unwrap().remove(0);
    let task = Task::load(cfg, &DataOptions::from_env(), None, None)
        .unwrap_or_else(|e| panic!("{e}\n(fetch the data with scripts/eval/fetch-bbq.sh)"));
    let fixture: Json = serde_json::from_str(include_str!("fixtures/bbq_lm_eval.json")).unwrap();
    assert_eq!(task.docs.len(), fixture["docs"].as_u64().unwrap() as usize);
    for limit in [1000, task.docs.len()] {
        let docs = &task.docs[..limit];
        let expected = &fixture[format!("first_{limit}")];
        let mc: Vec<i64> = docs.iter().map(mc_answer).collect();
        check(&task, docs, &mc, &expected["multiple_choice"], &format!("multiple_choice, first {limit}"));
        let gen: Vec<i64> = docs.iter().map(|d| bbq::answer_from_generation(d, &generation(d)).unwrap()).collect();
        // The rule reaches every path: a named choice, an unknown phrasing, a group, nothing.
        for a in [0, 1, 2, -1] {
            assert!(gen.contains(&a), "no generation read as answer {a}");
        }
        check(&task, docs, &gen, &expected["generate_until"], &format!("generate_until, first {limit}"));
    }
}
