//! Multiple-choice metrics from per-choice loglikelihoods (lm-eval `ConfigurableTask.process_results`
//! for `multiple_choice`): `acc` takes the argmax of the summed logprobs, `acc_norm` divides each
//! by the choice's length in **characters** (Python `len(str)`, not bytes, not tokens),
//! `acc_bytes` by its UTF-8 bytes; `exact_match` is whether the gold continuation was greedy.
//! Choice strings exclude the target delimiter. Ties go to the first choice (`np.argmax`).

/// One choice's loglikelihood result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChoiceLl {
    pub logprob: f64,
    pub is_greedy: bool,
}

fn argmax(xs: impl Iterator<Item = f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, x) in xs.enumerate() {
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

/// The metrics of one document. `golds` holds one index, or several for `multiple_target` tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceScores {
    pub acc: f64,
    pub acc_norm: f64,
    pub acc_bytes: f64,
    pub exact_match: f64,
    pub brier_score: f64,
    pub pred: Option<usize>,
    pub pred_norm: Option<usize>,
}

pub fn score(choices: &[String], lls: &[ChoiceLl], golds: &[usize]) -> ChoiceScores {
    let hit = |p: Option<usize>| f64::from(p.is_some_and(|p| golds.contains(&p)));
    let pred = argmax(lls.iter().map(|l| l.logprob));
    let pred_norm = argmax(lls.iter().zip(choices).map(|(l, c)| l.logprob / c.chars().count() as f64));
    let pred_bytes = argmax(lls.iter().zip(choices).map(|(l, c)| l.logprob / c.len() as f64));
    let exact_match = f64::from(golds.first().is_some_and(|&g| lls.get(g).is_some_and(|l| l.is_greedy)));
    // Brier: Σ (softmax(ll) − onehot(gold))², with the max subtracted for stability.
    let max = lls.iter().map(|l| l.logprob).fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = lls.iter().map(|l| (l.logprob - max).exp()).sum();
    let brier_score = lls
        .iter()
        .enumerate()
        .map(|(i, l)| ((l.logprob - max).exp() / z - f64::from(golds.first() == Some(&i))).powi(2))
        .sum();
    ChoiceScores {
        acc: hit(pred),
        acc_norm: hit(pred_norm),
        acc_bytes: hit(pred_bytes),
        exact_match,
        brier_score,
        pred,
        pred_norm,
    }
}

/// TruthfulQA MC2 (lm-eval `truthfulqa/utils.py::process_results_mc2`): the normalised probability
/// mass on the true answers. `labels[i]` is 1 for a true answer; lm-eval's data lists the true
/// answers first, and the split point is the first 0 label.
pub fn truthfulqa_mc2(lls: &[f64], labels: &[i64]) -> f64 {
    let split = labels.iter().position(|&l| l == 0).unwrap_or(labels.len());
    let p: Vec<f64> = lls.iter().map(|l| l.exp()).collect();
    let total: f64 = p.iter().sum();
    if total == 0.0 {
        return 0.0;
    }
    p[..split.min(p.len())].iter().sum::<f64>() / total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lls(v: &[f64]) -> Vec<ChoiceLl> {
        v.iter().map(|&logprob| ChoiceLl { logprob, is_greedy: false }).collect()
    }

    #[test]
    fn acc_norm_divides_by_characters_not_bytes() {
        // "ééé" is 3 characters but 6 bytes. By characters: -3/3 = -1 vs -2.1/2 = -1.05 → 0.
        // By bytes: -3/6 = -0.5 vs -2.1/2 → 0 too; make bytes disagree with a longer ASCII choice.
        let choices = vec!["ééé".to_string(), "ab".to_string()];
        let s = score(&choices, &lls(&[-3.0, -2.1]), &[0]);
        assert_eq!(s.pred, Some(1), "raw logprob prefers the shorter choice");
        assert_eq!(s.pred_norm, Some(0));
        assert_eq!((s.acc, s.acc_norm), (0.0, 1.0));
        // -4/3 = -1.33 (chars) vs -2.6/2 = -1.3 → choice 1 by characters; -4/6 = -0.67 → 0 by bytes.
        let s = score(&choices, &lls(&[-4.0, -2.6]), &[0]);
        assert_eq!((s.acc_norm, s.acc_bytes), (0.0, 1.0));
    }

    #[test]
    fn ties_go_to_the_first_choice_and_multiple_golds_count() {
        let c = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(score(&c, &lls(&[-1.0, -1.0, -2.0]), &[0]).pred, Some(0));
        assert_eq!(score(&c, &lls(&[-3.0, -1.0, -2.0]), &[2, 1]).acc, 1.0);
    }

    #[test]
    fn exact_match_is_greedy_of_gold_and_brier_of_a_sure_answer_is_zero() {
        let c = vec!["a".to_string(), "b".to_string()];
        let l = vec![ChoiceLl { logprob: 0.0, is_greedy: true }, ChoiceLl { logprob: -1e9, is_greedy: false }];
        let s = score(&c, &l, &[0]);
        assert_eq!(s.exact_match, 1.0);
        assert!(s.brier_score < 1e-12);
    }

    #[test]
    fn mc2_is_the_true_answers_share_of_probability() {
        let (a, b, c) = (0.5f64, 0.3f64, 0.2f64);
        let got = truthfulqa_mc2(&[a.ln(), b.ln(), c.ln()], &[1, 1, 0]);
        assert!((got - 0.8).abs() < 1e-12);
    }
}
