//! Continuous batching must not change a single greedy token. SmolLM2's quantized matmuls and the
//! paged attention kernel compute each row the same whatever else is in the batch, so 32
//! concurrent requests (mixed prompt lengths, a shared prefix, mixed `max_tokens`) must produce
//! bitwise the tokens each produces alone: with prefix caching on and off, with prefill chopped
//! into small chunks mixed with decodes, and with a pool so small that sequences are preempted and
//! recomputed. Also: the engine ends idle (no sequence, no referenced block), and a repeated prompt
//! is served from the prefix cache.
//!
//! "Alone" is one request at a time with prefix caching off and a budget above every prompt, so
//! each prompt runs as one chunk; a few of those are checked against `Model::forward` too.

mod common;

use std::sync::OnceLock;

use candle_core::DType;
use common::{collect, collect_all, config, encode, engine, model, pool_of, reference_greedy, tokenizer, wait_idle};
use prom_engine::{Engine, EngineConfig, EngineStats, FinishReason, Request, SamplingParams};
use prom_models::nn::KvDtype;

const STORY: &str = include_str!("../../../tests/reference/ppl_text.txt");
const BLOCK: usize = 16;
/// Tokens every request of the "shared" group starts with: three full blocks.
const SHARED_PREFIX: usize = 48;
/// Prompt lengths of the requests with their own text. Up to 160, not 300: prefill attention cost
/// grows with the square of the length and the seven passes below must stay near a minute on two
/// cores.
const OWN_LENGTHS: [usize; 22] =
    [5, 6, 7, 9, 11, 13, 15, 18, 21, 24, 28, 32, 37, 42, 48, 55, 63, 72, 84, 100, 128, 160];
/// Lengths of what follows the shared prefix in the other ten.
const SHARED_SUFFIXES: [usize; 10] = [3, 6, 10, 15, 21, 28, 36, 45, 55, 66];

#[derive(Debug, Clone)]
struct Case {
    prompt: Vec<u32>,
    max_tokens: usize,
}

impl Case {
    fn request(&self) -> Request {
        let params = SamplingParams { max_tokens: self.max_tokens, ignore_eos: true, ..SamplingParams::greedy() };
        Request::new(self.prompt.clone(), params)
    }

    /// KV blocks the request holds at its longest.
    fn blocks(&self) -> usize {
        (self.prompt.len() + self.max_tokens).div_ceil(BLOCK)
    }
}

/// 32 requests: slices of the story at scattered offsets, every third one instead the story's
/// first `SHARED_PREFIX` tokens followed by a slice of its own; `max_tokens` spread over 6..30.
fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let story = tokenizer().encode(STORY, false).expect("encode the story");
        assert!(story.len() > 2000, "the story is {} tokens", story.len());
        let slice = |offset: usize, len: usize| {
            let at = SHARED_PREFIX + offset % (story.len() - SHARED_PREFIX - len);
            &story[at..at + len]
        };
        let (mut own, mut shared) = (OWN_LENGTHS.iter(), SHARED_SUFFIXES.iter());
        (0..OWN_LENGTHS.len() + SHARED_SUFFIXES.len())
            .map(|i| {
                let prompt = match (i % 3 == 2).then(|| shared.next()).flatten() {
                    Some(&n) => [&story[..SHARED_PREFIX], slice(i * 389, n)].concat(),
                    None => slice(i * 131, *own.next().expect("32 cases")).to_vec(),
                };
                Case { prompt, max_tokens: 6 + (i * 13) % 25 }
            })
            .collect()
    })
}

/// A pool holding every case at full length at once, with room to spare.
fn roomy(kv: impl Into<KvDtype>) -> EngineConfig {
    let blocks = cases().iter().map(Case::blocks).sum::<usize>() + 8;
    EngineConfig { kv_cache_memory: pool_of(kv, blocks), block_size: BLOCK, ..config() }
}

/// Runs `cases` one at a time; see the module docs for the configuration.
fn alone(kv: impl Into<KvDtype>, cases: &[Case]) -> Vec<Vec<u32>> {
    let kv = kv.into();
    let cfg = EngineConfig { enable_prefix_caching: false, max_num_batched_tokens: 512, ..roomy(kv) };
    let e = engine(kv, cfg);
    cases.iter().map(|c| collect(e.submit(c.request()).expect("submit")).ok().to_vec()).collect()
}

fn alone_f32() -> &'static [Vec<u32>] {
    static ALONE: OnceLock<Vec<Vec<u32>>> = OnceLock::new();
    ALONE.get_or_init(|| alone(DType::F32, cases()))
}

/// Submits every case at once, collects the tokens, and checks the engine ends idle.
fn batched(e: &Engine, cases: &[Case]) -> (Vec<Vec<u32>>, EngineStats) {
    let streams = cases.iter().map(|c| e.submit(c.request()).expect("submit")).collect();
    let outs = collect_all(streams);
    for (o, c) in outs.iter().zip(cases) {
        assert_eq!(o.ok().len(), c.max_tokens, "ignore_eos: every request runs to max_tokens");
        assert_eq!(o.finish, [Some(FinishReason::Length)]);
    }
    let stats = wait_idle(e);
    (outs.iter().map(|o| o.ok().to_vec()).collect(), stats)
}

/// Fails listing every request whose tokens differ, with where they first diverge.
fn assert_same(what: &str, cases: &[Case], got: &[Vec<u32>], want: &[Vec<u32>]) {
    let diffs: Vec<String> = cases
        .iter()
        .zip(got.iter().zip(want))
        .enumerate()
        .filter(|(_, (_, (g, w)))| g != w)
        .map(|(i, (c, (g, w)))| {
            let at = g.iter().zip(w.iter()).take_while(|(a, b)| a == b).count();
            format!("request {i} (prompt {} tokens) first differs at token {at}: {g:?} vs {w:?}", c.prompt.len())
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "{what}: {} of {} requests differ from alone:\n{}",
        diffs.len(),
        cases.len(),
        diffs.join("\n")
    );
}

#[test]
fn alone_in_the_engine_equals_the_plain_model() {
    // The baseline itself: one request in the engine is the model's own greedy decode.
    let m = model(DType::F32);
    for i in [0, 2, 21] {
        let c = &cases()[i];
        assert_eq!(alone_f32()[i], reference_greedy(&m, &c.prompt, c.max_tokens), "request {i}");
    }
}

#[test]
fn batched_with_prefix_caching_equals_alone() {
    let e = engine(DType::F32, roomy(DType::F32));
    let (got, first) = batched(&e, cases());
    assert_same("prefix caching, cold", cases(), &got, alone_f32());
    assert_eq!(first.preemptions, 0, "the pool holds every request");
    // Again on the same engine: every prompt's full blocks (but its last token) are cached now.
    let (got, second) = batched(&e, cases());
    assert_same("prefix caching, warm", cases(), &got, alone_f32());
    let hits = second.prefix_hit_tokens - first.prefix_hit_tokens;
    let want: u64 = cases().iter().map(|c| ((c.prompt.len() - 1) / BLOCK * BLOCK) as u64).sum();
    assert_eq!(hits, want, "second pass: every full prompt block but the last token's is a hit");
}

#[test]
fn batched_without_prefix_caching_equals_alone() {
    let e = engine(DType::F32, EngineConfig { enable_prefix_caching: false, ..roomy(DType::F32) });
    let (got, stats) = batched(&e, cases());
    assert_same("prefix caching off", cases(), &got, alone_f32());
    assert_eq!((stats.prefix_hit_tokens, stats.preemptions), (0, 0));
}

#[test]
fn batched_with_small_prefill_chunks_equals_alone() {
    const BUDGET: usize = 24;
    let e = engine(DType::F32, EngineConfig { max_num_batched_tokens: BUDGET, ..roomy(DType::F32) });
    let (got, stats) = batched(&e, cases());
    assert_same("24-token steps", cases(), &got, alone_f32());
    // Every prompt token and every decode but the last of each request went through some step.
    let tokens: usize = cases().iter().map(|c| c.prompt.len() + c.max_tokens - 1).sum();
    let hit = stats.prefix_hit_tokens as usize;
    assert!(
        stats.steps as usize >= (tokens - hit).div_ceil(BUDGET),
        "{} steps for {tokens} tokens ({hit} cached) at {BUDGET} per step",
        stats.steps
    );
}

#[test]
fn batched_under_preemption_equals_alone() {
    // Room for about three of the longest requests; all 32 together need far more.
    let longest = cases().iter().map(Case::blocks).max().unwrap_or(0);
    let demand: usize = cases().iter().map(Case::blocks).sum();
    let blocks = 3 * longest;
    assert!(demand > 2 * blocks, "{demand} blocks wanted, {blocks} in the pool");
    let e = engine(DType::F32, EngineConfig { kv_cache_memory: pool_of(DType::F32, blocks), ..config() });
    assert_eq!(e.info().num_blocks, blocks);
    let (got, stats) = batched(&e, cases());
    assert_same("preemption", cases(), &got, alone_f32());
    assert!(stats.preemptions > 0, "no sequence was preempted: {stats:?}");
}

/// Every other case (the baseline is a second full alone run), batched against alone, both with
/// the KV cache stored as `kv`.
fn batched_equals_alone_with_cache(kv: KvDtype) {
    let cases: Vec<Case> = cases().iter().step_by(2).cloned().collect();
    let want = alone(kv, &cases);
    let e = engine(kv, roomy(kv));
    let (got, _) = batched(&e, &cases);
    assert_same(&format!("{kv} cache"), &cases, &got, &want);
}

#[test]
fn batched_f16_cache_equals_alone() {
    batched_equals_alone_with_cache(DType::F16.into());
}

#[test]
fn batched_int8_cache_equals_alone() {
    batched_equals_alone_with_cache(KvDtype::Int8);
}

#[test]
fn repeated_prompt_is_served_from_the_prefix_cache() {
    // Chunked, so the first run's later chunks start past 0 without any cache hit.
    let e = engine(DType::F32, EngineConfig { max_num_batched_tokens: 64, ..config() });
    let prompt = encode(&STORY[..1000]);
    assert!(prompt.len() > 200, "{} tokens", prompt.len());
    let params = SamplingParams { max_tokens: 8, ..SamplingParams::greedy() };
    let first = collect(e.submit(Request::new(prompt.clone(), params.clone())).expect("submit"));
    let before = wait_idle(&e);
    let second = collect(e.submit(Request::new(prompt.clone(), params)).expect("submit"));
    let after = wait_idle(&e);
    assert_eq!(first.ok(), second.ok());
    assert_eq!(first.usage.map(|u| u.cached_prompt_tokens), Some(0), "nothing was cached before the first run");
    let cached = second.usage.map_or(0, |u| u.cached_prompt_tokens);
    assert_eq!(cached, (prompt.len() - 1) / BLOCK * BLOCK, "every full block but the last token's");
    assert_eq!(after.prefix_hit_tokens - before.prefix_hit_tokens, cached as u64);
    assert!(after.prefix_queried_tokens > before.prefix_queried_tokens);
}

/// Async scheduling (each step scheduled while the one before runs, its placeholder tokens
/// filled from the previous step's picks) changes no token: batched, chunked and preempted.
#[test]
fn async_scheduling_equals_alone() {
    let on = |cfg: EngineConfig| EngineConfig { async_scheduling: Some(true), ..cfg };
    let e = engine(DType::F32, on(roomy(DType::F32)));
    let (got, stats) = batched(&e, cases());
    assert_same("async scheduling", cases(), &got, alone_f32());
    assert!(stats.steps_ahead * 2 > stats.steps, "most steps run ahead: {stats:?}");
    let e = engine(DType::F32, on(EngineConfig { max_num_batched_tokens: 24, ..roomy(DType::F32) }));
    let (got, stats) = batched(&e, cases());
    assert_same("async scheduling, 24-token steps", cases(), &got, alone_f32());
    assert!(stats.steps_ahead > 0, "{stats:?}");
    let blocks = 3 * cases().iter().map(Case::blocks).max().unwrap_or(0);
    let e = engine(DType::F32, on(EngineConfig { kv_cache_memory: pool_of(DType::F32, blocks), ..config() }));
    let (got, stats) = batched(&e, cases());
    assert_same("async scheduling under preemption", cases(), &got, alone_f32());
    assert!(stats.preemptions > 0 && stats.steps_ahead > 0, "{stats:?}");
}

/// Requests that stop on a token while the next step is already scheduled: that step's row for
/// them is dropped, they finish exactly as without async scheduling, and the pool ends idle.
#[test]
fn async_scheduling_stops_where_sync_does() {
    let stopping: Vec<Request> = cases()
        .iter()
        .zip(alone_f32())
        .map(|(c, want)| {
            let mut r = c.request();
            r.params.ignore_eos = false;
            r.params.stop_token_ids = vec![want[want.len() / 2]];
            r
        })
        .collect();
    let run = |on: bool| {
        let e = engine(DType::F32, EngineConfig { async_scheduling: Some(on), ..roomy(DType::F32) });
        let outs = collect_all(stopping.iter().map(|r| e.submit(r.clone()).expect("submit")).collect());
        let stats = wait_idle(&e);
        assert_eq!(stats.steps_ahead > 0, on, "{stats:?}");
        outs.iter().map(|o| (o.ok().to_vec(), o.finish.clone())).collect::<Vec<_>>()
    };
    let (sync, ahead) = (run(false), run(true));
    assert_eq!(ahead, sync);
    assert!(sync.iter().any(|(_, f)| f == &[Some(FinishReason::Stop)]), "some request stops early");
}
