//! Sampler-level tests: the whole step, seeded. Filter, penalty and logprob details are tested
//! next to their code.

use std::collections::{HashMap, HashSet};

use super::*;

const EOS: u32 = 3;

fn sampler(p: SamplingParams, vocab: usize) -> Sampler {
    Sampler::new(&p, &[EOS], vocab, &[]).unwrap()
}

fn seeded(t: f32) -> SamplingParams {
    SamplingParams { temperature: t, seed: Some(7), ..SamplingParams::default() }
}

fn draws(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
    (0..n).map(|_| s.sample(logits, &[]).unwrap().token).collect()
}

fn softmax(logits: &[f32], t: f32) -> Vec<f64> {
    let e: Vec<f64> = logits.iter().map(|&x| (f64::from(x) / f64::from(t)).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

#[test]
fn greedy_is_argmax_with_the_lowest_id_on_ties_and_ignores_nan() {
    let mut s = sampler(SamplingParams::greedy(), 5);
    assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0, f32::NAN], &[]).unwrap().token, 1);
    assert_eq!(argmax(&[f32::NAN, -1.0, f32::NEG_INFINITY]), Some(1));
    assert_eq!(argmax(&[f32::NEG_INFINITY]), None);
}

#[test]
fn a_seed_reproduces_and_another_seed_differs() {
    let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
    let run = |seed| draws(&mut sampler(SamplingParams { seed: Some(seed), ..seeded(1.0) }, 50), &logits, 64);
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn a_seeded_stream_does_not_depend_on_other_sequences_in_the_batch() {
    let logits: Vec<f32> = (0..20).map(|i| (i % 5) as f32 * 0.5).collect();
    let alone = draws(&mut sampler(seeded(1.0), 20), &logits, 32);
    // Interleaved with an unseeded neighbour and with greedy steps of a third sequence.
    let (mut a, mut b, mut c) =
        (sampler(seeded(1.0), 20), sampler(SamplingParams::default(), 20), sampler(SamplingParams::greedy(), 20));
    let mut mixed = vec![];
    for _ in 0..32 {
        b.sample(&logits, &[]).unwrap();
        mixed.push(a.sample(&logits, &[]).unwrap().token);
        c.sample(&logits, &[]).unwrap();
    }
    assert_eq!(alone, mixed);
}

#[test]
fn children_get_distinct_reproducible_streams_and_child_zero_is_the_plain_seed() {
    let logits = vec![0.0f32; 1000];
    let child = |i| {
        let mut s = Sampler::new_for_child(&seeded(1.0), &[], 1000, &[], i).unwrap();
        draws(&mut s, &logits, 16)
    };
    assert_eq!(child(0), draws(&mut sampler(seeded(1.0), 1000), &logits, 16));
    assert_eq!(child(2), child(2));
    let streams: HashSet<Vec<u32>> = (0..8).map(child).collect();
    assert_eq!(streams.len(), 8);
    assert_ne!(child_seed(7, 1), child_seed(8, 0));
    assert_ne!(child_seed(7, 1), child_seed(7, 2));
}

#[test]
fn an_unseeded_sampler_reports_a_seed_that_replays_it() {
    let logits: Vec<f32> = (0..30).map(|i| (i % 7) as f32 * 0.4).collect();
    let mut s = sampler(SamplingParams::default(), 30);
    let first = draws(&mut s, &logits, 32);
    let replay =
        draws(&mut sampler(SamplingParams { seed: Some(s.seed()), ..SamplingParams::default() }, 30), &logits, 32);
    assert_eq!(first, replay);
}

#[test]
fn top_k_one_is_greedy_even_when_hot() {
    let logits = [0.5, 2.0, 1.9, -1.0];
    let mut s = sampler(SamplingParams { top_k: 1, ..seeded(5.0) }, 4);
    assert!(draws(&mut s, &logits, 200).iter().all(|&t| t == 1));
}

/// Tokens outside `want` never appear in 2000 draws; each token inside does.
fn support(p: SamplingParams, logits: &[f32]) -> HashSet<u32> {
    draws(&mut sampler(p, logits.len()), logits, 2000).into_iter().collect()
}

#[test]
fn top_p_and_min_p_keep_exactly_the_expected_set() {
    // p ∝ 8, 4, 2, 1, 1 (sum 16): 0.5, 0.25, 0.125, 0.0625, 0.0625.
    let l: Vec<f32> = [8f32, 4.0, 2.0, 1.0, 1.0].iter().map(|x| x.ln()).collect();
    let set = |v: &[u32]| v.iter().copied().collect::<HashSet<u32>>();
    assert_eq!(support(SamplingParams { top_p: 0.7, ..seeded(1.0) }, &l), set(&[0, 1]));
    assert_eq!(support(SamplingParams { top_p: 0.8, ..seeded(1.0) }, &l), set(&[0, 1, 2]));
    assert_eq!(support(SamplingParams { min_p: 0.2, ..seeded(1.0) }, &l), set(&[0, 1, 2]));
    assert_eq!(support(SamplingParams { min_p: 0.1, ..seeded(1.0) }, &l), set(&[0, 1, 2, 3, 4]));
    assert_eq!(support(SamplingParams { top_k: 2, ..seeded(1.0) }, &l), set(&[0, 1]));
    // HF order: top-p 0.9 keeps {0,1,2,3}; min-p 0.2 then drops 3.
    assert_eq!(support(SamplingParams { top_p: 0.9, min_p: 0.2, ..seeded(1.0) }, &l), set(&[0, 1, 2]));
}

#[test]
fn frequencies_match_the_softmax_at_temperature() {
    let logits = [1.0f32, 0.5, 0.0, -0.5, -3.0];
    for t in [0.7f32, 1.0, 1.8] {
        let n = 20_000;
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for tok in draws(&mut sampler(seeded(t), 5), &logits, n) {
            *counts.entry(tok).or_default() += 1;
        }
        for (i, p) in softmax(&logits, t).into_iter().enumerate() {
            let got = *counts.get(&(i as u32)).unwrap_or(&0) as f64 / n as f64;
            // ~4.5 standard deviations at p = 0.5.
            assert!((got - p).abs() < 0.016, "T={t} token {i}: {got} vs {p}");
        }
    }
}

#[test]
fn logit_bias_moves_the_argmax_and_is_checked_against_the_vocab() {
    let p = SamplingParams { logit_bias: vec![(2, 3.0)], ..SamplingParams::greedy() };
    assert_eq!(sampler(p.clone(), 4).sample(&[1.0, 2.0, 0.0, 0.0], &[]).unwrap().token, 2);
    let e = Sampler::new(&p, &[], 2, &[]).unwrap_err().to_string();
    assert!(e.contains("`logit_bias`") && e.contains("(2)") && e.contains("Given: 2"), "{e}");
    let p = SamplingParams { logit_bias: vec![(1, -100.0)], ..SamplingParams::greedy() };
    assert_eq!(sampler(p, 4).sample(&[1.0, 2.0, 0.0, 0.0], &[]).unwrap().token, 0);
}

#[test]
fn min_tokens_masks_eos_and_stop_ids_before_and_not_after() {
    // EOS (3) is the argmax, stop id 2 the runner-up, token 0 third.
    let logits = [1.0, 0.0, 2.0, 3.0];
    let p = SamplingParams { min_tokens: 2, stop_token_ids: vec![2], ..SamplingParams::greedy() };
    let mut s = sampler(p.clone(), 4);
    assert_eq!(s.sample(&logits, &[]).unwrap().token, 0);
    assert_eq!(s.sample(&logits, &[0]).unwrap().token, 0);
    assert_eq!(s.sample(&logits, &[0, 0]).unwrap().token, EOS);
    // With ignore_eos, EOS is an ordinary token and stays available; the stop id is still masked.
    let mut s = sampler(SamplingParams { ignore_eos: true, ..p }, 4);
    assert_eq!(s.sample(&[1.0, 0.0, 3.0, 2.0], &[]).unwrap().token, EOS);
}

#[test]
fn penalties_apply_to_prompt_and_generated_tokens_incrementally() {
    let logits = [2.0, 1.5, 1.2, -5.0];
    // Repetition 2 over the prompt: token 0 → 1.0, so token 1 wins.
    let p = SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() };
    let mut s = Sampler::new(&p, &[], 4, &[0]).unwrap();
    assert_eq!(s.sample(&logits, &[]).unwrap().token, 1);
    // Generated token 1 is now penalized too (0.75): token 2 (1.2) wins.
    assert_eq!(s.sample(&logits, &[1]).unwrap().token, 2);
    // Frequency 0.3 on generated tokens only: 0 generated twice → 1.4 < 1.5.
    let p = SamplingParams { frequency_penalty: 0.3, ..SamplingParams::greedy() };
    let mut s = Sampler::new(&p, &[], 4, &[1, 1, 1]).unwrap();
    assert_eq!(s.sample(&logits, &[0]).unwrap().token, 0);
    assert_eq!(s.sample(&logits, &[0, 0]).unwrap().token, 1);
    // Presence 0.6 once per seen token, whatever its count: 0 → 1.4 still beats 2 (1.2).
    let p = SamplingParams { presence_penalty: 0.6, ..SamplingParams::greedy() };
    let mut s = Sampler::new(&p, &[], 4, &[]).unwrap();
    assert_eq!(s.sample(&logits, &[0, 0, 0, 1]).unwrap().token, 0);
}

#[test]
fn logprobs_come_from_the_raw_logits_with_rank_and_top_n() {
    let logits = [1.0f32, 3.0, 2.0, 0.0];
    // Bias and temperature change what is sampled, not the reported logprob.
    let p = SamplingParams { logprobs: Some(2), logit_bias: vec![(3, 50.0)], ..seeded(0.5) };
    let out = sampler(p, 4).sample(&logits, &[]).unwrap();
    let lp = out.logprob.unwrap();
    let want: Vec<f64> = softmax(&logits, 1.0).iter().map(|p| p.ln()).collect();
    assert_eq!((out.token, lp.token, lp.rank), (3, 3, 4));
    assert!((f64::from(lp.logprob) - want[3]).abs() < 1e-5);
    assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
    assert!((f64::from(lp.top[0].1) - want[1]).abs() < 1e-5 && (f64::from(lp.top[1].1) - want[2]).abs() < 1e-5);
    assert!(sampler(seeded(0.5), 4).sample(&logits, &[]).unwrap().logprob.is_none());
    let zero = sampler(SamplingParams { logprobs: Some(0), ..SamplingParams::greedy() }, 4);
    let lp = { zero }.sample(&logits, &[]).unwrap().logprob.unwrap();
    assert_eq!((lp.token, lp.rank, lp.top.len()), (1, 1, 0));
}

#[test]
fn bad_rows_are_errors_not_panics() {
    let mut s = sampler(seeded(1.0), 4);
    let e = s.sample(&[0.0; 3], &[]).unwrap_err().to_string();
    assert!(e.contains("vocab_size (4)") && e.contains("Given: 3"), "{e}");
    assert!(s.sample(&[f32::NAN; 4], &[]).is_err());
    assert!(sampler(SamplingParams::greedy(), 4).sample(&[f32::NEG_INFINITY; 4], &[]).is_err());
    let e = Sampler::new(&SamplingParams { top_p: 2.0, ..seeded(1.0) }, &[], 4, &[]).unwrap_err().to_string();
    assert!(e.contains("`top_p`") && e.contains("Given: 2"), "{e}");
    // A vocabulary too large for the integer masses: random sampling refuses it, greedy does not.
    let huge = (1 << 19) + 1;
    let e = Sampler::new(&seeded(1.0), &[], huge, &[]).unwrap_err().to_string();
    assert!(e.contains("vocabularies up to 524288"), "{e}");
    assert!(Sampler::new(&SamplingParams::greedy(), &[], huge, &[]).is_ok());
}

#[test]
fn only_a_plain_argmax_step_may_be_chosen_off_the_host() {
    let plain = SamplingParams::greedy();
    assert!(sampler(plain.clone(), 5).is_plain_greedy(0));
    // top_k 1 is greedy too.
    assert!(sampler(SamplingParams { top_k: 1, ..seeded(1.0) }, 5).is_plain_greedy(0));
    for p in [
        seeded(1.0),
        SamplingParams { logprobs: Some(0), ..plain.clone() },
        SamplingParams { logit_bias: vec![(1, 5.0)], ..plain.clone() },
        SamplingParams { repetition_penalty: 1.2, ..plain.clone() },
        SamplingParams { presence_penalty: 0.5, ..plain.clone() },
    ] {
        assert!(!sampler(p.clone(), 5).is_plain_greedy(0), "{p:?}");
    }
    // The EOS mask of min_tokens applies only while fewer tokens were generated.
    let s = sampler(SamplingParams { min_tokens: 2, ..plain.clone() }, 5);
    assert!(!s.is_plain_greedy(1) && s.is_plain_greedy(2));
}

#[test]
fn a_device_argmax_gives_what_sample_gives() {
    let rows: [&[f32]; 3] =
        [&[0.1, 3.0, 3.0, -1.0, f32::NAN], &[f32::NEG_INFINITY, -2.0, -2.0, f32::INFINITY, -3.0], &[4.0; 5]];
    for row in rows {
        let mut s = sampler(SamplingParams::greedy(), 5);
        let device = s.picked(argmax(row)).unwrap();
        assert_eq!(device, s.sample(row, &[]).unwrap(), "{row:?}");
    }
    let s = sampler(SamplingParams::greedy(), 5);
    assert!(s.picked(None).unwrap_err().to_string().contains("no token can be sampled"));
    assert!(s.picked(Some(5)).unwrap_err().to_string().contains("outside the vocabulary"));
}

#[test]
fn a_device_pick_draws_what_sample_draws() {
    // The same seed, one sampler stepping on the host and one handing its steps to
    // `pick_rows` (here on the CPU, the definition the GPU repeats): the same tokens, because
    // `device_pick` consumes the step's random number exactly as `sample` does.
    let logits: Vec<f32> = (0..300).map(|i| ((i * 7919) % 301) as f32 * 0.02).collect();
    let row = candle_core::Tensor::from_slice(&logits, (1, 300), &candle_core::Device::Cpu).unwrap();
    for p in [seeded(1.0), SamplingParams { top_p: 0.8, top_k: 40, min_p: 0.01, ..seeded(0.7) }] {
        let (mut host, mut dev) = (sampler(p.clone(), 300), sampler(p.clone(), 300));
        for step in 0..32 {
            let pick = dev.device_pick(step).unwrap();
            assert!(matches!(pick, RowPick::Sample { .. }), "{pick:?}");
            let id = prom_models::cuda::pick_rows(&row, &[pick]).unwrap()[0];
            assert_eq!(dev.picked(id).unwrap(), host.sample(&logits, &[]).unwrap(), "{p:?} step {step}");
        }
    }
    // What needs more than the raw logits stays on the host, and draws nothing there.
    for p in [
        SamplingParams { logprobs: Some(1), ..seeded(1.0) },
        SamplingParams { logit_bias: vec![(1, 5.0)], ..seeded(1.0) },
        SamplingParams { frequency_penalty: 0.5, ..seeded(1.0) },
    ] {
        let (mut a, mut b) = (sampler(p.clone(), 300), sampler(p.clone(), 300));
        assert_eq!(a.device_pick(0), None, "{p:?}");
        assert_eq!(a.sample(&logits, &[]).unwrap(), b.sample(&logits, &[]).unwrap());
    }
    let mut s = sampler(SamplingParams { min_tokens: 2, ..seeded(1.0) }, 300);
    assert_eq!(s.device_pick(1), None);
    assert!(matches!(s.device_pick(2), Some(RowPick::Sample { .. })));
    assert_eq!(sampler(SamplingParams::greedy(), 300).device_pick(0), Some(RowPick::Argmax));
}
