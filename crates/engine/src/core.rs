//! The engine loop's body, owned by the engine thread: schedule → execute → update.
//!
//! The scheduler decides which tokens of which sequences run this step (plain ids, token counts
//! and block tables); the executor runs them as one batched forward pass over the paged cache;
//! the update samples, detokenizes, checks stops and streams each request's deltas. A request
//! with `n > 1` is `n` scheduler sequences, the later ones forking the first one's prompt blocks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::Tensor;
use prom_models::cuda::{NextIds, Picks, RowPick};
use prom_models::nn::{LogitsFor, Model, PagedKvCache, SeqChunk};
use prom_models::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use crate::detokenizer::{StopMatcher, StreamDecoder};
use crate::kv::SeqId;
use crate::request::{Delta, Event, FinishReason, Request, RequestId, Timings, Usage};
use crate::sampler::{prompt_logprobs, Sampled, Sampler, SamplingParams, TokenLogprob};
use crate::scheduler::{ScheduledSeq, Scheduler, SchedulerOutput, SeqRequest, PLACEHOLDER};
use crate::{Error, Result};

/// One of a request's `n` sequences.
struct Child {
    seq: SeqId,
    sampler: Sampler,
    decoder: StreamDecoder,
    stops: StopMatcher,
    generated: Vec<u32>,
    done: bool,
}

struct ReqState {
    tx: UnboundedSender<Event>,
    params: SamplingParams,
    prompt: Vec<u32>,
    /// Token ids that end a sequence: `stop_token_ids`, plus EOS unless `ignore_eos`.
    stop_ids: Vec<u32>,
    children: Vec<Child>,
    arrival: Instant,
    first_scheduled: Option<Instant>,
    first_token: Option<Instant>,
    /// Prompt logprobs gathered chunk by chunk (the first entry is `None`); sent once complete.
    prompt_lp: Option<Vec<Option<TokenLogprob>>>,
    cached_prompt_tokens: usize,
}

pub(crate) struct Core {
    model: Model,
    tokenizer: Arc<Tokenizer>,
    kv: PagedKvCache,
    sched: Scheduler,
    requests: HashMap<RequestId, ReqState>,
    /// Sequence → (request, child index).
    owners: HashMap<SeqId, (RequestId, usize)>,
    next_seq: SeqId,
    eos_ids: Vec<u32>,
    max_model_len: usize,
    /// Sequences preempted (their blocks taken back, to be recomputed) since the start.
    preemptions: u64,
    /// Where steps spend their time (logged at debug level, `PROM_LOG=prom_engine=debug`).
    clock: StepClock,
    /// The step launched and not yet collected, when the next `step` starts from it.
    inflight: Option<InFlight>,
    /// Schedule the next step while one runs ([`Core::launch_ahead`]).
    async_scheduling: bool,
    /// Sequences whose last sampled token is not back (while launching ahead).
    lagging: Vec<SeqId>,
    steps_ahead: u64,
}

/// Host time per phase of a step, summed over the last `STEPS` steps: scheduling, the forward
/// pass's host side (up to its last launch), waiting for the device's results, and the update
/// (sampling, streaming, stops). The device runs while the host is in `forward` and `device`
/// only: the rest is time the GPU waits.
#[derive(Default)]
struct StepClock {
    steps: u32,
    /// schedule, forward, device, update
    sums: [std::time::Duration; 4],
}

impl StepClock {
    const STEPS: u32 = 128;

    fn add(&mut self, t: [Instant; 5]) {
        for (i, s) in self.sums.iter_mut().enumerate() {
            *s += t[i + 1] - t[i];
        }
        self.steps += 1;
        if self.steps == Self::STEPS {
            let us = |d: std::time::Duration| d.as_secs_f64() * 1e6 / f64::from(Self::STEPS);
            let [a, b, c, d] = self.sums.map(us);
            tracing::debug!(
                "step phases, mean µs over {} steps: schedule {a:.0}, forward {b:.0}, device {c:.0}, update {d:.0}",
                Self::STEPS
            );
            *self = Self::default();
        }
    }
}

impl Core {
    pub fn new(model: Model, tokenizer: Arc<Tokenizer>, kv: PagedKvCache, sched: Scheduler) -> Self {
        let mut eos_ids = tokenizer.eos_token_ids().to_vec();
        eos_ids.extend_from_slice(&model.config().eos_token_ids);
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let max_model_len = sched.config().max_model_len;
        Self {
            model,
            tokenizer,
            kv,
            sched,
            requests: HashMap::new(),
            owners: HashMap::new(),
            next_seq: 0,
            eos_ids,
            max_model_len,
            preemptions: 0,
            clock: StepClock::default(),
            inflight: None,
            async_scheduling: false,
            lagging: Vec::new(),
            steps_ahead: 0,
        }
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    pub fn preemptions(&self) -> u64 {
        self.preemptions
    }

    /// Steps launched ahead of the one before them ([`Core::launch_ahead`]) since the start.
    pub fn steps_ahead(&self) -> u64 {
        self.steps_ahead
    }

    pub fn has_work(&self) -> bool {
        !self.requests.is_empty() || self.inflight.is_some()
    }

    /// Queues a request; a request the scheduler can never run fails at once on its stream.
    pub fn add(&mut self, id: RequestId, req: Request, tx: UnboundedSender<Event>) {
        if let Err(e) = self.try_add(id, &req, tx.clone()) {
            self.abort(id);
            let _ = tx.send(Event::Error(e));
        }
    }

    fn try_add(&mut self, id: RequestId, req: &Request, tx: UnboundedSender<Event>) -> Result<()> {
        let p = &req.params;
        let vocab = self.model.config().vocab_size;
        let mut stop_ids = p.stop_token_ids.clone();
        if !p.ignore_eos {
            stop_ids.extend_from_slice(&self.eos_ids);
        }
        let mut state = ReqState {
            tx,
            params: p.clone(),
            prompt: req.prompt.clone(),
            stop_ids,
            children: Vec::with_capacity(p.n),
            arrival: Instant::now(),
            first_scheduled: None,
            first_token: None,
            prompt_lp: p.prompt_logprobs.map(|_| vec![None]),
            cached_prompt_tokens: 0,
        };
        for i in 0..p.n {
            state.children.push(Child {
                seq: self.next_seq + i as SeqId,
                sampler: Sampler::new_for_child(p, &self.eos_ids, vocab, &req.prompt, i)?,
                decoder: StreamDecoder::new(Arc::clone(&self.tokenizer), true),
                stops: StopMatcher::new(&p.stop),
                generated: Vec::new(),
                done: false,
            });
        }
        self.next_seq += p.n as SeqId;
        let leader = state.children[0].seq;
        let seqs: Vec<SeqId> = state.children.iter().map(|c| c.seq).collect();
        self.requests.insert(id, state);
        for (i, seq) in seqs.into_iter().enumerate() {
            self.owners.insert(seq, (id, i));
            self.sched
                .add(SeqRequest {
                    id: seq,
                    prompt: req.prompt.clone(),
                    max_tokens: p.max_tokens,
                    priority: req.priority,
                    needs_prompt_logprobs: i == 0 && p.prompt_logprobs.is_some(),
                    share_prompt_with: (i > 0).then_some(leader),
                })
                .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        }
        Ok(())
    }

    /// Drops a request and frees its blocks at once. Unknown ids are ignored.
    pub fn abort(&mut self, id: RequestId) {
        if let Some(state) = self.requests.remove(&id) {
            for c in &state.children {
                self.sched.finish(c.seq);
                self.owners.remove(&c.seq);
            }
        }
    }

    /// Ends every request with an error (the engine is stopping or a step failed for all).
    fn fail(&mut self, id: RequestId, err: Error) {
        if let Some(state) = self.requests.get(&id) {
            let _ = state.tx.send(Event::Error(err));
        }
        self.abort(id);
    }

    /// One engine step. Returns false when there was nothing to run.
    ///
    /// A step is launched, then collected: its tokens sampled, streamed, checked for stops. With
    /// async scheduling ([`Core::launch_ahead`]) the next step is launched between the two, so
    /// the device runs it while the host collects this one, and the following `step` call
    /// starts from it.
    pub fn step(&mut self) -> bool {
        let mut f = match self.inflight.take() {
            Some(f) => f,
            None => {
                let t0 = Instant::now();
                let out = self.sched.schedule();
                self.preemptions += out.preempted.len() as u64;
                if out.seqs.is_empty() {
                    return false;
                }
                match self.launch(out, None, t0) {
                    Some(f) => f,
                    None => return true,
                }
            }
        };
        let next = self.launch_ahead(&mut f);
        self.collect(f);
        self.inflight = next;
        true
    }

    /// Whether the next step may be scheduled before this one's tokens are back: on where the
    /// model can take its input ids from the device (a GPU), unless `PROM_ASYNC_SCHEDULING=0`.
    pub fn set_async_scheduling(&mut self, on: bool) {
        self.async_scheduling = on;
    }

    /// Schedules and launches the step after `prev` while `prev` still runs (vLLM V1's async
    /// scheduling): its sampling sequences get placeholder tokens ([`Scheduler::advance`]) whose
    /// ids the device writes from `prev`'s picks. Only when every row of `prev` is picked where
    /// the logits are, nothing waits for admission, no block is short, and each sequence's
    /// next step needs no host sampling either. A sequence that stops on `prev`'s token runs
    /// one step for nothing; its result is dropped.
    fn launch_ahead(&mut self, prev: &mut InFlight) -> Option<InFlight> {
        if !self.async_scheduling || prev.launched.host_rows > 0 || !self.sched.can_advance(&prev.out) {
            return None;
        }
        let picks = prev.launched.picks.as_ref()?;
        // Where each sampling sequence's token is among `prev`'s picks.
        let mut row_of: HashMap<SeqId, u32> = HashMap::new();
        let mut row = 0;
        for s in &prev.out.seqs {
            row += rows_of(s);
            if s.sample {
                if !self.next_step_on_device(s.id) {
                    return None;
                }
                row_of.insert(s.id, row as u32 - 1);
            }
        }
        let t0 = Instant::now();
        self.sched.advance(&prev.out);
        prev.advanced = true;
        let mut out = self.sched.schedule();
        self.preemptions += out.preempted.len() as u64;
        if out.seqs.is_empty() {
            return None;
        }
        // The placeholders: ids from the device where the picks are there, else the host's.
        let ready = picks.ready();
        let mut map = Vec::new();
        let mut lagging = Vec::new();
        for s in &mut out.seqs {
            let mut at_placeholder = None;
            for t in &mut s.tokens {
                if *t == PLACEHOLDER {
                    let r = row_of.get(&s.id).copied();
                    *t = match (ready, r) {
                        (Some(ids), Some(r)) => ids.get(r as usize).copied().flatten().unwrap_or(0),
                        _ => 0,
                    };
                    at_placeholder = r;
                }
                if ready.is_none() {
                    map.push(at_placeholder.take().unwrap_or(NextIds::HOST));
                }
            }
            if row_of.contains_key(&s.id) {
                lagging.push(s.id);
            }
        }
        let next = if ready.is_none() { picks.next_ids(map) } else { None };
        self.lagging = lagging;
        let f = self.launch(out, next.as_ref(), t0);
        self.lagging.clear();
        self.steps_ahead += u64::from(f.is_some());
        f
    }

    /// Whether `seq`'s step after the one in flight can be picked on the device (no host rows).
    fn next_step_on_device(&self, seq: SeqId) -> bool {
        let Some(&(rid, child)) = self.owners.get(&seq) else { return true };
        let Some(c) = self.requests.get(&rid).and_then(|r| r.children.get(child)) else { return true };
        let generated = c.generated.len() + 1;
        if self.model.device().is_cuda() && device_sampling() {
            c.sampler.device_can(generated)
        } else {
            c.sampler.is_plain_greedy(generated)
        }
    }

    /// Launches `out` ([`Core::execute`]); on failure fails its requests and returns `None`.
    fn launch(&mut self, out: SchedulerOutput, next: Option<&NextIds>, t0: Instant) -> Option<InFlight> {
        let now = Instant::now();
        for s in &out.seqs {
            if let Some(&(rid, child)) = self.owners.get(&s.id) {
                if let Some(r) = self.requests.get_mut(&rid) {
                    // Only the first admission starts past 0 thanks to the prefix cache; a later
                    // chunk starts past the request's own prefill (the leader is always first:
                    // its siblings wait for its prompt).
                    if r.first_scheduled.is_none() {
                        r.first_scheduled = Some(now);
                        if child == 0 {
                            r.cached_prompt_tokens = s.start.min(r.prompt.len());
                        }
                    }
                }
            }
        }
        match self.execute(&out.seqs, next) {
            Ok((launched, t2)) => Some(InFlight { out, launched, advanced: false, t: [t0, now, t2] }),
            Err(e) => {
                self.fail_step(&out, &e);
                None
            }
        }
    }

    /// A failed forward pass fails the requests in it; the engine carries on.
    fn fail_step(&mut self, out: &SchedulerOutput, e: &Error) {
        tracing::error!("forward pass failed: {e}");
        let ids: Vec<RequestId> = out.seqs.iter().filter_map(|s| self.owners.get(&s.id).map(|o| o.0)).collect();
        for id in ids {
            self.fail(id, Error::Engine(format!("forward pass failed: {e}")));
        }
    }

    /// Waits for a launched step's picks, samples its host rows, and streams each sequence's
    /// token (recording the step in the scheduler first, unless [`Scheduler::advance`] did).
    fn collect(&mut self, f: InFlight) {
        let InFlight { out, launched, advanced, t: [t0, t1, t2] } = f;
        let logits = match launched.finish() {
            Ok(l) => l,
            Err(e) => {
                self.fail_step(&out, &e);
                return;
            }
        };
        let t3 = Instant::now();
        let vocab = self.model.config().vocab_size;
        let mut row = 0;
        let mut sampled: Vec<(SeqId, Sampled)> = Vec::new();
        let mut failed: Vec<(RequestId, Error)> = Vec::new();
        // Each sampled sequence's pick, in step order; the host rows' are filled in after the
        // loop, all at once (`host_jobs`: index in `picks`, host row).
        let mut picks: Vec<Pick> = Vec::new();
        let mut host_jobs: Vec<(usize, usize)> = Vec::new();
        for s in &out.seqs {
            let n = rows_of(s);
            let first = row;
            row += n;
            let Some(&(rid, child)) = self.owners.get(&s.id) else { continue };
            let Some(r) = self.requests.get_mut(&rid) else { continue };
            if s.prompt_logprobs {
                let Some(rows) = logits.host_rows(first, n) else {
                    failed.push((rid, Error::Engine("prompt logprob rows were not copied to the host".into())));
                    continue;
                };
                if let Err(e) = gather_prompt_logprobs(r, s, rows, vocab) {
                    failed.push((rid, e));
                    continue;
                }
            }
            if s.sample && n > 0 {
                match logits.rows[row - 1] {
                    Row::Id(id) => picks.push((s.id, rid, Some(r.children[child].sampler.picked(id)))),
                    Row::Host(k) => {
                        host_jobs.push((picks.len(), k));
                        picks.push((s.id, rid, None));
                    }
                }
            }
        }
        sample_host_rows(&mut self.requests, &mut picks, &host_jobs, &logits.host, vocab);
        for (seq, rid, x) in picks {
            match x {
                Some(Ok(x)) => sampled.push((seq, x)),
                Some(Err(e)) => failed.push((rid, e)),
                None => {}
            }
        }
        let ids: Vec<(SeqId, u32)> = sampled.iter().map(|(s, x)| (*s, x.token)).collect();
        if advanced {
            self.sched.fill(&ids);
        } else {
            self.sched.update(&out, &ids);
        }
        for (rid, e) in failed {
            self.fail(rid, e);
        }
        for (seq, x) in sampled {
            self.on_token(seq, x);
        }
        self.clock.add([t0, t1, t2, t3, Instant::now()]);
    }

    /// Enqueues the scheduled chunks as one forward pass ([`Model::forward_batch_next`]: `next`
    /// maps rows whose ids are still on the device). The model's device picks the token of each
    /// row it can ([`Core::device_pick`]), without waiting; the rows the host sampler needs
    /// (prompt logprobs, bias, penalties, logprobs, and on the CPU every random step) are copied
    /// to the host at once. Also returns when the forward pass was enqueued.
    fn execute(&mut self, seqs: &[ScheduledSeq], next: Option<&NextIds>) -> Result<(Launched, Instant)> {
        let chunks: Vec<SeqChunk> = seqs
            .iter()
            .map(|s| SeqChunk {
                tokens: &s.tokens,
                start: s.start,
                block_table: &s.block_table,
                logits: logits_for(s),
                prompt_len: s.prompt_len,
            })
            .collect();
        let logits = self.model.forward_batch_next(&chunks, &mut self.kv, next)?;
        let launched = Instant::now();
        let on_gpu = logits.device().is_cuda() && device_sampling();
        // Per logits row: what the device does, or `None` when the host samples it.
        let mut picks: Vec<Option<RowPick>> =
            Vec::with_capacity(logits.dim(0).map_err(crate::error::tensor_err("logits"))?);
        for s in seqs {
            let lag = usize::from(self.lagging.contains(&s.id));
            let pick = self.device_pick(s, on_gpu, lag);
            picks.extend(std::iter::repeat_n(pick, rows_of(s)));
        }
        let device: Vec<RowPick> = picks.iter().map(|p| p.unwrap_or(RowPick::Skip)).collect();
        let ids = if device.iter().all(|p| *p == RowPick::Skip) {
            None
        } else {
            Some(prom_models::cuda::pick_rows_async(&logits, &device)?)
        };
        let host = if picks.iter().all(Option::is_some) {
            Vec::new()
        } else {
            let rows = if picks.iter().all(Option::is_none) {
                logits.clone()
            } else {
                let picked: Vec<u32> = (0..picks.len() as u32).filter(|&i| picks[i as usize].is_none()).collect();
                Tensor::new(picked.as_slice(), logits.device())
                    .and_then(|i| logits.index_select(&i, 0))
                    .map_err(crate::error::tensor_err("pick logits rows"))?
            };
            // On a GPU through page-locked memory; elsewhere candle's copy.
            match prom_models::cuda::to_host_f32(&rows) {
                Some(v) => v?,
                None => rows
                    .flatten_all()
                    .and_then(|l| l.to_vec1::<f32>())
                    .map_err(crate::error::tensor_err("read logits"))?,
            }
        };
        let host_rows = picks.iter().filter(|p| p.is_none()).count();
        let kinds = picks.iter().map(|p| p.is_some()).collect();
        let vocab = self.model.config().vocab_size;
        Ok((Launched { device_rows: kinds, picks: ids, host, host_rows, vocab }, launched))
    }

    /// What the device does with `s`'s logits rows this step; `None` when the host must see
    /// them. A row that needs no token is skipped; a plain argmax is the device's anywhere; on a
    /// GPU so is a random step that needs nothing but the raw logits ([`Sampler::device_pick`],
    /// which then draws the step's random number). `lag`: tokens sampled but not yet back.
    fn device_pick(&mut self, s: &ScheduledSeq, on_gpu: bool, lag: usize) -> Option<RowPick> {
        if s.prompt_logprobs {
            return None;
        }
        if !s.sample {
            return Some(RowPick::Skip);
        }
        let Some(&(rid, child)) = self.owners.get(&s.id) else { return Some(RowPick::Skip) };
        let Some(c) = self.requests.get_mut(&rid).map(|r| &mut r.children[child]) else { return Some(RowPick::Skip) };
        let generated = c.generated.len() + lag;
        if on_gpu {
            c.sampler.device_pick(generated)
        } else {
            c.sampler.is_plain_greedy(generated).then_some(RowPick::Argmax)
        }
    }

    /// Streams a sampled token: text, stops, limits; finishes the sequence when it ends.
    fn on_token(&mut self, seq: SeqId, x: Sampled) {
        let Some(&(rid, ci)) = self.owners.get(&seq) else { return };
        let max_model_len = self.max_model_len;
        let Some(r) = self.requests.get_mut(&rid) else { return };
        r.first_token.get_or_insert_with(Instant::now);
        let (max_tokens, min_tokens, prompt_len) = (r.params.max_tokens, r.params.min_tokens, r.prompt.len());
        let is_stop_id = r.stop_ids.contains(&x.token);
        let c = &mut r.children[ci];
        c.generated.push(x.token);
        let mut delta = Delta {
            index: ci,
            token_ids: vec![x.token],
            logprobs: x.logprob.into_iter().collect(),
            ..Delta::default()
        };
        let mut finish = None;
        let mut text_done = false;
        if is_stop_id && c.generated.len() >= min_tokens {
            finish = Some(FinishReason::Stop);
        } else {
            match c.decoder.push(x.token) {
                Ok(Some(piece)) => {
                    let o = c.stops.push(&piece);
                    delta.text = o.text;
                    if o.stopped {
                        finish = Some(FinishReason::Stop);
                        text_done = true;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.fail(rid, e);
                    return;
                }
            }
        }
        if finish.is_none() && (c.generated.len() >= max_tokens || prompt_len + c.generated.len() >= max_model_len) {
            finish = Some(FinishReason::Length);
        }
        if finish.is_some() && !text_done {
            // Release what the decoder and the stop matcher held back, unless it completes a
            // stop string.
            let held = c.decoder.flush().ok().flatten().unwrap_or_default();
            let o = c.stops.push(&held);
            delta.text.push_str(&o.text);
            if o.stopped {
                finish = Some(FinishReason::Stop);
            } else {
                delta.text.push_str(&c.stops.finish());
            }
        }
        delta.finish_reason = finish;
        if finish.is_some() {
            c.done = true;
        }
        let alive = r.tx.send(Event::Delta(delta)).is_ok();
        if !alive {
            // The client went away: stop computing for it at once.
            self.abort(rid);
            return;
        }
        if finish.is_some() {
            self.sched.finish(seq);
            self.owners.remove(&seq);
            if r.children.iter().all(|c| c.done) {
                let end = Instant::now();
                let since = |t: Option<Instant>| t.map_or(end - r.arrival, |t| t - r.arrival);
                let usage = Usage {
                    prompt_tokens: r.prompt.len(),
                    completion_tokens: r.children.iter().map(|c| c.generated.len()).sum(),
                    cached_prompt_tokens: r.cached_prompt_tokens,
                };
                let timings = Timings {
                    queued: since(r.first_scheduled),
                    first_token: since(r.first_token),
                    total: end - r.arrival,
                };
                let _ = r.tx.send(Event::Finished { usage, timings });
                self.requests.remove(&rid);
            }
        }
    }

    /// Fails every request (engine shutdown).
    pub fn fail_all(&mut self, why: &str) {
        let ids: Vec<RequestId> = self.requests.keys().copied().collect();
        for id in ids {
            self.fail(id, Error::Engine(why.to_string()));
        }
    }
}

/// Whether random steps may be sampled on a GPU: yes unless `PROM_DEVICE_SAMPLING=0` (which
/// sends them to the host sampler, for comparison; the tokens are the same).
fn device_sampling() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("PROM_DEVICE_SAMPLING").map_or(true, |v| v != "0"))
}

/// A sequence's token this step (`None` until its host row is sampled).
type Pick = (SeqId, RequestId, Option<Result<Sampled>>);

/// Samples the rows copied to the host (`jobs`: index in `picks`, host row), on the kernels'
/// thread pool when there are several. Each sequence draws from its own sampler and RNG, so
/// what it picks does not depend on which thread takes its row. A pick whose sequence is gone
/// stays `None`.
fn sample_host_rows(
    requests: &mut HashMap<RequestId, ReqState>,
    picks: &mut [Pick],
    jobs: &[(usize, usize)],
    host: &[f32],
    vocab: usize,
) {
    if jobs.is_empty() {
        return;
    }
    let index: HashMap<SeqId, usize> = jobs.iter().enumerate().map(|(j, &(p, _))| (picks[p].0, j)).collect();
    let mut slots: Vec<Option<(&mut Sampler, &[u32])>> = (0..jobs.len()).map(|_| None).collect();
    for r in requests.values_mut() {
        for c in &mut r.children {
            if let Some(&j) = index.get(&c.seq) {
                slots[j] = Some((&mut c.sampler, &c.generated));
            }
        }
    }
    type Cell<'a> = Mutex<(Option<(&'a mut Sampler, &'a [u32])>, Option<Result<Sampled>>)>;
    let cells: Vec<Cell> = slots.into_iter().map(|s| Mutex::new((s, None))).collect();
    let run = |j: usize| {
        // Each cell is locked once, by the unit that owns it: never contended, never poisoned.
        let mut cell = cells[j].lock().unwrap_or_else(|e| e.into_inner());
        let (slot, out) = &mut *cell;
        if let Some((sampler, generated)) = slot {
            let k = jobs[j].1;
            *out = Some(match host.get(k * vocab..(k + 1) * vocab) {
                Some(row) => sampler.sample(row, generated),
                None => Err(Error::Engine(format!("host logits row {k} is missing"))),
            });
        }
    };
    if jobs.len() > 1 {
        prom_models::kernels::parallel_for(jobs.len(), &run);
    } else {
        run(0);
    }
    for (cell, &(p, _)) in cells.into_iter().zip(jobs) {
        picks[p].2 = cell.into_inner().unwrap_or_else(|e| e.into_inner()).1;
    }
}

/// A step whose forward pass and device picks are enqueued ([`Core::execute`]).
struct Launched {
    /// Per logits row: picked on the device (else copied to `host`).
    device_rows: Vec<bool>,
    picks: Option<Picks>,
    host: Vec<f32>,
    host_rows: usize,
    vocab: usize,
}

impl Launched {
    /// Waits for the device's picks.
    fn finish(self) -> Result<StepLogits> {
        let ids = self.picks.map(Picks::wait).transpose()?;
        let mut k = 0;
        let rows = self
            .device_rows
            .iter()
            .enumerate()
            .map(|(i, &on_device)| {
                if on_device {
                    Row::Id(ids.as_ref().and_then(|ids| ids.get(i).copied().flatten()))
                } else {
                    k += 1;
                    Row::Host(k - 1)
                }
            })
            .collect();
        Ok(StepLogits { rows, host: self.host, vocab: self.vocab })
    }
}

/// A launched step not collected yet.
struct InFlight {
    out: SchedulerOutput,
    launched: Launched,
    /// [`Scheduler::advance`] recorded it already: its tokens go to [`Scheduler::fill`].
    advanced: bool,
    /// When it was scheduled, launched, and its forward pass enqueued (for [`StepClock`]).
    t: [Instant; 3],
}

/// A forward pass's logits as the sampling loop reads them, row by row in chunk order.
struct StepLogits {
    rows: Vec<Row>,
    /// The rows copied to the host, `(rows, vocab)` flattened, in order.
    host: Vec<f32>,
    vocab: usize,
}

#[derive(Clone, Copy)]
enum Row {
    /// A plain greedy row's token, chosen where the logits are (`None`: no finite logit).
    Id(Option<u32>),
    /// Row k of [`StepLogits::host`].
    Host(usize),
}

impl StepLogits {
    /// Rows `first..first + n`, when all of them were copied (one sequence's rows always are
    /// together, and in order).
    fn host_rows(&self, first: usize, n: usize) -> Option<&[f32]> {
        match self.rows.get(first) {
            _ if n == 0 => Some(&[]),
            Some(&Row::Host(k)) if matches!(self.rows.get(first + n - 1), Some(&Row::Host(j)) if j == k + n - 1) => {
                self.host.get(k * self.vocab..(k + n) * self.vocab)
            }
            _ => None,
        }
    }
}

/// Logits rows the chunk asks for.
fn rows_of(s: &ScheduledSeq) -> usize {
    match logits_for(s) {
        LogitsFor::All => s.tokens.len(),
        LogitsFor::Last => 1,
        LogitsFor::None => 0,
    }
}

fn logits_for(s: &ScheduledSeq) -> LogitsFor {
    if s.prompt_logprobs {
        LogitsFor::All
    } else if s.sample {
        LogitsFor::Last
    } else {
        LogitsFor::None
    }
}

/// Row `i` of the chunk (position `start + i`) scores the token at position `start + i + 1`;
/// prompt positions are gathered once (a preempted sequence recomputes them: skipped).
fn gather_prompt_logprobs(r: &mut ReqState, s: &ScheduledSeq, rows: &[f32], vocab: usize) -> Result<()> {
    let (Some(lp), Some(top_n)) = (r.prompt_lp.as_mut(), r.params.prompt_logprobs) else { return Ok(()) };
    let prompt_len = r.prompt.len();
    let next = lp.len() - 1; // next position whose successor needs scoring
    let end = (s.start + s.tokens.len()).min(prompt_len - 1);
    if next < end && next >= s.start {
        let targets = &r.prompt[next + 1..end + 1];
        let from = (next - s.start) * vocab;
        let scored = prompt_logprobs(&rows[from..from + targets.len() * vocab], vocab, targets, top_n)?;
        lp.extend(scored.into_iter().map(Some));
    }
    if lp.len() == prompt_len {
        if let Some(all) = r.prompt_lp.take() {
            let _ = r.tx.send(Event::PromptLogprobs(all));
        }
    }
    Ok(())
}
