//! The engine's request API against the real SmolLM2 model: aborts free everything, `n > 1` and
//! seeds are reproducible whatever else runs, stop strings and stop ids end generation where
//! they should, logprobs and prompt logprobs equal log_softmax of the plain model's logits,
//! bad requests are refused with messages naming the value, and streams work from async code.

mod common;

use std::time::Duration;

use candle_core::DType;
use common::{
    collect, collect_all, config, encode, engine, model, pool_of, reference_log_softmax, tokenizer, wait_for,
    wait_idle, Output, DEADLINE,
};
use prom_engine::{Engine, EngineConfig, Event, FinishReason, Request, RequestStream, SamplingParams, TokenLogprob};

const PROMPT: &str = "The lighthouse keeper climbed the stairs every evening to light the lamp, and";
/// Logprob agreement with the plain model: both are f32 logits of the same kernels.
const LOGPROB_TOL: f64 = 1e-4;

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams { max_tokens, ignore_eos: true, ..SamplingParams::greedy() }
}

fn run(e: &Engine, prompt: &[u32], params: SamplingParams) -> Output {
    collect(e.submit(Request::new(prompt.to_vec(), params)).expect("submit"))
}

/// The next delta's token ids, failing on anything else.
fn next_delta(s: &mut RequestStream) -> Vec<u32> {
    match s.blocking_next() {
        Some(Event::Delta(d)) => d.token_ids,
        other => panic!("expected a delta, got {other:?}"),
    }
}

// ---- aborts ----

#[test]
fn dropping_a_stream_aborts_its_request_and_frees_its_blocks() {
    let e = engine(DType::F32, config());
    let mut s = e.submit(Request::new(encode(PROMPT), greedy(1000))).expect("submit");
    next_delta(&mut s);
    next_delta(&mut s);
    let busy = e.stats();
    assert!(busy.running == 1 && busy.kv_usage > 0.0, "{busy:?}");
    drop(s);
    wait_idle(&e);
    // Nothing is computed for it any more.
    let steps = e.stats().steps;
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(e.stats().steps, steps);
}

#[test]
fn engine_abort_ends_the_stream_and_frees_its_blocks() {
    let e = engine(DType::F32, config());
    let mut s = e.submit(Request::new(encode(PROMPT), greedy(1000))).expect("submit");
    next_delta(&mut s);
    e.abort(s.id());
    // Deltas already in flight may still arrive; then the stream ends without finishing.
    let out = collect(s);
    assert!(out.usage.is_none(), "an aborted request finished: {out:?}");
    assert!(out.tokens.first().map_or(0, Vec::len) < 100, "generation went on after the abort");
    wait_idle(&e);
}

/// `Engine::abort` documents that the stream "ends with nothing more", but the engine just drops
/// the request's sender and `RequestStream` reports a closed channel as
/// `Error("the engine stopped before the request finished")`.
#[test]
fn engine_abort_ends_the_stream_with_nothing_more() {
    let e = engine(DType::F32, config());
    let mut s = e.submit(Request::new(encode(PROMPT), greedy(1000))).expect("submit");
    next_delta(&mut s);
    e.abort(s.id());
    let out = collect(s);
    assert!(out.error.is_none(), "{:?}", out.error);
}

#[test]
fn dropping_a_waiting_request_removes_it_from_the_queue() {
    let e = engine(DType::F32, EngineConfig { max_num_seqs: 1, ..config() });
    let mut first = e.submit(Request::new(encode(PROMPT), greedy(1000))).expect("submit");
    next_delta(&mut first);
    let second = e.submit(Request::new(encode("Another story"), greedy(8))).expect("submit");
    wait_for(&e, Duration::from_secs(10), |s| s.running == 1 && s.waiting == 1);
    drop(second);
    wait_for(&e, Duration::from_secs(10), |s| s.running == 1 && s.waiting == 0);
    drop(first);
    wait_idle(&e);
}

// ---- n > 1 and seeds ----

fn sampled(n: usize, seed: Option<u64>) -> SamplingParams {
    SamplingParams { n, seed, temperature: 0.9, top_p: 0.95, max_tokens: 12, ignore_eos: true, ..Default::default() }
}

#[test]
fn n_sequences_are_reproducible_from_the_seed() {
    let e = engine(DType::F32, config());
    let prompt = encode(PROMPT);
    let three = run(&e, &prompt, sampled(3, Some(7)));
    assert!(three.error.is_none(), "{:?}", three.error);
    assert_eq!(three.tokens.len(), 3, "deltas for indexes 0..3");
    assert_eq!(three.finish, [Some(FinishReason::Length); 3]);
    assert!(three.tokens.iter().all(|t| t.len() == 12));
    let usage = three.usage.expect("finished");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (prompt.len(), 36));
    assert!(three.tokens[0] != three.tokens[1] || three.tokens[1] != three.tokens[2], "the children share one RNG");

    let again = run(&e, &prompt, sampled(3, Some(7)));
    assert_eq!(three.tokens, again.tokens, "same seed, same samples");
    assert_eq!(three.text, again.text);
    let one = run(&e, &prompt, sampled(1, Some(7)));
    assert_eq!(one.ok(), three.tokens[0].as_slice(), "child 0 of n=3 is the n=1 request");
    let other = run(&e, &prompt, sampled(1, Some(8)));
    assert_ne!(one.ok(), other.ok(), "the seed is used");
}

#[test]
fn a_seeded_request_ignores_what_else_is_in_the_batch() {
    let e = engine(DType::F32, config());
    let prompt = encode(PROMPT);
    let alone = run(&e, &prompt, sampled(1, Some(11)));
    let noise = ["Once upon a time", "def fibonacci(n):", "The weather today is", "1, 2, 3, 5, 8,"];
    let mut streams = Vec::new();
    for (i, text) in noise.iter().cycle().take(8).enumerate() {
        let p = SamplingParams { temperature: 1.0, max_tokens: 4 + 3 * i, n: 1 + i % 2, ..Default::default() };
        streams.push(e.submit(Request::new(encode(text), p)).expect("submit"));
        if i == 3 {
            streams.push(e.submit(Request::new(prompt.clone(), sampled(1, Some(11)))).expect("submit"));
        }
    }
    let outs = collect_all(streams);
    assert!(outs.iter().all(|o| o.error.is_none() && o.usage.is_some()));
    assert_eq!(outs[4].ok(), alone.ok());
    assert_eq!(outs[4].text, alone.text);
}

// ---- stops ----

/// Text of `ids[..k]` for every k.
fn prefix_texts(ids: &[u32]) -> Vec<String> {
    (0..=ids.len()).map(|k| tokenizer().decode(&ids[..k], true).expect("decode")).collect()
}

#[test]
fn a_stop_string_across_two_tokens_ends_the_text_right_before_it() {
    let e = engine(DType::F32, config());
    let prompt = encode(PROMPT);
    let base = run(&e, &prompt, greedy(24));
    let (ids, text) = (base.ok(), &base.text[0]);
    let texts = prefix_texts(ids);
    assert_eq!(&texts[ids.len()], text, "streamed text is the decoded tokens");
    // Two characters each side of the boundary after token k, found nowhere earlier.
    let (k, at, stop) = (1..ids.len() - 1)
        .find_map(|k| {
            let b = texts[k].len();
            if b < texts[k - 1].len() + 2 || texts[k + 1].len() < b + 2 || !text.starts_with(&texts[k + 1]) {
                return None;
            }
            let stop = text.get(b - 2..b + 2)?;
            (text.find(stop) == Some(b - 2)).then(|| (k, b - 2, stop.to_string()))
        })
        .expect("some token boundary to stop across");
    let out = run(&e, &prompt, SamplingParams { stop: vec![stop.clone()], ..greedy(24) });
    assert_eq!(out.finish, [Some(FinishReason::Stop)], "stop {stop:?}");
    assert_eq!(out.text[0], text[..at], "stop {stop:?}");
    assert_eq!(out.ok(), &ids[..k + 1], "the token completing {stop:?} is the last");
}

#[test]
fn stop_token_ids_end_generation_unless_min_tokens_forbids_it() {
    let e = engine(DType::F32, config());
    let prompt = encode(PROMPT);
    let base = run(&e, &prompt, greedy(24));
    let ids = base.ok();
    // The token generated at step 3 (or the first later one not seen before it).
    let k = (3..16).find(|&k| !ids[..k].contains(&ids[k])).expect("a fresh token");
    let stop_id = ids[k];
    let out = run(&e, &prompt, SamplingParams { stop_token_ids: vec![stop_id], ..greedy(24) });
    assert_eq!(out.ok(), &ids[..k + 1]);
    assert_eq!(out.finish, [Some(FinishReason::Stop)]);
    assert_eq!(out.text[0], tokenizer().decode(&ids[..k], true).expect("decode"), "the stop token adds no text");

    let min_tokens = k + 3;
    let p = SamplingParams { stop_token_ids: vec![stop_id], min_tokens, ..greedy(24) };
    let out = run(&e, &prompt, p);
    let got = out.ok();
    assert_eq!(got[..k], ids[..k]);
    assert!(!got[..min_tokens].contains(&stop_id), "stop id sampled before min_tokens: {got:?}");
    match out.finish[0] {
        Some(FinishReason::Stop) => assert_eq!(got.last(), Some(&stop_id)),
        _ => assert_eq!(got.len(), 24),
    }
}

// ---- logprobs ----

fn assert_close(what: &str, got: f32, want: f64) {
    assert!((f64::from(got) - want).abs() <= LOGPROB_TOL, "{what}: {got} vs {want}");
}

/// `lp` is the logprob of its token under `row` (log_softmax), with its top entries.
fn check_logprob(what: &str, lp: &TokenLogprob, row: &[f64], top_n: usize) {
    assert!(lp.logprob <= 0.0, "{what}: {lp:?}");
    assert_close(what, lp.logprob, row[lp.token as usize]);
    // Ranks within the tolerance: a near-tie may fall either way.
    let x = row[lp.token as usize];
    let above = |t: f64| row.iter().filter(|&&y| y > x + t).count();
    assert!((1 + above(LOGPROB_TOL)..=1 + above(-LOGPROB_TOL)).contains(&lp.rank), "{what}: rank {}", lp.rank);
    assert_eq!(lp.top.len(), top_n, "{what}");
    assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1), "{what}: top not sorted: {:?}", lp.top);
    let mut want: Vec<usize> = (0..row.len()).collect();
    want.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    for (&(t, v), &w) in lp.top.iter().zip(&want) {
        assert_close(&format!("{what}: top token {t}"), v, row[t as usize]);
        assert!((row[t as usize] - row[w]).abs() <= LOGPROB_TOL, "{what}: top has {t}, expected {w}");
    }
}

#[test]
fn sampled_logprobs_are_the_models_log_softmax() {
    let e = engine(DType::F32, config());
    let prompt = encode(PROMPT);
    let out = run(&e, &prompt, SamplingParams { logprobs: Some(3), ..greedy(8) });
    let ids = out.ok();
    assert!(out.deltas[0].iter().all(|&(t, l)| t == l), "each delta's tokens have logprobs: {:?}", out.deltas);
    let tokens = [prompt.as_slice(), &ids[..ids.len() - 1]].concat();
    let rows = reference_log_softmax(&model(DType::F32), &tokens, prompt.len());
    for (i, lp) in out.logprobs[0].iter().enumerate() {
        assert_eq!(lp.token, ids[i]);
        assert_eq!(lp.rank, 1, "greedy picks the most likely token");
        assert_eq!(lp.top[0], (lp.token, lp.logprob));
        check_logprob(&format!("token {i}"), lp, &rows[prompt.len() - 1 + i], 3);
    }
}

fn check_prompt_logprobs(e: &Engine, prompt: &[u32], rows: &[Vec<f64>]) {
    let out = run(e, prompt, SamplingParams { prompt_logprobs: Some(2), ..greedy(1) });
    out.ok();
    assert_eq!(out.usage.map(|u| u.cached_prompt_tokens), Some(0), "scoring computes every position");
    let lps = out.prompt_logprobs.expect("prompt logprobs sent");
    assert_eq!(lps.len(), prompt.len());
    assert!(lps[0].is_none(), "the first prompt token has no prefix");
    for (i, lp) in lps.iter().enumerate().skip(1) {
        let lp = lp.as_ref().unwrap_or_else(|| panic!("no logprob for prompt token {i}"));
        assert_eq!(lp.token, prompt[i]);
        check_logprob(&format!("prompt token {i}"), lp, &rows[i - 1], 2);
    }
}

#[test]
fn prompt_logprobs_are_the_models_log_softmax_even_when_chunked_or_cached() {
    let prompt = encode(&format!("{PROMPT} the ships that passed at night never knew her name."));
    let rows = reference_log_softmax(&model(DType::F32), &prompt, prompt.len());
    check_prompt_logprobs(&engine(DType::F32, config()), &prompt, &rows);
    // Chunks of 7 tokens, and the prompt's blocks already in the prefix cache: every position
    // must still be computed and scored once.
    let e = engine(DType::F32, EngineConfig { max_num_batched_tokens: 7, ..config() });
    run(&e, &prompt, greedy(2)).ok();
    check_prompt_logprobs(&e, &prompt, &rows);
}

// ---- errors ----

fn submit_err(e: &Engine, prompt: Vec<u32>, params: SamplingParams) -> String {
    match e.submit(Request::new(prompt, params)) {
        Ok(_) => panic!("accepted"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn bad_requests_are_refused_naming_the_value() {
    let e = engine(DType::F32, EngineConfig { max_model_len: Some(64), ..config() });
    let vocab = e.info().vocab_size;
    assert_eq!(vocab, 49152);
    let msg = submit_err(&e, vec![], greedy(4));
    assert!(msg.contains("prompt is empty"), "{msg}");
    let msg = submit_err(&e, vec![1, 2, vocab as u32 + 5], greedy(4));
    assert!(msg.contains("49157") && msg.contains("49152"), "{msg}");
    let msg = submit_err(&e, vec![7; 10], greedy(60));
    assert!(msg.contains("`max_tokens` (60)") && msg.contains("64") && msg.contains("10 tokens"), "{msg}");
    let msg = submit_err(&e, vec![7; 10], SamplingParams { temperature: -1.0, ..greedy(4) });
    assert!(msg.contains("`temperature`") && msg.contains("-1"), "{msg}");
    // At the limit exactly is fine.
    assert_eq!(run(&e, &[7; 60], greedy(4)).ok().len(), 4);
}

#[test]
fn a_request_that_can_never_fit_the_pool_fails_on_its_stream() {
    let e = engine(DType::F32, EngineConfig { kv_cache_memory: pool_of(DType::F32, 2), ..config() });
    assert_eq!(e.info().num_blocks, 2);
    let out = run(&e, &encode(PROMPT), greedy(40)); // ~55 tokens: 4 blocks
    let msg = out.error.map(|e| e.to_string()).expect("an error event, not a hang or a finish");
    assert!(msg.contains("the whole pool has 2"), "{msg}");
    wait_idle(&e);
    // The engine carries on with requests that fit.
    assert_eq!(run(&e, &encode("Hi"), greedy(4)).ok().len(), 4);
}

// ---- async ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_streams_driven_concurrently_from_async_code() {
    let e = engine(DType::F32, config());
    let prompts = ["Once upon a time", "The capital of France is", "def add(a, b):", PROMPT];
    let tasks: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut s = e.submit(Request::new(encode(p), greedy(6 + 2 * i))).expect("submit");
            tokio::spawn(async move {
                let mut out = Output::default();
                while let Some(ev) = s.next().await {
                    if out.push(ev) {
                        break;
                    }
                }
                assert!(s.next().await.is_none(), "events after the end");
                out
            })
        })
        .collect();
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(tokio::time::timeout(DEADLINE, t).await.expect("timed out").expect("task"));
    }
    for (i, (o, p)) in outs.iter().zip(prompts).enumerate() {
        assert_eq!(o.ok().len(), 6 + 2 * i);
        // The same request alone, now that the others are done.
        let mut s = e.submit(Request::new(encode(p), greedy(6 + 2 * i))).expect("submit");
        let mut alone = Output::default();
        while let Some(ev) = tokio::time::timeout(DEADLINE, s.next()).await.expect("timed out") {
            alone.push(ev);
        }
        assert_eq!(o.ok(), alone.ok(), "{p:?}");
        assert_eq!(o.text, alone.text);
    }
}
