//! `--load-format dummy` (vLLM's name): a model from `config.json` alone, every weight made up
//! from a seed in the shape the decoder asks for. For speed measurements of shapes nobody has
//! the checkpoint for, or the disk to write it (a Llama-3-70B shape is 141 GB of bf16): the
//! tensors are generated where they live, on the GPU with its generator, so loading costs no
//! file reads.
//!
//! Values: vectors named `…weight` (norm scales) 1, other vectors (biases) 0, matrices uniform in ±1/√(last dim) (the scale
//! of a default-initialised linear layer), so activations stay O(1) through any depth. A tensor's
//! values depend only on the seed and its name, not on the load order or the rank that asks.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::{WeightData, Weights};
use crate::{Error, Result};

pub struct DummyWeights {
    /// The model directory, for messages.
    root: PathBuf,
    seed: u64,
}

impl DummyWeights {
    pub fn new(root: &Path, seed: u64) -> Self {
        Self { root: root.to_path_buf(), seed }
    }

    /// This tensor's own seed: FNV-1a of the name, mixed with the model's seed.
    fn seed_of(&self, name: &str) -> u64 {
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        splitmix(&mut (h ^ self.seed))
    }

    fn make(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        let err = |e| Error::Tensor { op: format!("dummy `{name}`"), source: e };
        if let [n] = shape {
            // The 1-D `….weight`s are norm scales (`ln_f.weight` as much as `model.norm.weight`).
            let fill = if name.ends_with("weight") { 1.0 } else { 0.0 };
            return Tensor::full(fill as f32, *n, device).map_err(err);
        }
        let bound = 1.0 / (shape.last().copied().unwrap_or(1).max(1) as f64).sqrt();
        let seed = self.seed_of(name);
        if device.is_cpu() {
            // candle's CPU generator cannot be seeded; this one is a few lines.
            let mut state = seed;
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| ((splitmix(&mut state) >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) * bound)
                .map(|x| x as f32)
                .collect();
            return Tensor::from_vec(v, shape, device).map_err(err);
        }
        device.set_seed(seed).map_err(err)?;
        Tensor::rand(-bound as f32, bound as f32, shape, device).map_err(err)
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Weights for DummyWeights {
    fn path(&self) -> &Path {
        &self.root
    }

    /// Every optional tensor "exists", so the config alone decides the layout (e.g. an untied
    /// head unless `tie_word_embeddings` says otherwise).
    fn contains(&self, _name: &str) -> bool {
        true
    }

    fn shape(&self, _name: &str) -> Option<Vec<usize>> {
        None
    }

    fn dtype_name(&self, _name: &str) -> Option<String> {
        Some("dummy".into())
    }

    fn names(&self) -> Vec<String> {
        Vec::new()
    }

    fn load(&self, name: &str, _device: &Device) -> Result<WeightData> {
        Err(Error::InvalidInput(format!(
            "`{name}`: a model loaded with --load-format dummy has no stored tensors ({})",
            self.root.display()
        )))
    }

    fn synthesize(&self, name: &str, shape: &[usize], device: &Device) -> Result<Option<WeightData>> {
        let t = self.make(name, shape, device)?;
        debug_assert_eq!(t.dtype(), DType::F32);
        Ok(Some(WeightData::Dense(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_depend_on_seed_and_name_only() {
        let w = DummyWeights::new(Path::new("m"), 7);
        let a = w.make("x.weight", &[3, 64], &Device::Cpu).unwrap();
        let b = w.make("x.weight", &[3, 64], &Device::Cpu).unwrap();
        let c = w.make("y.weight", &[3, 64], &Device::Cpu).unwrap();
        let d = DummyWeights::new(Path::new("m"), 8).make("x.weight", &[3, 64], &Device::Cpu).unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&a), v(&b));
        assert_ne!(v(&a), v(&c));
        assert_ne!(v(&a), v(&d));
        let (lo, hi) = v(&a).iter().fold((0f32, 0f32), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        assert!(lo >= -0.125 && hi <= 0.125 && hi - lo > 0.2, "{lo} {hi}");
        let norm = w.make("model.norm.weight", &[5], &Device::Cpu).unwrap();
        assert_eq!(v(&norm), vec![1.0; 5]);
        assert_eq!(v(&w.make("q.bias", &[2], &Device::Cpu).unwrap()), vec![0.0; 2]);
    }
}
