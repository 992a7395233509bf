//! Lockstep: rank 0's model sends every forward pass to the other ranks' workers before running
//! its own part, then waits for them to finish it.
//!
//! A worker is a thread owning its rank's model and its own KV pool, block for block the same as
//! rank 0's (the block tables come from rank 0's caller and are valid for every rank; each pool
//! holds its rank's KV heads). Only plain data crosses: token ids, positions, block tables.
//! A rank that fails a step aborts its communicator so no rank waits forever in a collective,
//! and the error comes back to rank 0's caller.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::nn::{KvSpec, LogitsFor, Model, PagedKvCache, SeqChunk};
use crate::{Error, Result};

/// A [`SeqChunk`] with its own buffers.
struct Chunk {
    tokens: Vec<u32>,
    start: usize,
    block_table: Vec<u32>,
    logits: LogitsFor,
    prompt_len: usize,
}

enum Msg {
    /// `kv`: rank 0's pool geometry (block size, cache dtype; its own kv heads and device).
    Step {
        chunks: Vec<Chunk>,
        kv: KvSpec,
        num_blocks: usize,
    },
    Stop,
}

struct Worker {
    tx: Sender<Msg>,
    /// Behind a lock only so that a model (which holds its followers) is `Sync`: rank 0 alone
    /// waits on it.
    done: Mutex<Receiver<Result<()>>>,
    thread: Option<JoinHandle<()>>,
}

/// Rank 0's handle on ranks `1..world`.
pub(crate) struct Followers {
    workers: Vec<Worker>,
}

impl Followers {
    /// Moves each model (ranks 1.. in order) onto a worker thread of its own.
    pub(crate) fn start(models: Vec<Model>) -> Result<Self> {
        let mut workers = Vec::with_capacity(models.len());
        for model in models {
            let (tx, rx) = channel();
            let (done_tx, done) = channel();
            let rank = model.tensor_parallel().map_or(0, |t| t.shard().rank);
            let thread = std::thread::Builder::new()
                .name(format!("prom-tp-rank{rank}"))
                .spawn(move || follow(model, rx, done_tx))
                .map_err(|e| Error::InvalidInput(format!("cannot start tensor-parallel rank {rank}: {e}")))?;
            workers.push(Worker { tx, done: Mutex::new(done), thread: Some(thread) });
        }
        Ok(Self { workers })
    }

    /// Ranks `1..world`.
    pub(crate) fn len(&self) -> usize {
        self.workers.len()
    }

    /// Sends the step to the workers (they start at once, and meet rank 0 in its collectives);
    /// returns how many got it (fewer than [`Followers::len`] if a worker has stopped).
    pub(crate) fn send(&self, chunks: &[SeqChunk], kv: &PagedKvCache) -> usize {
        let owned = || {
            chunks
                .iter()
                .map(|c| Chunk {
                    tokens: c.tokens.to_vec(),
                    start: c.start,
                    block_table: c.block_table.to_vec(),
                    logits: c.logits,
                    prompt_len: c.prompt_len,
                })
                .collect()
        };
        let step = || Msg::Step { chunks: owned(), kv: kv.spec().clone(), num_blocks: kv.num_blocks() };
        self.workers.iter().take_while(|w| w.tx.send(step()).is_ok()).count()
    }

    /// Waits until the first `sent` workers have finished the step; the first error, if any.
    pub(crate) fn wait(&self, sent: usize) -> Result<()> {
        let mut first = Ok(());
        for w in &self.workers[..sent] {
            let r = w.done.lock().unwrap_or_else(|e| e.into_inner()).recv().unwrap_or_else(|_| Err(self.gone()));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    pub(crate) fn gone(&self) -> Error {
        Error::InvalidInput("a tensor-parallel rank has stopped".into())
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        for w in &self.workers {
            let _ = w.tx.send(Msg::Stop);
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn follow(mut model: Model, rx: Receiver<Msg>, done: Sender<Result<()>>) {
    let mut kv: Option<PagedKvCache> = None;
    while let Ok(Msg::Step { chunks, kv: lead, num_blocks }) = rx.recv() {
        if model.kv_dtype() != lead.dtype {
            model = model.with_kv_dtype(lead.dtype);
        }
        let r = step(&model, &mut kv, &chunks, lead.block_size, num_blocks);
        if r.is_err() {
            if let Some(tp) = model.tensor_parallel() {
                tp.comm().abort();
            }
        }
        if done.send(r).is_err() {
            return;
        }
    }
}

fn step(
    model: &Model,
    kv: &mut Option<PagedKvCache>,
    chunks: &[Chunk],
    block_size: usize,
    num_blocks: usize,
) -> Result<()> {
    // The pool follows rank 0's: the same block size and at least as many blocks (a grown
    // single-sequence cache keeps its contents; a larger pool than rank 0's is never read past
    // rank 0's block ids).
    let want = model.kv_spec(block_size);
    match kv {
        Some(p) if p.spec() == &want => p.grow(num_blocks)?,
        _ => *kv = Some(PagedKvCache::new(want, num_blocks)?),
    }
    let Some(pool) = kv.as_mut() else { return Ok(()) };
    let chunks: Vec<SeqChunk> = chunks
        .iter()
        .map(|c| SeqChunk {
            tokens: &c.tokens,
            start: c.start,
            block_table: &c.block_table,
            logits: c.logits,
            prompt_len: c.prompt_len,
        })
        .collect();
    model.forward_rank(&chunks, pool, None).map(|_| ())
}
