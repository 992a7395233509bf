//! `prom bench --scenario throughput|prefix`: load numbers for the engine, measured through its public API the way a server
//! would use it.
//!
//! - `throughput`: for each concurrency C, C requests submitted at once (distinct prompts of
//!   32–128 tokens, greedy, EOS ignored; with `--reps`, each round runs every level once, so
//!   levels are interleaved in time); aggregate generated tok/s over the wall time from the
//!   first submit to the last `Finished`, mean time to first token and mean inter-token latency
//!   (both from the engine's [`Timings`]), and engine steps, so that per-step cost can be compared
//!   across batch sizes. `cached` sums the requests' `Usage::cached_prompt_tokens`, `hits` is the
//!   engine's prefix-cache counter over the round; the prompts share no block, so both should be 0.
//! - `prefix`: time to first token of a chat request with a long shared system prompt when that
//!   prefix is not cached (each cold request starts with a different session line, so no block of
//!   it is in the cache) against requests whose prefix was cached by an earlier request.
//!
//! Human-readable lines go to stdout, then one JSON line, always the last, for scripts. Prompts
//! are built from fixed text, so two runs send the same token ids.

use std::time::{Duration, Instant};

use anyhow::Result;
use prom_engine::{Engine, EngineStats, Event, Request, SamplingParams, Timings, Usage};
use prom_models::chat::ChatMessage;
use prom_models::Tokenizer;
use serde_json::json;

use super::stats::median;
use super::Args;
use crate::common::{start_engine, Served};
use crate::run::render;

/// `throughput`, or else `prefix`.
pub(super) fn run(a: &Args, throughput_scenario: bool) -> Result<()> {
    anyhow::ensure!(a.max_tokens > 0, "`--max-tokens` must be >= 1. Given: 0");
    let m = a.model.load()?;
    let s = start_engine(m, &a.engine)?;
    let i = s.engine.info();
    println!(
        "model: {} | engine: max_num_seqs {}, max_num_batched_tokens {}, prefix caching {}, KV {} blocks x {} tokens",
        a.model.model,
        a.engine.max_num_seqs,
        a.engine.max_num_batched_tokens,
        if a.engine.no_prefix_caching { "off" } else { "on" },
        i.num_blocks,
        i.block_size
    );
    let report = if throughput_scenario { throughput(&s, a)? } else { prefix(&s, a)? };
    println!("{report}");
    Ok(())
}

/// What came back for one request.
struct Outcome {
    usage: Usage,
    timings: Timings,
}

impl Outcome {
    /// Mean time between generated tokens after the first.
    fn itl(&self) -> Option<Duration> {
        let n = self.usage.completion_tokens.checked_sub(1).filter(|&n| n > 0)?;
        Some(self.timings.total.saturating_sub(self.timings.first_token) / n as u32)
    }
}

/// `max_tokens` tokens, EOS ignored: greedy, or sampled at `--temperature` / `--top-p` with a
/// fixed seed.
fn sampling(a: &Args, max_tokens: usize) -> SamplingParams {
    let (temperature, top_p, seed) = (a.temperature, a.top_p, Some(0));
    SamplingParams { max_tokens, ignore_eos: true, temperature, top_p, seed, ..SamplingParams::greedy() }
}

/// Reads a stream to its end. Events wait in unbounded channels, so draining streams one after
/// another neither slows the engine nor moves the engine-side timings.
fn drain(mut stream: prom_engine::RequestStream) -> Result<Outcome> {
    while let Some(event) = stream.blocking_next() {
        match event {
            Event::Finished { usage, timings } => return Ok(Outcome { usage, timings }),
            Event::Error(e) => return Err(e.into()),
            Event::Delta(_) | Event::PromptLogprobs(_) => {}
        }
    }
    anyhow::bail!("the engine ended a request without finishing it")
}

/// One round of requests submitted together.
struct Round {
    wall: Duration,
    outcomes: Vec<Outcome>,
    steps: u64,
    /// Prompt tokens the engine's prefix cache supplied during the round.
    prefix_hits: u64,
}

fn round(engine: &Engine, prompts: Vec<Vec<u32>>, params: &SamplingParams) -> Result<Round> {
    let before = settled_stats(engine);
    let t0 = Instant::now();
    let streams: Vec<_> =
        prompts.into_iter().map(|p| engine.submit(Request::new(p, params.clone()))).collect::<Result<_, _>>()?;
    let outcomes = streams.into_iter().map(drain).collect::<Result<Vec<_>>>()?;
    let wall = t0.elapsed();
    let after = settled_stats(engine);
    Ok(Round {
        wall,
        outcomes,
        steps: after.steps - before.steps,
        prefix_hits: after.prefix_hit_tokens - before.prefix_hit_tokens,
    })
}

/// The engine's stats once it has published the step that finished the last request (stats
/// are refreshed just after the step's events are sent).
fn settled_stats(engine: &Engine) -> EngineStats {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let st = engine.stats();
        if (st.running == 0 && st.waiting == 0) || Instant::now() > deadline {
            return st;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn throughput(s: &Served, a: &Args) -> Result<serde_json::Value> {
    anyhow::ensure!(
        !a.concurrency.is_empty() && !a.concurrency.contains(&0),
        "`--concurrency` must list levels >= 1. Given: {:?}",
        a.concurrency
    );
    let reps = a.reps.unwrap_or(1);
    let tok = &s.tokenizer;
    let mut next_prompt = 0usize;
    let mut prompts = |n: usize| -> Result<Vec<Vec<u32>>> {
        let v = (next_prompt..next_prompt + n).map(|i| varied_prompt(tok, i, a.prompt_tokens)).collect();
        next_prompt += n;
        v
    };
    // Warm-up: the largest level once, short, so first-touch costs (KV pages, thread pools)
    // land outside the measurement.
    let warm_n = a.concurrency.iter().copied().max().unwrap_or(1);
    let w = round(&s.engine, prompts(warm_n)?, &sampling(a, a.max_tokens.min(8)))?;
    println!("warm-up: {warm_n} requests x {} tokens in {:.2} s", a.max_tokens.min(8), w.wall.as_secs_f64());
    println!(
        "{:>11} {:>5} {:>10} {:>8} {:>10} {:>8} {:>13} {:>12} {:>6} {:>8} {:>7} {:>6}",
        "concurrency",
        "round",
        "prompt tok",
        "wall s",
        "gen tok/s",
        "speedup",
        "mean TTFT ms",
        "mean ITL ms",
        "steps",
        "ms/step",
        "cached",
        "hits"
    );
    // Rounds interleave the levels (round r runs every level once, in order), so a drift in
    // the machine's speed during the run (other tenants' memory traffic, say) reaches every
    // level alike instead of whichever level ran during it.
    let mut per_level: Vec<Vec<LevelRow>> = a.concurrency.iter().map(|_| Vec::new()).collect();
    let mut base_tps = None;
    for r in 0..reps {
        for (&c, rows) in a.concurrency.iter().zip(per_level.iter_mut()) {
            let round = round(&s.engine, prompts(c)?, &sampling(a, a.max_tokens))?;
            let row = LevelRow::from_round(&round);
            let speedup = row.tok_s / *base_tps.get_or_insert(row.tok_s);
            row.print(c, &(r + 1).to_string(), speedup);
            rows.push(row);
        }
    }
    let mut levels = Vec::new();
    let base_med = per_level.first().map(|rows| LevelRow::median(rows).tok_s);
    for (&c, rows) in a.concurrency.iter().zip(&per_level) {
        let med = LevelRow::median(rows);
        if reps > 1 {
            med.print(c, "med", med.tok_s / base_med.unwrap_or(med.tok_s));
        }
        levels.push(json!({
            "concurrency": c,
            "rounds": reps,
            "prompt_tokens": med.prompt_tokens,
            "generated_tokens": med.generated,
            "wall_s": med.wall_s,
            "tok_s": med.tok_s,
            "tok_s_rounds": rows.iter().map(|r| r.tok_s).collect::<Vec<_>>(),
            "mean_ttft_ms": med.ttft_ms,
            "mean_itl_ms": med.itl_ms,
            "steps": med.steps,
            "ms_per_step": med.ms_per_step,
            "cached_prompt_tokens": med.cached,
            "engine_prefix_hit_tokens": med.prefix_hits,
        }));
    }
    let tps = |c: usize| levels.iter().find(|l| l["concurrency"] == c).and_then(|l| l["tok_s"].as_f64());
    let ratio = match (tps(16), tps(1)) {
        (Some(x), Some(y)) => json!(x / y),
        _ => serde_json::Value::Null,
    };
    Ok(json!({
        "scenario": "throughput",
        "model": a.model.model,
        "max_tokens": a.max_tokens,
        "levels": levels,
        "speedup_16_over_1": ratio,
    }))
}

/// One concurrency level's numbers (one round, or the medians of several).
struct LevelRow {
    prompt_tokens: f64,
    generated: f64,
    wall_s: f64,
    tok_s: f64,
    ttft_ms: f64,
    itl_ms: f64,
    steps: f64,
    ms_per_step: f64,
    cached: f64,
    prefix_hits: f64,
}

impl LevelRow {
    fn from_round(r: &Round) -> Self {
        let n = r.outcomes.len().max(1) as f64;
        let sum = |f: &dyn Fn(&Outcome) -> f64| r.outcomes.iter().map(f).sum::<f64>();
        let generated = sum(&|o| o.usage.completion_tokens as f64);
        let itls: Vec<f64> = r.outcomes.iter().filter_map(|o| o.itl()).map(ms).collect();
        let wall_s = r.wall.as_secs_f64();
        Self {
            prompt_tokens: sum(&|o| o.usage.prompt_tokens as f64),
            generated,
            wall_s,
            tok_s: generated / wall_s.max(1e-9),
            ttft_ms: sum(&|o| ms(o.timings.first_token)) / n,
            itl_ms: itls.iter().sum::<f64>() / itls.len().max(1) as f64,
            steps: r.steps as f64,
            ms_per_step: wall_s * 1e3 / r.steps.max(1) as f64,
            cached: sum(&|o| o.usage.cached_prompt_tokens as f64),
            prefix_hits: r.prefix_hits as f64,
        }
    }

    fn median(rows: &[Self]) -> Self {
        let m = |f: fn(&Self) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
        Self {
            prompt_tokens: m(|r| r.prompt_tokens),
            generated: m(|r| r.generated),
            wall_s: m(|r| r.wall_s),
            tok_s: m(|r| r.tok_s),
            ttft_ms: m(|r| r.ttft_ms),
            itl_ms: m(|r| r.itl_ms),
            steps: m(|r| r.steps),
            ms_per_step: m(|r| r.ms_per_step),
            cached: m(|r| r.cached),
            prefix_hits: m(|r| r.prefix_hits),
        }
    }

    fn print(&self, c: usize, round: &str, speedup: f64) {
        println!(
            "{c:>11} {round:>5} {:>10.0} {:>8.2} {:>10.1} {:>7.2}x {:>13.1} {:>12.2} {:>6.0} {:>8.2} {:>7.0} {:>6.0}",
            self.prompt_tokens,
            self.wall_s,
            self.tok_s,
            speedup,
            self.ttft_ms,
            self.itl_ms,
            self.steps,
            self.ms_per_step,
            self.cached,
            self.prefix_hits
        );
    }
}

fn prefix(s: &Served, a: &Args) -> Result<serde_json::Value> {
    let reps = a.reps.unwrap_or(5);
    let tok = &s.tokenizer;
    let params = sampling(a, a.max_tokens);
    let system = system_prompt(tok, a.prefix_tokens)?;
    // Requests run one at a time, so TTFT is prefill (plus one step's overhead), not queueing.
    let ask = |session: &str, q: usize| -> Result<Outcome> {
        let msgs =
            [ChatMessage::system(format!("{session}\n{system}")), ChatMessage::user(QUESTIONS[q % QUESTIONS.len()])];
        let ids = tok.encode(&render(s.chat_template.as_ref(), &msgs)?, false)?;
        drain(s.engine.submit(Request::new(ids, params.clone()))?)
    };
    let w = ask("Session: warm-up.", 0)?;
    println!(
        "warm-up (cold, not counted): prompt {} tokens, TTFT {:.1} ms",
        w.usage.prompt_tokens,
        ms(w.timings.first_token)
    );
    let shared = "Session: shared.";
    let p = ask(shared, 0)?;
    println!(
        "priming request (caches the shared prefix): prompt {} tokens, TTFT {:.1} ms",
        p.usage.prompt_tokens,
        ms(p.timings.first_token)
    );
    println!(
        "{:>4} {:>12} {:>14} {:>8} {:>14} {:>14}",
        "rep", "cold prompt", "cold TTFT ms", "cached", "cached TTFT ms", "cached tokens"
    );
    let (mut cold, mut hot) = (Vec::new(), Vec::new());
    // Alternating cold and cached requests spreads any change in machine load over both sides.
    for r in 1..=reps {
        let c = ask(&format!("Session: cold {r}."), r)?;
        let h = ask(shared, r)?;
        println!(
            "{r:>4} {:>12} {:>14.1} {:>8} {:>14.1} {:>14}",
            c.usage.prompt_tokens,
            ms(c.timings.first_token),
            h.usage.prompt_tokens,
            ms(h.timings.first_token),
            h.usage.cached_prompt_tokens
        );
        cold.push(c);
        hot.push(h);
    }
    let ttfts = |v: &[Outcome]| v.iter().map(|o| ms(o.timings.first_token)).collect::<Vec<_>>();
    let (cold_ms, hot_ms) = (median(&ttfts(&cold)), median(&ttfts(&hot)));
    let ratio = cold_ms / hot_ms.max(1e-9);
    let cached_min = hot.iter().map(|o| o.usage.cached_prompt_tokens).min().unwrap_or(0);
    let cold_cached_max = cold.iter().map(|o| o.usage.cached_prompt_tokens).max().unwrap_or(0);
    println!(
        "median TTFT: cold {cold_ms:.1} ms, cached {hot_ms:.1} ms ({cached_min}+ of ~{} prompt tokens from the cache; \
         cold requests hit {cold_cached_max}); cold / cached = {ratio:.2}x",
        hot.first().map_or(0, |o| o.usage.prompt_tokens)
    );
    let st = s.engine.stats();
    Ok(json!({
        "scenario": "prefix",
        "model": a.model.model,
        "max_tokens": a.max_tokens,
        "reps": reps,
        "cold_prompt_tokens": cold.iter().map(|o| o.usage.prompt_tokens).collect::<Vec<_>>(),
        "cached_side_prompt_tokens": hot.iter().map(|o| o.usage.prompt_tokens).collect::<Vec<_>>(),
        "cached_prompt_tokens": hot.iter().map(|o| o.usage.cached_prompt_tokens).collect::<Vec<_>>(),
        "cold_cached_prompt_tokens": cold.iter().map(|o| o.usage.cached_prompt_tokens).collect::<Vec<_>>(),
        "cold_ttft_ms": ttfts(&cold),
        "cached_ttft_ms": ttfts(&hot),
        "cold_ttft_median_ms": cold_ms,
        "cached_ttft_median_ms": hot_ms,
        "ttft_cold_over_cached": ratio,
        "engine_prefix_hit_tokens": st.prefix_hit_tokens,
        "engine_prefix_queried_tokens": st.prefix_queried_tokens,
    }))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Prompt `i` of the throughput scenario: `len` tokens or 32–128, a numbered line (so no two prompts share
/// a KV block and the prefix cache stays out of the measurement) and then sentences in an order
/// that depends on `i`.
fn varied_prompt(tok: &Tokenizer, i: usize, len: Option<usize>) -> Result<Vec<u32>> {
    let len = len.unwrap_or(32 + (i * 37) % 97);
    let mut text = format!("Note {i}.");
    let mut k = i.wrapping_mul(7).wrapping_add(3);
    loop {
        let mut ids = tok.encode(&text, true)?;
        if ids.len() >= len {
            ids.truncate(len);
            return Ok(ids);
        }
        text.push(' ');
        text.push_str(SENTENCES[k % SENTENCES.len()]);
        k = k.wrapping_add(5);
    }
}

/// A help-desk system prompt of at least `tokens` tokens: numbered rules cycling through the
/// sentences.
fn system_prompt(tok: &Tokenizer, tokens: usize) -> Result<String> {
    let mut text =
        String::from("You are the assistant of the harbor town library. Follow these notes when you answer.\n");
    for k in 1.. {
        if tok.encode(&text, false)?.len() >= tokens {
            break;
        }
        text.push_str(&format!("{k}. {}\n", SENTENCES[(k * 3) % SENTENCES.len()]));
    }
    Ok(text)
}

const SENTENCES: &[&str] = &[
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a lantern.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "The committee postponed its decision until the budget report arrived on Thursday.",
    "A binary search halves the remaining interval at every step, so it needs logarithmic time.",
    "Fresh bread should cool on a wire rack so that steam can escape from the bottom crust.",
    "The river flooded the lower fields twice that spring, and the farmers rebuilt the levee.",
    "Prime numbers have exactly two divisors: one and the number itself.",
    "Her violin teacher insisted on scales before every lesson, no matter how late it was.",
    "Copper conducts electricity well, which is why it is used in most household wiring.",
    "The museum opens at nine on weekdays and at ten on Sundays and public holidays.",
    "Glaciers carve U-shaped valleys as they slowly grind their way down the mountains.",
    "He kept a notebook of every bird he saw, with the date, the weather and the place.",
    "Interest compounds when earnings are reinvested and themselves begin to earn interest.",
    "The train to the coast leaves from platform four and stops at every small village.",
    "Volcanic soil is often fertile because it is rich in minerals such as potassium.",
    "Members may borrow up to twelve books at a time and renew each of them twice online.",
    "The chess club meets on Tuesday evenings in the reading room on the second floor.",
    "Tides are caused mainly by the gravitational pull of the moon on the oceans.",
    "A good map legend explains every symbol, colour and line style used on the map.",
    "The bakery on the corner sells out of cinnamon rolls before eight in the morning.",
];

const QUESTIONS: &[&str] = &[
    "How many books can I borrow at once?",
    "When does the museum open on Sundays?",
    "What causes the tides?",
    "Where does the train to the coast leave from?",
    "Why is copper used in wiring?",
    "When does the chess club meet?",
    "What is a prime number?",
    "How does a binary search work?",
    "Why should bread cool on a wire rack?",
    "What happened to the lower fields in spring?",
];
