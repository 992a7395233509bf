//! Finds the AWQ/GPTQ layers of a safetensors checkpoint (`prefix.qweight` with its `qzeros`,
//! `scales` and, for GPTQ, `g_idx`) and reads their format from the tensor shapes, checked
//! against the `quantization_config` of the `config.json` beside the weights when there is one.
//! See [`crate::quant::Int4Matrix`] for the layouts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;

use super::safetensors::SafetensorsWeights;
use super::Weights;
use crate::quant::Int4Format;
use crate::{Error, Result};

/// One AWQ/GPTQ linear: `prefix.{qweight,qzeros,scales[,g_idx]}`.
pub(super) struct Int4Layer {
    pub prefix: String,
    pub format: Int4Format,
    pub group_size: usize,
    /// (out, in)
    pub shape: [usize; 2],
}

/// `quantization_config` as far as the layout depends on it.
#[derive(Default)]
struct QuantConfig {
    method: Option<String>,
    bits: Option<u64>,
    group_size: Option<i64>,
    gptq_v2: bool,
    awq_version: Option<String>,
}

fn quant_config(dir: &Path) -> Result<(PathBuf, QuantConfig)> {
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok((path, QuantConfig::default())) };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(&path, format!("not valid JSON: {e}")))?;
    let q = &v["quantization_config"];
    let s = |k: &str| q[k].as_str().map(|s| s.to_ascii_lowercase());
    let c = QuantConfig {
        method: s("quant_method"),
        bits: q["bits"].as_u64().or(q["w_bit"].as_u64()),
        group_size: q["group_size"].as_i64().or(q["q_group_size"].as_i64()),
        gptq_v2: s("checkpoint_format").as_deref() == Some("gptq_v2"),
        awq_version: s("version"),
    };
    Ok((path, c))
}

pub(super) fn find_layers(w: &SafetensorsWeights, files: &[PathBuf]) -> Result<HashMap<String, Int4Layer>> {
    let prefixes: Vec<String> =
        w.names().into_iter().filter_map(|n| n.strip_suffix(".qweight").map(str::to_string)).collect();
    let mut layers = HashMap::new();
    if prefixes.is_empty() {
        return Ok(layers);
    }
    let dir = files.first().and_then(|f| f.parent()).unwrap_or(Path::new("."));
    let (cfg_path, cfg) = quant_config(dir)?;
    if let Some(b) = cfg.bits.filter(|&b| b != 4) {
        return Err(Error::bad_file(
            &cfg_path,
            format!("quantization_config.bits = {b}: only 4-bit AWQ/GPTQ is supported"),
        ));
    }
    if let Some(v) = cfg.awq_version.as_deref().filter(|v| cfg.method.as_deref() == Some("awq") && *v != "gemm") {
        return Err(Error::bad_file(&cfg_path, format!("AWQ version `{v}`: only the GEMM layout is supported")));
    }
    for prefix in prefixes {
        let bad = |msg: String| Error::bad_file(w.path_of(&format!("{prefix}.qweight")), format!("`{prefix}`: {msg}"));
        let get = |part: &str| -> Result<(Dtype, Vec<usize>)> {
            let name = format!("{prefix}.{part}");
            let (_, dt, shape) = w.bytes(&name).ok_or_else(|| bad(format!("has `qweight` but no `{part}`")))?;
            Ok((dt, shape.to_vec()))
        };
        let (qw_t, qw) = get("qweight")?;
        let (qz_t, qz) = get("qzeros")?;
        let (sc_t, sc) = get("scales")?;
        if !matches!(qw_t, Dtype::I32 | Dtype::U32) || !matches!(qz_t, Dtype::I32 | Dtype::U32) {
            return Err(bad(format!("qweight/qzeros are {qw_t:?}/{qz_t:?}, expected I32 (4-bit packed)")));
        }
        if sc_t != Dtype::F16 {
            return Err(bad(format!("scales are {sc_t:?}, expected F16")));
        }
        let [a, b] = <[usize; 2]>::try_from(qw.as_slice()).map_err(|_| bad(format!("qweight shape {qw:?}")))?;
        let [groups, out] = <[usize; 2]>::try_from(sc.as_slice()).map_err(|_| bad(format!("scales shape {sc:?}")))?;
        let has_g_idx = w.contains(&format!("{prefix}.g_idx"));
        let (format, inp) = if b == out && cfg.method.as_deref() != Some("awq") {
            (Int4Format::Gptq { zeros_stored_minus_one: !cfg.gptq_v2 }, a * 8)
        } else if b * 8 == out && !has_g_idx {
            (Int4Format::Awq, a)
        } else {
            return Err(bad(format!("qweight {qw:?} with scales {sc:?} is neither the AWQ nor the GPTQ 4-bit layout")));
        };
        if qz != [groups, out / 8] || groups == 0 || inp % groups != 0 {
            return Err(bad(format!("qzeros {qz:?} / scales {sc:?} do not match {out} outputs and {inp} inputs")));
        }
        let group_size = inp / groups;
        if let Some(g) = cfg.group_size.filter(|&g| g > 0 && g as usize != group_size) {
            return Err(bad(format!("group size is {group_size} by the tensor shapes, config.json says {g}")));
        }
        layers.insert(format!("{prefix}.weight"), Int4Layer { prefix, format, group_size, shape: [out, inp] });
    }
    Ok(layers)
}
