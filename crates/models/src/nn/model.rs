//! The decoder: embeddings → layers → final norm → head.

mod split;

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};

use super::attention::{Attention, QkvProj};
use super::batch::{BatchMeta, LogitsFor, SeqChunk};
use super::build::Builder;
use super::kv_cache::{KvCache, KvDtype, KvSpec, PagedKvCache};
use super::layer::{DecoderLayer, FeedForward};
use super::linear::Linear;
use super::mla::{Mla, MlaQuery};
use super::mlp::{GateUp, Mlp};
use super::moe::Moe;
use super::norm::Norm;
use super::rope::{Rope, RopeTables};
use crate::config::names::layer as at;
use crate::config::{
    AttentionConfig, GateUpNames, LayerRope, ModelConfig, PositionEncoding, QkNorm, QkvNames, WeightNames,
};
use crate::cuda::{GpuBatch, NextIds};
use crate::loader::{WeightData, Weights};
use crate::parallel::shard::{self, Cut, Heads, Shard};
use crate::parallel::{Communicator, TensorParallel};
use crate::{Error, Result, TensorContext};

pub struct Model {
    cfg: ModelConfig,
    /// (vocab, hidden)
    embed: Embedding,
    embed_norm: Option<Norm>,
    /// (max_positions, hidden), f32 — learned absolute positions (GPT-2).
    position_embed: Option<Tensor>,
    layers: Vec<DecoderLayer>,
    final_norm: Norm,
    lm_head: Linear,
    rope: Option<Rope>,
    local_rope: Option<Rope>,
    /// Storage type of the KV cache (see [`Model::with_kv_dtype`]).
    kv_dtype: KvDtype,
    /// Activations and dense weights (see [`Model::load_as`]).
    dtype: DType,
    device: Device,
    /// This model is one rank of a tensor-parallel world ([`crate::parallel`]).
    tp: Option<TensorParallel>,
    /// Decode steps captured as CUDA graphs (docs/cuda.md).
    graphs: crate::cuda::DecodeGraphs,
    /// Batches of at least this many tokens run split by sequence over the CPU cores
    /// ([`Model::forward_split`]); smaller ones split each matmul by columns.
    cpu_split_min_rows: usize,
    /// Steps run split ([`Model::cpu_split_steps`]).
    split_steps: std::sync::atomic::AtomicU64,
}

/// Default for [`Model::with_cpu_split_min_rows`].
const CPU_SPLIT_MIN_ROWS: usize = 8;

/// The token embedding table. On a single CPU rank a GGUF table stays in its blocks and the
/// looked-up rows are dequantized per step, as llama.cpp's `get_rows` does: a dense f32 copy of
/// Llama 3's 128256-row table is 1 GB at hidden 2048 and 2 GB at 4096, next to a Q4 model's
/// weights of the same order (the tied head reads the same blocks). Row by row the values are
/// the whole table's dequantization, bit for bit (GGUF blocks never cross a row).
enum Embedding {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
}

/// Rows `ids` of a quantized `(vocab, hidden)` table, dequantized → `(ids, hidden)` in `dtype`.
fn gather_rows(q: &QTensor, ids: &[u32], dtype: DType, device: &Device) -> Result<Tensor> {
    let op = || "embedding lookup".to_string();
    let (vocab, hidden) = q.shape().dims2().map_err(|e| Error::Tensor { op: op(), source: e })?;
    let t = q.dtype();
    let row_bytes = hidden / t.block_size() * t.type_size();
    let data = q.data().map_err(|e| Error::Tensor { op: op(), source: e })?;
    let mut rows = Vec::with_capacity(ids.len() * hidden);
    for &id in ids {
        let id = id as usize;
        if id >= vocab {
            return Err(Error::InvalidInput(format!("token id {id} is outside the vocabulary of {vocab}")));
        }
        rows.extend(crate::quant::dequantize(t, &data[id * row_bytes..][..row_bytes], &[hidden])?);
    }
    Tensor::from_vec(rows, (ids.len(), hidden), device)
        .and_then(|x| x.to_dtype(dtype))
        .map_err(|e| Error::Tensor { op: op(), source: e })
}

impl Model {
    /// [`Model::load_as`] in the device's default dtype ([`crate::cuda::default_dtype`]).
    pub fn load(cfg: ModelConfig, names: &WeightNames, weights: &dyn Weights, device: &Device) -> Result<Self> {
        Self::load_as(cfg, names, weights, device, crate::cuda::default_dtype(device))
    }

    /// Loads onto `device`, dense weights and activations in `dtype` (f32 on the CPU; bf16, f16
    /// or f32 on a GPU). Quantized GGUF weights stay quantized; norms, the router of a MoE and
    /// attention softmax still accumulate in f32. Logits come back f32 whatever the dtype.
    pub fn load_as(
        cfg: ModelConfig,
        names: &WeightNames,
        weights: &dyn Weights,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        Self::load_rank(cfg, names, weights, device, dtype, None)
    }

    /// [`Model::load_as`] for one rank of a tensor-parallel world: this rank's slices of the
    /// weights (`crate::parallel::shard`), and `comm` to meet the other ranks.
    pub(crate) fn load_rank(
        cfg: ModelConfig,
        names: &WeightNames,
        weights: &dyn Weights,
        device: &Device,
        dtype: DType,
        comm: Option<Arc<dyn Communicator>>,
    ) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(Error::config("dtype", format!("{dtype:?} is not supported (f32, bf16 or f16)")));
        }
        let cast = AsDtype { inner: weights, dtype };
        let b = Builder { weights: &cast, device };
        let (hidden, vocab) = (cfg.hidden_size, cfg.vocab_size);
        let tp = match comm {
            Some(c) if c.world_size() > 1 => Some(TensorParallel::new(c, &cfg, names)?),
            _ => None,
        };
        let sh = tp.as_ref().map_or(Shard::SINGLE, |t| t.shard());
        let embed_raw = b.raw(&names.embed, &[vocab, hidden])?;
        // On one CPU rank a GGUF table stays quantized (see `Embedding`); the rest is dense.
        let quantized_table = match (&embed_raw, &tp) {
            (WeightData::Quantized(q), None) if device.is_cpu() => Some(Arc::clone(q)),
            _ => None,
        };
        let mut embed = match quantized_table {
            Some(_) => Tensor::zeros(0, dtype, device).ctx("embedding placeholder")?,
            None => embed_raw.to_dense(device)?.to_dtype(dtype).ctx("embedding dtype")?,
        };
        // One row a sequence at generation: no bfloat16 prompt tiles (see `kernels`).
        let lm_head = crate::kernels::without_prompt_tiles(|| -> Result<Linear> {
            Ok(match (&names.lm_head, &tp) {
                (Some(name), _) => {
                    let prefix = name.strip_suffix(".weight").unwrap_or(name);
                    shard::lm_head(&b, tp.as_ref(), prefix, vocab, hidden)?
                }
                (None, Some(t)) => {
                    // Tied: the head is this rank's embedding rows.
                    let (rows, per) = t.vocab_rows();
                    embed = shard::rows_padded(&embed, rows, per, &names.embed)?;
                    Linear::new(QMatMul::Tensor(embed.clone()), None, per)
                }
                // Tied: a quantized embedding stays quantized for the head matmul, as in llama.cpp.
                (None, None) => Linear::new(
                    match embed_raw {
                        WeightData::Quantized(q) => QMatMul::from_arc(q)?,
                        WeightData::Dense(t) => QMatMul::Tensor(t),
                    },
                    None,
                    vocab,
                ),
            })
        })?;
        let position_embed = match (&cfg.position, &names.position_embed) {
            (PositionEncoding::Learned, Some(name)) => Some(b.tensor(name, &[cfg.max_position_embeddings, hidden])?),
            (PositionEncoding::Learned, None) => {
                return Err(Error::config("position_embed", "learned positions need a position embedding tensor"))
            }
            _ => None,
        };
        let embed_norm = match (cfg.embedding_norm, &names.embed_norm) {
            (true, Some(name)) => Some(b.norm(name, hidden, &cfg.norm)?),
            (true, None) => return Err(Error::config("embedding_norm", "enabled but the family maps no tensor")),
            (false, _) => None,
        };
        let alibi = match cfg.position {
            PositionEncoding::Alibi => Some(alibi_slopes(cfg.attention.num_heads)),
            _ => None,
        };
        if let (Some(t), Some(_)) = (&tp, &names.lm_head) {
            let (rows, per) = t.vocab_rows();
            embed = shard::rows_padded(&embed, rows, per, &names.embed)?;
        }
        let embed = match quantized_table {
            Some(q) => Embedding::Quantized(q),
            None => Embedding::Dense(embed),
        };
        let comm = tp.as_ref().map(|t| Arc::clone(t.comm()));
        let layers = (0..cfg.num_layers)
            .map(|i| load_layer(&b, &cfg, names, i, alibi.clone(), sh, comm.clone()))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = b.norm(&names.final_norm, hidden, &cfg.norm)?;
        let rope = match &cfg.position {
            PositionEncoding::Rope(r) => Some(Rope::new(r.clone())),
            _ => None,
        };
        let local_rope = cfg.local_rope.clone().map(Rope::new);
        Ok(Self {
            cfg,
            embed,
            embed_norm,
            position_embed,
            layers,
            final_norm,
            lm_head,
            rope,
            local_rope,
            // The CPU cache is f32 (or f16 by request); a GPU cache holds the activation type.
            kv_dtype: KvDtype::Float(if device.is_cpu() { DType::F32 } else { dtype }),
            dtype,
            device: device.clone(),
            tp,
            graphs: crate::cuda::DecodeGraphs::new(device),
            cpu_split_min_rows: std::env::var("PROM_CPU_SPLIT_MIN_ROWS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(CPU_SPLIT_MIN_ROWS),
            split_steps: Default::default(),
        })
    }

    /// Batches of at least `rows` tokens (and two sequences) run split by sequence over the CPU
    /// pool's threads, each thread a whole forward pass of its part; `usize::MAX` never splits.
    /// The results are the same bits either way. `PROM_CPU_SPLIT_MIN_ROWS` sets the default.
    pub fn with_cpu_split_min_rows(mut self, rows: usize) -> Self {
        self.cpu_split_min_rows = rows;
        self
    }

    /// How many forward passes ran split by sequence over the CPU cores so far.
    pub fn cpu_split_steps(&self) -> u64 {
        self.split_steps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This model's rank in a tensor-parallel world (`None`: the whole model).
    pub fn tensor_parallel(&self) -> Option<&TensorParallel> {
        self.tp.as_ref()
    }

    pub(crate) fn tensor_parallel_mut(&mut self) -> Option<&mut TensorParallel> {
        self.tp.as_mut()
    }

    /// The dtype of activations and dense weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The cache geometry this model needs: per-head K/V, or MLA's latent as one kv head.
    pub fn kv_spec(&self, block_size: usize) -> KvSpec {
        let a = &self.cfg.attention;
        let (kv_heads, k_dim, v_dim) = match &a.mla {
            Some(m) => (1, m.kv_lora_rank + m.qk_rope_head_dim, m.kv_lora_rank),
            None => (self.tp.as_ref().map_or(a.num_kv_heads, |t| t.kv_heads()), a.head_dim, a.head_dim),
        };
        KvSpec {
            num_layers: self.cfg.num_layers,
            kv_heads,
            k_dim,
            v_dim,
            dtype: self.kv_dtype,
            block_size,
            device: self.device.clone(),
        }
    }

    /// A single-sequence cache for [`Model::forward`].
    pub fn new_cache(&self) -> Result<KvCache> {
        KvCache::new(self.kv_spec(16))
    }

    /// Stores K/V as `dtype` (a `DType` or [`KvDtype::Int8`]). With f16 the queries are rounded
    /// to f16 as well, as llama.cpp's CPU attention does with its default f16 cache (it dots f16
    /// q with f16 k).
    pub fn with_kv_dtype(mut self, dtype: impl Into<KvDtype>) -> Self {
        self.kv_dtype = dtype.into();
        self
    }

    pub fn kv_dtype(&self) -> KvDtype {
        self.kv_dtype
    }

    /// Runs one sequence's `tokens` (positions `cache.len()..`) through the model, appending to
    /// `cache`. Returns f32 logits `(n, vocab)`: `n = tokens.len()` for [`LogitsFor::All`], 1 for
    /// `Last`, 0 for `None`.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, which: LogitsFor) -> Result<Tensor> {
        let start = cache.len();
        cache.reserve(start + tokens.len())?;
        let prompt_len = cache.prompt_len();
        let KvCache { pool, table, .. } = cache;
        let chunk = SeqChunk { tokens, start, block_table: table, logits: which, prompt_len };
        let logits = self.forward_batch(&[chunk], pool)?;
        cache.advance(tokens.len());
        Ok(logits)
    }

    /// One forward pass over a batch of sequence chunks (prefill chunks and decode tokens mixed,
    /// each at its own position): every linear layer runs once over all `T` tokens, attention
    /// reads each sequence's K/V through its block table. Returns f32 logits `(rows, vocab)` for
    /// the rows the chunks ask for, in chunk order.
    pub fn forward_batch(&self, chunks: &[SeqChunk], kv: &mut PagedKvCache) -> Result<Tensor> {
        self.forward_batch_next(chunks, kv, None)
    }

    /// [`Model::forward_batch`] with some input ids still on the device: `next` overwrites the
    /// token rows it maps with the previous step's picks (async scheduling; the chunks hold any
    /// valid id there, e.g. 0). Only where [`Model::takes_device_ids`].
    pub fn forward_batch_next(
        &self,
        chunks: &[SeqChunk],
        kv: &mut PagedKvCache,
        next: Option<&NextIds>,
    ) -> Result<Tensor> {
        if next.is_some() && !self.takes_device_ids() {
            return Err(Error::InvalidInput("this model cannot take its input ids from the device".into()));
        }
        let Some(followers) = self.tp.as_ref().and_then(|t| t.followers.as_ref()) else {
            return self.forward_rank(chunks, kv, next);
        };
        // Rank 0 of a split model: bad input is refused here, before any rank starts; the other
        // ranks then run the same step beside this one. A failure past this point is a real one
        // (device, memory): it aborts the world, and the split model stays failed.
        self.batch(chunks, kv)?;
        let sent = followers.send(chunks, kv);
        let logits = if sent == followers.len() { self.forward_rank(chunks, kv, None) } else { Err(followers.gone()) };
        if logits.is_err() {
            self.tp.iter().for_each(|t| t.comm().abort());
        }
        let others = followers.wait(sent);
        let logits = logits?;
        others.map(|_| logits)
    }

    /// The flattened batch, once its chunks are checked against the cache and the model.
    fn batch<'a>(&self, chunks: &[SeqChunk<'a>], kv: &PagedKvCache) -> Result<BatchMeta<'a>> {
        let want = self.kv_spec(kv.spec().block_size);
        if kv.spec() != &want {
            return Err(Error::InvalidInput(format!("KV cache {:?} does not fit this model ({want:?})", kv.spec())));
        }
        let batch = BatchMeta::new(chunks, want.block_size, self.cfg.vocab_size)?;
        if let Some(&b) = chunks.iter().flat_map(|c| c.block_table).find(|&&b| b as usize >= kv.num_blocks()) {
            return Err(Error::InvalidInput(format!("block {b} is outside the KV pool of {} blocks", kv.num_blocks())));
        }
        let max = self.cfg.max_position_embeddings;
        if let (Some(_), Some(&(start, len, _))) = (&self.position_embed, batch.spans.iter().find(|s| s.2 > max)) {
            return Err(Error::InvalidInput(format!(
                "sequence of {} tokens exceeds the model's {max} learned positions",
                start + len
            )));
        }
        Ok(batch)
    }

    /// This rank's part of [`Model::forward_batch`] (the whole of it for an unsplit model).
    pub(crate) fn forward_rank(
        &self,
        chunks: &[SeqChunk],
        kv: &mut PagedKvCache,
        next: Option<&NextIds>,
    ) -> Result<Tensor> {
        let mut batch = self.batch(chunks, kv)?;
        // (Inside a split step's part `kv` is a view, and the part runs whole.)
        if next.is_none() && kv.is_host_pool() {
            if let Some(parts) = self.cpu_split(chunks, &batch, kv.spec().block_size) {
                if let Some(logits) = self.forward_split(chunks, &parts, kv) {
                    return logits;
                }
            }
        }
        if let Some(n) = next {
            if n.map.len() != batch.num_tokens() {
                return Err(Error::InvalidInput(format!(
                    "next-step ids map {} rows of a batch of {}",
                    n.map.len(),
                    batch.num_tokens()
                )));
            }
        }
        if let Some(logits) = self.graphs.decode(self, &mut batch, kv, next)? {
            return Ok(logits);
        }
        batch.gpu = GpuBatch::new(&batch, &self.device)?;
        let tables = |r: &Option<Rope>| r.as_ref().map(|r| r.tables_for(&batch.spans, &self.device)).transpose();
        let ids = Tensor::new(batch.tokens.as_slice(), &self.device).ctx("token ids")?;
        if let Some(n) = next {
            n.write(&ids, self.cfg.vocab_size)?;
        }
        let inputs = StepInputs {
            ids,
            positions: match &self.position_embed {
                Some(_) => Some(Tensor::new(batch.positions.as_slice(), &self.device).ctx("positions")?),
                None => None,
            },
            main: tables(&self.rope)?,
            local: tables(&self.local_rope)?,
        };
        logits_f32(&self.forward_inputs(&inputs, &batch, kv)?)
    }

    /// The device part of a forward pass, from its inputs already on the device → logits
    /// `(rows, vocab)` in the activation dtype. A CUDA graph captures exactly this.
    pub(crate) fn forward_inputs(
        &self,
        inputs: &StepInputs,
        batch: &BatchMeta,
        kv: &mut PagedKvCache,
    ) -> Result<Tensor> {
        if self.device.is_cpu() && !batch.prompt_rows.is_empty() {
            let rows = batch.prompt_rows.clone();
            return crate::kernels::with_prompt_rows(batch.num_tokens(), rows, || self.forward_rows(inputs, batch, kv));
        }
        self.forward_rows(inputs, batch, kv)
    }

    /// [`Model::forward_inputs`], with the batch's prompt rows marked for the CPU matmuls.
    fn forward_rows(&self, inputs: &StepInputs, batch: &BatchMeta, kv: &mut PagedKvCache) -> Result<Tensor> {
        let t = batch.num_tokens();
        // (T, hidden) → (1, T, hidden)
        let mut x = match (&self.embed, &self.tp) {
            (Embedding::Dense(table), Some(tp)) => tp.embed(table, &batch.tokens)?,
            (Embedding::Dense(table), None) => table.index_select(&inputs.ids, 0).ctx("embedding")?,
            (Embedding::Quantized(q), _) => gather_rows(q, &batch.tokens, self.dtype, &self.device)?,
        };
        if let Some(s) = self.cfg.embedding_scale {
            x = (x * s as f64).ctx("embedding scale")?;
        }
        if let (Some(pe), Some(pos)) = (&self.position_embed, &inputs.positions) {
            x = (x + pe.index_select(pos, 0).ctx("positions")?).ctx("add positions")?;
        }
        if let Some(n) = &self.embed_norm {
            x = n.forward(&x)?;
        }
        let mut x = x.unsqueeze(0).ctx("batch dim")?;
        // cos/sin are computed in f32 and cast to the activation dtype, as transformers does.
        let cast = |t: &Option<RopeTables>| -> Result<Option<RopeTables>> {
            let Some(t) = t else { return Ok(None) };
            let cast = |x: &Tensor| x.to_dtype(self.dtype).ctx("rope dtype");
            Ok(Some(RopeTables { cos: cast(&t.cos)?, sin: cast(&t.sin)? }))
        };
        let (main, local) = (cast(&inputs.main)?, cast(&inputs.local)?);
        // Each layer leaves its last residual add to the next one's input norm (`pending`).
        let mut pending = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let rope = match self.cfg.layers[i].rope {
                LayerRope::Main => self.rope.as_ref().zip(main.as_ref()),
                LayerRope::Local => self.local_rope.as_ref().zip(local.as_ref()),
                LayerRope::Off => None,
            };
            (x, pending) = layer.forward(&x, pending.take(), i, rope, batch, kv)?;
        }
        let vocab = self.cfg.vocab_size;
        if batch.logit_rows.is_empty() {
            return Tensor::zeros((0, vocab), self.dtype, &self.device).ctx("no logits");
        }
        let rows = (batch.logit_rows.len() != t)
            .then(|| Tensor::new(batch.logit_rows.as_slice(), &self.device).ctx("logit rows"))
            .transpose()?;
        let logit_rows = |x: Tensor| -> Result<Tensor> {
            let x = x.squeeze(0).ctx("rows")?;
            match &rows {
                Some(r) => x.index_select(r, 0).ctx("logit rows"),
                None => Ok(x),
            }
        };
        let x = logit_rows(x)?;
        let x = match pending {
            Some(h) => self.final_norm.forward_residual(&x, &logit_rows(h)?)?.1,
            None => self.final_norm.forward(&x)?,
        };
        // (The head has no bfloat16 prompt tiles: every row takes the quantized path.)
        let mut logits = self.lm_head.forward(&x)?;
        if let Some(tp) = &self.tp {
            logits = tp.gather_logits(&logits)?;
        }
        if let Some(cap) = self.cfg.final_logit_softcap {
            logits =
                ((logits / cap as f64).and_then(|l| l.tanh()).and_then(|l| l * cap as f64)).ctx("final softcap")?;
        }
        Ok(logits)
    }

    /// Whether [`Model::forward_batch_next`] can take input ids from the device: a dense
    /// embedding table on a GPU, one rank (a quantized table and tensor parallelism read the ids
    /// on the host).
    pub fn takes_device_ids(&self) -> bool {
        self.device.is_cuda() && matches!(self.embed, Embedding::Dense(_)) && self.tp.is_none()
    }

    /// Captures the decode graphs a batch of up to `max_seqs` sequences can use, now rather than
    /// on each size's first decode step (vLLM captures at start-up too): no request pays for a
    /// capture. Each size runs one dummy decode step, token 0 at position 0 of `kv`'s block 0,
    /// which no sequence holds yet (a sequence writes every position of its blocks before it
    /// reads it). Returns the sizes captured; none on the CPU or with graphs off. A failure only
    /// logs a warning: the steps then run as they would have.
    pub fn capture_decode_graphs(&self, kv: &mut PagedKvCache, max_seqs: usize) -> Vec<usize> {
        let table = [0u32];
        for size in self.graphs.wanted(max_seqs) {
            let tokens = vec![[0u32]; size];
            let chunks: Vec<SeqChunk> = tokens
                .iter()
                .map(|t| SeqChunk { tokens: t, start: 0, block_table: &table, logits: LogitsFor::Last, prompt_len: 0 })
                .collect();
            if let Err(e) = self.forward_batch(&chunks, kv) {
                tracing::warn!("capturing the decode graph of {size} sequences at start-up failed: {e}");
                break;
            }
        }
        self.graphs.sizes()
    }

    /// Whether decode steps on a GPU run as CUDA graphs (on by default; `--enforce-eager` turns
    /// them off). No effect on the CPU.
    pub fn set_cuda_graphs(&self, on: bool) {
        self.graphs.set_enabled(on);
    }

    /// The batch sizes whose decode step is captured as a CUDA graph so far (empty on the CPU,
    /// with `--enforce-eager`, or when a capture failed and switched graphs off).
    pub fn cuda_graph_sizes(&self) -> Vec<usize> {
        self.graphs.sizes()
    }

    /// Learned absolute positions (the graphs then upload positions too).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn has_position_embed(&self) -> bool {
        self.position_embed.is_some()
    }

    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn ropes(&self) -> [Option<&Rope>; 2] {
        [self.rope.as_ref(), self.local_rope.as_ref()]
    }
}

/// Logits as f32: a fresh tensor (a vectorized kernel on a GPU; an f32 tensor is returned as
/// it is).
pub(crate) fn logits_f32(x: &Tensor) -> Result<Tensor> {
    match crate::cuda::to_f32(x) {
        Some(y) => y,
        None => x.to_dtype(DType::F32).ctx("logits to f32"),
    }
}

/// A forward pass's inputs on the device: token ids, positions (for learned position
/// embeddings) and the rotary tables in f32.
pub(crate) struct StepInputs {
    pub ids: Tensor,
    pub positions: Option<Tensor>,
    pub main: Option<RopeTables>,
    pub local: Option<RopeTables>,
}

/// The checkpoint's dense tensors in the model's dtype (the loaders widen float tensors to f32;
/// bf16/f16 → f32 → bf16/f16 is exact). Quantized tensors pass through.
struct AsDtype<'a> {
    inner: &'a dyn Weights,
    dtype: DType,
}

impl AsDtype<'_> {
    fn cast(&self, name: &str, w: WeightData) -> Result<WeightData> {
        Ok(match w {
            WeightData::Dense(t) => {
                WeightData::Dense(t.to_dtype(self.dtype).ctx(format!("`{name}` to {:?}", self.dtype))?)
            }
            q => q,
        })
    }
}

impl Weights for AsDtype<'_> {
    fn path(&self) -> &std::path::Path {
        self.inner.path()
    }
    fn path_of(&self, name: &str) -> &std::path::Path {
        self.inner.path_of(name)
    }
    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.inner.shape(name)
    }
    fn dtype_name(&self, name: &str) -> Option<String> {
        self.inner.dtype_name(name)
    }
    fn names(&self) -> Vec<String> {
        self.inner.names()
    }
    fn load(&self, name: &str, device: &Device) -> Result<WeightData> {
        self.cast(name, self.inner.load(name, device)?)
    }
    fn synthesize(&self, name: &str, shape: &[usize], device: &Device) -> Result<Option<WeightData>> {
        self.inner.synthesize(name, shape, device)?.map(|w| self.cast(name, w)).transpose()
    }
    fn int4_linear(&self, name: &str) -> Result<Option<std::sync::Arc<crate::quant::Int4Matrix>>> {
        self.inner.int4_linear(name)
    }
}

/// Column-parallel gate/up and row-parallel down over this rank's intermediate features.
fn load_mlp(b: &Builder, cfg: &ModelConfig, n: &WeightNames, i: usize, sh: Shard) -> Result<Mlp> {
    let (m, hidden, tr) = (&cfg.mlp, cfg.hidden_size, n.transposed);
    let ff = m.intermediate_size;
    let part = sh.even_part(ff, "intermediate_size")?;
    let cols = Cut::Out(vec![part.clone()]);
    let lin = |name: &str, full, cut| shard::linear(b, sh, &at(name, i), full, m.bias, tr, cut);
    let gate_up = match &n.gate_up {
        GateUpNames::Separate { gate, up } => {
            GateUp::Separate { gate: lin(gate, (ff, hidden), cols.clone())?, up: lin(up, (ff, hidden), cols.clone())? }
        }
        GateUpNames::Fused(name) => {
            let halves = vec![part.clone(), ff + part.start..ff + part.end];
            GateUp::Fused(lin(name, (2 * ff, hidden), Cut::Out(halves))?)
        }
        GateUpNames::UpOnly(name) => GateUp::UpOnly(lin(name, (ff, hidden), cols)?),
    };
    Ok(Mlp { gate_up: gate_up.fused(), down: lin(&n.down, (hidden, ff), Cut::In(part))?, activation: m.activation })
}

/// ALiBi slopes for `n` heads (Press et al.; BLOOM's `build_alibi_tensor`): a geometric
/// sequence for the largest power of two ≤ n, then every other slope of the 2× sequence.
fn alibi_slopes(n: usize) -> Vec<f32> {
    let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
    let base = |k: usize| 2f64.powf(-(2f64.powf(-((k as f64).log2() - 3.0))));
    let b = base(p);
    let mut s: Vec<f32> = (1..=p).map(|i| b.powi(i as i32) as f32).collect();
    if p != n {
        let eb = base(2 * p);
        s.extend((0..(n - p).min(p)).map(|j| eb.powi((2 * j + 1) as i32) as f32));
    }
    s
}

fn load_layer(
    b: &Builder,
    cfg: &ModelConfig,
    n: &WeightNames,
    i: usize,
    alibi: Option<Vec<f32>>,
    sh: Shard,
    comm: Option<Arc<dyn Communicator>>,
) -> Result<DecoderLayer> {
    let a = &cfg.attention;
    let hidden = cfg.hidden_size;
    let (q_dim, kv_dim) = (a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim);
    let tr = n.transposed;
    // This rank's heads, as feature ranges of the q and k/v projections.
    let heads = Heads::of(sh, a.num_heads, a.num_kv_heads)?;
    let d = a.head_dim;
    let (qf, kvf) = (heads.q.start * d..heads.q.end * d, heads.kv.start * d..heads.kv.end * d);
    let proj = |name: &str, full, cut| shard::linear(b, sh, &at(name, i), full, a.qkv_bias, tr, cut);
    let qkv = match &n.qkv {
        QkvNames::Separate { q, k, v } => QkvProj::Separate {
            q: proj(q, (q_dim, hidden), Cut::Out(vec![qf.clone()]))?,
            k: proj(k, (kv_dim, hidden), Cut::Out(vec![kvf.clone()]))?,
            v: proj(v, (kv_dim, hidden), Cut::Out(vec![kvf.clone()]))?,
        },
        QkvNames::Fused(name) => {
            // `[q | k | v]`: this rank's rows of each part.
            let shift = |r: &std::ops::Range<usize>, by: usize| r.start + by..r.end + by;
            let parts = vec![qf.clone(), shift(&kvf, q_dim), shift(&kvf, q_dim + kv_dim)];
            QkvProj::Fused(proj(name, (q_dim + 2 * kv_dim, hidden), Cut::Out(parts))?)
        }
        QkvNames::FusedPerHead(name) => {
            QkvProj::Fused(b.linear_per_head_qkv(&at(name, i), a.num_heads, a.head_dim, hidden, a.qkv_bias)?)
        }
        QkvNames::Mla { q, q_a, q_a_norm, q_b, kv_a, kv_a_norm, kv_b } => {
            let m = a.mla.as_ref().ok_or_else(|| Error::config("kv_lora_rank", "MLA tensors need an MLA config"))?;
            let qk = m.qk_nope_head_dim + m.qk_rope_head_dim;
            // DeepSeek builds q_a_layernorm / kv_a_layernorm without passing rms_norm_eps: 1e-6.
            let latent_norm = crate::config::NormConfig { eps: 1e-6, ..cfg.norm.clone() };
            let missing = |what: &str| Error::config(what.to_string(), "MLA query projection not mapped");
            let query = match (m.q_lora_rank, q, q_a, q_a_norm, q_b) {
                (None, Some(q), _, _, _) => {
                    MlaQuery::Direct(b.linear(&at(q, i), a.num_heads * qk, hidden, false, tr)?)
                }
                (Some(r), _, Some(qa), Some(qn), Some(qb)) => MlaQuery::LowRank {
                    a: b.linear(&at(qa, i), r, hidden, a.qkv_bias, tr)?,
                    norm: b.norm(&at(qn, i), r, &latent_norm)?,
                    b: b.linear(&at(qb, i), a.num_heads * qk, r, false, tr)?,
                },
                (None, None, ..) => return Err(missing("q_proj")),
                (Some(_), ..) => return Err(missing("q_a_proj")),
            };
            let kv_b_shape = [a.num_heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank];
            let kv_b = b.tensor(&format!("{}.weight", at(kv_b, i)), &kv_b_shape)?;
            let (w_uk, w_uv_t) = Mla::split_kv_b(&kv_b, a.num_heads, m)?;
            QkvProj::Mla(Box::new(Mla {
                q: query,
                kv_a: b.linear(&at(kv_a, i), m.kv_lora_rank + m.qk_rope_head_dim, hidden, a.qkv_bias, tr)?,
                kv_norm: b.norm(&at(kv_a_norm, i), m.kv_lora_rank, &latent_norm)?,
                w_uk,
                w_uv_t,
                heads: a.num_heads,
                cfg: m.clone(),
            }))
        }
    };
    // The output projection reads `heads * v_dim` features (v_dim = head_dim except in MLA).
    let o_in = match &a.mla {
        Some(m) => a.num_heads * m.v_head_dim,
        None => q_dim,
    };
    let head_norm = |name: &Option<String>, full_dim: usize| -> Result<Option<Norm>> {
        let dim = match a.qk_norm {
            QkNorm::None => return Ok(None),
            QkNorm::PerHead => a.head_dim,
            QkNorm::Full => full_dim,
        };
        match name {
            Some(name) => Ok(Some(b.norm(&at(name, i), dim, &cfg.norm)?)),
            None => Err(Error::config("qk_norm", "enabled but the family maps no q/k norm tensors")),
        }
    };
    let attn = Attention {
        qkv: qkv.fused(),
        o: shard::linear(b, sh, &at(&n.o, i), (hidden, o_in), a.out_bias, tr, Cut::In(qf))?,
        q_norm: head_norm(&n.q_norm, q_dim)?,
        k_norm: head_norm(&n.k_norm, kv_dim)?,
        cfg: AttentionConfig { num_heads: heads.q.len(), num_kv_heads: heads.kv.len(), ..a.clone() },
        sliding_window: cfg.layers[i].sliding_window,
        alibi_slopes: alibi.map(|s| s[heads.q.clone()].to_vec()),
    };
    let ffn = if cfg.layers[i].moe {
        let (mc, mn) = cfg.moe.as_ref().zip(n.moe.as_ref()).ok_or_else(|| {
            Error::config("num_experts", format!("layer {i} is MoE but the family maps no MoE block"))
        })?;
        FeedForward::Moe(Box::new(Moe::load_rank(b, mc, mn, i, hidden, sh)?))
    } else {
        FeedForward::Dense(load_mlp(b, cfg, n, i, sh)?)
    };
    let norm = |name: &Option<String>| -> Result<Option<Norm>> {
        name.as_ref().map(|name| b.norm(&at(name, i), hidden, &cfg.norm)).transpose()
    };
    let mut layer = DecoderLayer {
        attn_norm: norm(&n.attn_norm)?,
        attn,
        post_attn_norm: norm(&n.post_attn_norm)?,
        ffn_norm: norm(&n.ffn_norm)?,
        mlp: ffn,
        post_ffn_norm: norm(&n.post_ffn_norm)?,
        reduce: comm,
    };
    layer.fold_norms()?;
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::alibi_slopes;

    #[test]
    fn alibi_slopes_match_bloom() {
        // transformers' build_alibi_tensor for 4 and 6 heads.
        let s4 = alibi_slopes(4);
        assert_eq!(s4, vec![0.25, 0.0625, 0.015625, 0.00390625]);
        let s6 = alibi_slopes(6);
        assert_eq!(&s6[..4], &s4[..]);
        assert!((s6[4] - 0.5).abs() < 1e-7 && (s6[5] - 0.125).abs() < 1e-7, "{s6:?}");
    }
}
