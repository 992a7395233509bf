//! Per-sequence contiguous KV cache, one entry per layer.
//!
//! Storage is preallocated in chunks and grown by doubling, so appending a decode token does
//! not copy the whole history. The paged, shared block pool of the engine replaces this for
//! batched serving; this one serves single-sequence generation and scoring.

use candle_core::{DType, Tensor};

use crate::{Result, TensorContext};

#[derive(Default)]
struct LayerKv {
    /// (b, kv_heads, capacity, head_dim)
    k: Option<Tensor>,
    v: Option<Tensor>,
}

pub struct KvCache {
    layers: Vec<LayerKv>,
    /// Tokens stored (the same for every layer once a forward pass completes).
    len: usize,
    /// Tokens written into the layer currently being filled.
    pending: usize,
    /// Storage type; values are returned as f32 whatever it is.
    dtype: DType,
}

const MIN_CAPACITY: usize = 64;

impl KvCache {
    /// A cache storing K/V as `dtype` (f32, or f16 as llama.cpp does by default for GGUF models).
    pub fn new(num_layers: usize, dtype: DType) -> Self {
        Self { layers: (0..num_layers).map(|_| LayerKv::default()).collect(), len: 0, pending: 0, dtype }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Tokens already cached: the position of the next token.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        for l in &mut self.layers {
            *l = LayerKv::default();
        }
        self.len = 0;
    }

    /// Appends `k`, `v` (b, kv_heads, new, head_dim) for `layer`; returns all cached keys and
    /// values for it, (b, kv_heads, len + new, head_dim).
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let new = k.dim(2).ctx("kv append")?;
        let total = self.len + new;
        let entry = &mut self.layers[layer];
        for (slot, x) in [(&mut entry.k, k), (&mut entry.v, v)] {
            let cap = slot.as_ref().map(|t| t.dim(2)).transpose().ctx("kv cap")?.unwrap_or(0);
            if total > cap {
                let new_cap = total.max(2 * cap).max(MIN_CAPACITY);
                let (b, h, _, d) = x.dims4().ctx("kv dims")?;
                let grown = Tensor::zeros((b, h, new_cap, d), self.dtype, x.device()).ctx("kv alloc")?;
                if let Some(old) = slot.as_ref() {
                    grown.slice_set(&old.narrow(2, 0, self.len).ctx("kv narrow")?, 2, 0).ctx("kv copy")?;
                }
                *slot = Some(grown);
            }
            if let Some(buf) = slot.as_ref() {
                let x = x.to_dtype(self.dtype).and_then(|x| x.contiguous()).ctx("kv store")?;
                buf.slice_set(&x, 2, self.len).ctx("kv write")?;
            }
        }
        self.pending = new;
        let view = |t: &Option<Tensor>| -> Result<Tensor> {
            match t {
                Some(t) => t.narrow(2, 0, total).and_then(|t| t.to_dtype(DType::F32)).ctx("kv view"),
                None => Err(crate::Error::Tensor {
                    op: "kv view".into(),
                    source: candle_core::Error::Msg("empty kv slot".into()),
                }),
            }
        };
        Ok((view(&entry.k)?, view(&entry.v)?))
    }

    /// Called once after every layer has appended `new` tokens.
    pub(crate) fn advance(&mut self) {
        self.len += self.pending;
        self.pending = 0;
    }

    /// Bytes held by the cache tensors.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| [&l.k, &l.v])
            .flatten()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }
}
