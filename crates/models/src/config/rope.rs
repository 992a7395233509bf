//! Rotary position embedding parameters and their inverse frequencies, for every scaling scheme
//! HF transformers ships (`modeling_rope_utils.py`): default, linear, dynamic NTK, YaRN, llama3
//! and longrope.
//!
//! Dynamic NTK and longrope depend on the sequence length: `inv_freq(seq_len)` is evaluated with
//! the total length after the current forward (past + new tokens), as transformers does; keys
//! already in the KV cache keep the rotation they were stored with.

use serde::Serialize;

use crate::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct RopeConfig {
    pub theta: f64,
    /// Leading dimensions of each head that rotate (`head_dim * partial_rotary_factor`).
    pub rotary_dim: usize,
    /// GPT-J style pairs `(x0, x1), (x2, x3)...` (llama.cpp's `NORM`, used by llama-arch GGUFs whose
    /// q/k rows were permuted at conversion) instead of NeoX halves `(x_i, x_{i+d/2})`.
    pub interleaved: bool,
    pub scaling: RopeScaling,
}

#[derive(Debug, Clone, Serialize)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    /// NTK-aware base change once the sequence outgrows `max_position_embeddings`.
    DynamicNtk {
        factor: f64,
        max_position_embeddings: usize,
    },
    Yarn {
        factor: f64,
        original_max_position_embeddings: usize,
        beta_fast: f64,
        beta_slow: f64,
        attention_factor: f64,
        truncate: bool,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    LongRope {
        short_factor: Vec<f64>,
        long_factor: Vec<f64>,
        original_max_position_embeddings: usize,
        attention_factor: f64,
    },
}

impl RopeConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.theta > 0.0 && self.theta.is_finite()) {
            return Err(Error::config("rope_theta", format!("must be > 0, got {}", self.theta)));
        }
        let positive = |field: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(Error::config(format!("rope_scaling.{field}"), format!("must be > 0, got {v}")))
            }
        };
        match &self.scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } | RopeScaling::DynamicNtk { factor, .. } => positive("factor", *factor)?,
            RopeScaling::Yarn { factor, original_max_position_embeddings, .. } => {
                positive("factor", *factor)?;
                positive("original_max_position_embeddings", *original_max_position_embeddings as f64)?;
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                positive("factor", *factor)?;
                positive("low_freq_factor", *low_freq_factor)?;
                positive("original_max_position_embeddings", *original_max_position_embeddings as f64)?;
                if high_freq_factor <= low_freq_factor {
                    return Err(Error::config(
                        "rope_scaling.high_freq_factor",
                        format!("must be > low_freq_factor {low_freq_factor}, got {high_freq_factor}"),
                    ));
                }
            }
            RopeScaling::LongRope { short_factor, long_factor, .. } => {
                let half = self.rotary_dim / 2;
                for (field, f) in [("short_factor", short_factor), ("long_factor", long_factor)] {
                    if f.len() != half {
                        return Err(Error::config(
                            format!("rope_scaling.{field}"),
                            format!("needs rotary_dim/2 = {half} entries, got {}", f.len()),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Multiplier applied to cos/sin (YaRN's mscale, longrope's attention factor).
    pub fn attention_factor(&self) -> f64 {
        match &self.scaling {
            RopeScaling::Yarn { attention_factor, .. } | RopeScaling::LongRope { attention_factor, .. } => {
                *attention_factor
            }
            _ => 1.0,
        }
    }

    /// Whether `inv_freq` changes with the sequence length.
    pub fn is_dynamic(&self) -> bool {
        matches!(self.scaling, RopeScaling::DynamicNtk { .. } | RopeScaling::LongRope { .. })
    }

    /// Inverse frequencies (`rotary_dim / 2` of them) in effect when the sequence is `seq_len`
    /// tokens long. Computed in f32 like transformers, so cos/sin match it bit for bit where possible.
    pub fn inv_freq(&self, seq_len: usize) -> Vec<f32> {
        let dim = self.rotary_dim;
        let base_freqs = |base: f64| -> Vec<f32> {
            (0..dim)
                .step_by(2)
                .map(|i| {
                    let exp = i as f32 / dim as f32;
                    1.0 / (base as f32).powf(exp)
                })
                .collect()
        };
        match &self.scaling {
            RopeScaling::None => base_freqs(self.theta),
            RopeScaling::Linear { factor } => base_freqs(self.theta).into_iter().map(|f| f / *factor as f32).collect(),
            RopeScaling::DynamicNtk { factor, max_position_embeddings } => {
                let max = *max_position_embeddings as f64;
                let seq = (seq_len as f64).max(max);
                let d = dim as f64;
                let base = self.theta * ((factor * seq / max) - (factor - 1.0)).powf(d / (d - 2.0));
                base_freqs(base)
            }
            RopeScaling::Yarn { factor, original_max_position_embeddings, beta_fast, beta_slow, truncate, .. } => {
                let d = dim as f64;
                let base = self.theta;
                let orig = *original_max_position_embeddings as f64;
                let correction_dim =
                    |rot: f64| (d * (orig / (rot * 2.0 * std::f64::consts::PI)).ln()) / (2.0 * base.ln());
                let (mut low, mut high) = (correction_dim(*beta_fast), correction_dim(*beta_slow));
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
                if low == high {
                    high += 0.001;
                }
                base_freqs(base)
                    .into_iter()
                    .enumerate()
                    .map(|(i, extrap)| {
                        let ramp = ((i as f32 - low as f32) / (high as f32 - low as f32)).clamp(0.0, 1.0);
                        let extrap_factor = 1.0 - ramp;
                        let interp = extrap / *factor as f32;
                        interp * (1.0 - extrap_factor) + extrap * extrap_factor
                    })
                    .collect()
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let old = *original_max_position_embeddings as f32;
                let (factor, lo, hi) = (*factor as f32, *low_freq_factor as f32, *high_freq_factor as f32);
                let (low_wavelen, high_wavelen) = (old / lo, old / hi);
                base_freqs(self.theta)
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        let medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
                        if medium {
                            let smooth = (old / wavelen - lo) / (hi - lo);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
            RopeScaling::LongRope { short_factor, long_factor, original_max_position_embeddings, .. } => {
                let ext = if seq_len > *original_max_position_embeddings { long_factor } else { short_factor };
                (0..dim)
                    .step_by(2)
                    .zip(ext)
                    .map(|(i, e)| {
                        let shape = i as f32 / dim as f32;
                        1.0 / (*e as f32 * (self.theta as f32).powf(shape))
                    })
                    .collect()
            }
        }
    }
}

/// Raw HF rope settings: `rope_scaling` (transformers 4.x checkpoints) or `rope_parameters`
/// (transformers 5.x), both objects with a `rope_type` (or legacy `type`) key.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct HfRopeParams {
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    pub rope_theta: Option<f64>,
    pub factor: Option<f64>,
    pub original_max_position_embeddings: Option<usize>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub beta_fast: Option<f64>,
    pub beta_slow: Option<f64>,
    pub attention_factor: Option<f64>,
    pub mscale: Option<f64>,
    pub mscale_all_dim: Option<f64>,
    pub truncate: Option<bool>,
    pub short_factor: Option<Vec<f64>>,
    pub long_factor: Option<Vec<f64>>,
    pub partial_rotary_factor: Option<f64>,
}

impl HfRopeParams {
    /// Resolves the scaling scheme. `max_position_embeddings` and `original_max` (a top-level
    /// config field in Phi-3) fill in what the params leave out, as transformers does.
    pub fn scaling(&self, max_position_embeddings: usize, original_max: Option<usize>) -> Result<RopeScaling> {
        let kind = self.rope_type.as_deref().unwrap_or("default");
        let need = |v: Option<f64>, field: &str| {
            v.ok_or_else(|| Error::config(format!("rope_scaling.{field}"), format!("required for rope_type `{kind}`")))
        };
        let orig = self.original_max_position_embeddings.or(original_max);
        let need_orig = || {
            orig.ok_or_else(|| {
                Error::config(
                    "rope_scaling.original_max_position_embeddings",
                    format!("required for rope_type `{kind}`"),
                )
            })
        };
        let get_mscale = |scale: f64, m: f64| if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 };
        Ok(match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor: need(self.factor, "factor")? },
            "dynamic" => RopeScaling::DynamicNtk { factor: need(self.factor, "factor")?, max_position_embeddings },
            "yarn" => {
                let original = need_orig()?;
                let factor = match self.factor {
                    Some(f) => f,
                    None => max_position_embeddings as f64 / original as f64,
                };
                let attention_factor = match (self.attention_factor, self.mscale, self.mscale_all_dim) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(mad)) if m != 0.0 && mad != 0.0 => {
                        get_mscale(factor, m) / get_mscale(factor, mad)
                    }
                    _ => get_mscale(factor, 1.0),
                };
                RopeScaling::Yarn {
                    factor,
                    original_max_position_embeddings: original,
                    beta_fast: self.beta_fast.unwrap_or(32.0),
                    beta_slow: self.beta_slow.unwrap_or(1.0),
                    attention_factor,
                    truncate: self.truncate.unwrap_or(true),
                }
            }
            "llama3" => RopeScaling::Llama3 {
                factor: need(self.factor, "factor")?,
                low_freq_factor: need(self.low_freq_factor, "low_freq_factor")?,
                high_freq_factor: need(self.high_freq_factor, "high_freq_factor")?,
                original_max_position_embeddings: need_orig()?,
            },
            "longrope" | "su" => {
                let original = need_orig()?;
                let factor = self.factor.unwrap_or(max_position_embeddings as f64 / original as f64);
                let attention_factor = self.attention_factor.unwrap_or(if factor <= 1.0 {
                    1.0
                } else {
                    (1.0 + factor.ln() / (original as f64).ln()).sqrt()
                });
                let list = |v: &Option<Vec<f64>>, field: &str| {
                    v.clone().ok_or_else(|| Error::config(format!("rope_scaling.{field}"), "required for longrope"))
                };
                RopeScaling::LongRope {
                    short_factor: list(&self.short_factor, "short_factor")?,
                    long_factor: list(&self.long_factor, "long_factor")?,
                    original_max_position_embeddings: original,
                    attention_factor,
                }
            }
            other => {
                return Err(Error::config(
                    "rope_scaling.rope_type",
                    format!("unsupported `{other}` (supported: default, linear, dynamic, yarn, llama3, longrope)"),
                ))
            }
        })
    }
}
