//! Bad model input — truncated or corrupt safetensors and GGUF files, wrong or missing tensors,
//! unknown architectures, out-of-range config values — gives an error that names the file and
//! the problem, never a panic.
//!
//! Each case damages a copy of a golden fixture (or a tiny llama GGUF written here) in a temp
//! dir and loads it the way the CLI does: `source::resolve` then `load::load`. Every damaged
//! input has an undamaged twin that loads, so a case fails only because of its damage.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use prom_models::nn::LogitsFor;
use prom_models::source::{resolve, ResolveOptions};
use serde_json::{json, Map, Value as Json};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Harness

fn golden(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden").join(case)
}

/// A temp copy of a golden fixture's model files: `config.json`, weights, shard index.
fn copy_case(case: &str) -> TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(golden(case)).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        if name == "config.json" || name.starts_with("model") {
            fs::copy(&p, tmp.path().join(name)).unwrap();
        }
    }
    tmp
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// Resolves and loads `path` as the CLI does (offline, no hub cache).
fn try_load(path: &Path) -> std::thread::Result<prom_models::Result<prom_models::load::LoadedModel>> {
    let opts = ResolveOptions {
        offline: true,
        hub_cache: Some("/nonexistent-hub-cache".into()),
        model_cache: Some("/nonexistent-model-cache".into()),
        progress: false,
        ..Default::default()
    };
    let spec = path.to_str().unwrap().to_owned();
    catch_unwind(AssertUnwindSafe(move || {
        let files = resolve(&spec, &opts)?;
        prom_models::load::load(&files, &Device::Cpu)
    }))
}

/// The load of `path` fails (without panicking); returns the error's Display.
fn load_err(path: &Path) -> String {
    match try_load(path) {
        Ok(Ok(_)) => panic!("{} loaded; expected an error", path.display()),
        Ok(Err(e)) => e.to_string(),
        Err(p) => panic!("loading {} panicked: {}", path.display(), panic_message(&*p)),
    }
}

/// Loading `path` fails with a message that names `file` and contains each of `needles`.
#[track_caller]
fn assert_err(path: &Path, file: &Path, needles: &[&str]) -> String {
    let err = load_err(path);
    let f = file.display().to_string();
    assert!(err.contains(&f), "error does not name {f}:\n  {err}");
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}:\n  {err}");
    }
    err
}

/// The undamaged twin: loads and runs one token.
#[track_caller]
fn assert_loads(path: &Path) {
    let m = match try_load(path) {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => panic!("undamaged {} failed to load: {e}", path.display()),
        Err(p) => panic!("undamaged {} panicked: {}", path.display(), panic_message(&*p)),
    };
    let mut cache = m.model.new_cache().unwrap();
    let logits = m.model.forward(&[1], &mut cache, LogitsFor::Last).unwrap();
    assert_eq!(logits.dims(), &[1, m.model.config().vocab_size]);
}

// ---------------------------------------------------------------------------------------------
// safetensors

fn read_tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn write_tensors(path: &Path, tensors: &HashMap<String, Tensor>) {
    candle_core::safetensors::save(tensors, path).unwrap();
}

/// `llama_gqa` with `edit` applied to its tensors.
fn llama_with_tensors(edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> (TempDir, PathBuf) {
    let tmp = copy_case("llama_gqa");
    let st = tmp.path().join("model.safetensors");
    let mut t = read_tensors(&st);
    edit(&mut t);
    write_tensors(&st, &t);
    (tmp, st)
}

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

fn header_len(path: &Path) -> u64 {
    let bytes = fs::read(path).unwrap();
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

#[test]
fn safetensors_fixtures_load_undamaged() {
    for case in ["llama_gqa", "gpt2", "qwen3", "llama_sharded"] {
        let tmp = copy_case(case);
        assert_loads(tmp.path());
    }
    let (tmp, _) = llama_with_tensors(|_| {});
    assert_loads(tmp.path());
}

#[test]
fn safetensors_truncated_mid_data() {
    let tmp = copy_case("llama_gqa");
    let st = tmp.path().join("model.safetensors");
    let len = fs::metadata(&st).unwrap().len();
    truncate(&st, len - 1000);
    assert_err(tmp.path(), &st, &["truncated", &format!("{}", len - 1000)]);
}

#[test]
fn safetensors_truncated_mid_header() {
    let tmp = copy_case("llama_gqa");
    let st = tmp.path().join("model.safetensors");
    let n = header_len(&st);
    truncate(&st, 8 + n / 2);
    assert_err(tmp.path(), &st, &["truncated", &n.to_string()]);
    // Not even the 8-byte length prefix.
    truncate(&st, 5);
    assert_err(tmp.path(), &st, &["not a valid safetensors file", "5 bytes"]);
    truncate(&st, 0);
    assert_err(tmp.path(), &st, &["not a valid safetensors file", "empty"]);
}

#[test]
fn safetensors_garbage_bytes() {
    let tmp = copy_case("llama_gqa");
    let st = tmp.path().join("model.safetensors");
    // A fixed pseudo-random stream (xorshift), so a failure reproduces.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(&st, &bytes).unwrap();
    assert_err(tmp.path(), &st, &["not a valid safetensors file"]);
    // A plausible header length followed by bytes that are not JSON.
    let mut b = 64u64.to_le_bytes().to_vec();
    b.extend_from_slice(&bytes[..200]);
    fs::write(&st, &b).unwrap();
    assert_err(tmp.path(), &st, &["not a valid safetensors file", "header"]);
}

#[test]
fn safetensors_header_length_beyond_file() {
    let tmp = copy_case("llama_gqa");
    let st = tmp.path().join("model.safetensors");
    let mut bytes = fs::read(&st).unwrap();
    let claimed = bytes.len() as u64 * 4;
    bytes[..8].copy_from_slice(&claimed.to_le_bytes());
    fs::write(&st, &bytes).unwrap();
    assert_err(tmp.path(), &st, &["not a valid safetensors file", &claimed.to_string()]);
    // A length that does not fit any file (u64::MAX).
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    fs::write(&st, &bytes).unwrap();
    assert_err(tmp.path(), &st, &["not a valid safetensors file", &u64::MAX.to_string()]);
}

#[test]
fn safetensors_trailing_bytes() {
    let tmp = copy_case("llama_gqa");
    let st = tmp.path().join("model.safetensors");
    let mut f = fs::OpenOptions::new().append(true).open(&st).unwrap();
    f.write_all(&[0u8; 10]).unwrap();
    drop(f);
    assert_err(tmp.path(), &st, &["not a valid safetensors file", "10"]);
}

#[test]
fn safetensors_wrong_shape() {
    let name = "model.layers.0.self_attn.q_proj.weight";
    let (tmp, st) = llama_with_tensors(|t| {
        let q = &t[name];
        let extra = Tensor::zeros((1, 64), DType::F32, &Device::Cpu).unwrap();
        let grown = Tensor::cat(&[q, &extra], 0).unwrap();
        t.insert(name.into(), grown);
    });
    assert_err(tmp.path(), &st, &[name, "[64, 64]", "[65, 64]"]);
}

#[test]
fn safetensors_missing_tensor() {
    let name = "model.layers.1.mlp.down_proj.weight";
    let (tmp, st) = llama_with_tensors(|t| {
        t.remove(name).unwrap();
    });
    assert_err(tmp.path(), &st, &[name, "not found"]);
}

#[test]
fn safetensors_unsupported_dtype() {
    let name = "model.layers.0.self_attn.k_proj.weight";
    for dtype in [DType::U8, DType::I64, DType::U32] {
        let (tmp, st) = llama_with_tensors(|t| {
            let k = t[name].to_dtype(dtype).unwrap();
            t.insert(name.into(), k);
        });
        let err = assert_err(tmp.path(), &st, &[name, "dtype"]);
        assert!(err.contains("F32"), "error does not list the supported dtypes: {err}");
    }
}

#[test]
fn safetensors_sharded_missing_shard() {
    let tmp = copy_case("llama_sharded");
    let gone = tmp.path().join("model-00004-of-00007.safetensors");
    fs::remove_file(&gone).unwrap();
    let index = tmp.path().join("model.safetensors.index.json");
    assert_err(tmp.path(), &index, &["missing shard", &gone.display().to_string()]);
}

#[test]
fn safetensors_sharded_bad_shard_is_named() {
    // The shape error names the shard holding the tensor, not only the directory.
    let tmp = copy_case("llama_sharded");
    let shard = tmp.path().join("model-00001-of-00007.safetensors");
    let name = "model.layers.0.self_attn.k_proj.weight";
    let mut t = read_tensors(&shard);
    let k = t[name].narrow(0, 0, 16).unwrap();
    t.insert(name.into(), k);
    write_tensors(&shard, &t);
    assert_err(tmp.path(), &shard, &[name, "[32, 64]", "[16, 64]"]);

    // A truncated shard is named by its own path.
    let tmp = copy_case("llama_sharded");
    let shard = tmp.path().join("model-00005-of-00007.safetensors");
    truncate(&shard, fs::metadata(&shard).unwrap().len() - 4);
    assert_err(tmp.path(), &shard, &["truncated"]);
}

#[test]
fn safetensors_tensor_in_two_shards() {
    let tmp = copy_case("llama_sharded");
    let (a, b) =
        (tmp.path().join("model-00001-of-00007.safetensors"), tmp.path().join("model-00002-of-00007.safetensors"));
    let name = "model.embed_tokens.weight";
    let mut tb = read_tensors(&b);
    tb.insert(name.into(), read_tensors(&a)[name].clone());
    write_tensors(&b, &tb);
    assert_err(tmp.path(), &b, &[name, "also appears in", &a.display().to_string()]);
}

// ---------------------------------------------------------------------------------------------
// config.json

/// `case` with `edit` applied to its `config.json`; returns (dir, config path).
fn with_config(case: &str, edit: impl FnOnce(&mut Map<String, Json>)) -> (TempDir, PathBuf) {
    let tmp = copy_case(case);
    let path = tmp.path().join("config.json");
    let mut cfg: Json = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(cfg.as_object_mut().unwrap());
    fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    (tmp, path)
}

/// Setting `key` to `value` in `case`'s config fails, naming config.json and each of `needles`.
#[track_caller]
fn config_err(case: &str, key: &str, value: Option<Json>, needles: &[&str]) -> String {
    let (tmp, cfg) = with_config(case, |c| match value {
        Some(v) => {
            c.insert(key.into(), v);
        }
        None => {
            c.remove(key);
        }
    });
    assert_err(tmp.path(), &cfg, needles)
}

#[test]
fn config_invalid_json() {
    let tmp = copy_case("llama_gqa");
    let cfg = tmp.path().join("config.json");
    fs::write(&cfg, "{\"model_type\": \"llama\", \"hidden_size\": 64,").unwrap();
    assert_err(tmp.path(), &cfg, &["invalid config.json", "line 1"]);
    fs::write(&cfg, "").unwrap();
    assert_err(tmp.path(), &cfg, &["invalid config.json"]);
    fs::write(&cfg, "[1, 2, 3]").unwrap();
    assert_err(tmp.path(), &cfg, &["invalid config.json", "not a JSON object"]);
}

#[test]
fn config_unknown_model_type() {
    config_err(
        "llama_gqa",
        "model_type",
        Some(json!("mamba-xyz")),
        &["mamba-xyz", "unsupported architecture", "llama"],
    );
    // No model_type and an architecture class that names no known family.
    let (tmp, cfg) = with_config("llama_gqa", |c| {
        c.remove("model_type");
        c.insert("architectures".into(), json!(["MambaXyzForCausalLM"]));
    });
    assert_err(tmp.path(), &cfg, &["model_type", "missing"]);
}

#[test]
fn config_missing_required_fields() {
    for field in ["hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "intermediate_size"] {
        config_err("llama_gqa", field, None, &[field, "missing"]);
    }
    for field in ["n_embd", "n_head", "n_layer", "n_positions"] {
        config_err("gpt2", field, None, &[field, "missing"]);
    }
}

#[test]
fn config_zero_counts() {
    for field in [
        "num_attention_heads",
        "num_key_value_heads",
        "num_hidden_layers",
        "hidden_size",
        "vocab_size",
        "intermediate_size",
        "head_dim",
        "max_position_embeddings",
    ] {
        config_err("llama_gqa", field, Some(json!(0)), &[field, "0"]);
    }
    config_err("gpt2", "n_head", Some(json!(0)), &["n_head", "0"]);
}

#[test]
fn config_kv_heads_not_dividing_heads() {
    config_err(
        "llama_gqa",
        "num_key_value_heads",
        Some(json!(3)),
        &["num_key_value_heads", "3", "does not divide", "4"],
    );
    config_err("llama_gqa", "num_key_value_heads", Some(json!(8)), &["num_key_value_heads", "8"]);
}

#[test]
fn config_wrong_types_and_negative_values() {
    config_err("llama_gqa", "hidden_size", Some(json!(-4)), &["hidden_size", "-4"]);
    config_err("llama_gqa", "num_hidden_layers", Some(json!(2.5)), &["num_hidden_layers", "2.5"]);
    config_err("llama_gqa", "num_attention_heads", Some(json!("4")), &["num_attention_heads", "\"4\""]);
    config_err("llama_gqa", "tie_word_embeddings", Some(json!("yes")), &["tie_word_embeddings"]);
    config_err("llama_gqa", "eos_token_id", Some(json!(-1)), &["eos_token_id"]);
    config_err("llama_gqa", "hidden_act", Some(json!("swoosh")), &["hidden_act", "swoosh"]);
    config_err("llama_gqa", "layer_types", Some(json!(["full_attention"])), &["layer_types", "1 entries for 2 layers"]);
    config_err("llama_gqa", "layer_types", Some(json!(["full_attention", "mamba"])), &["layer_types", "mamba"]);
}

#[test]
fn config_out_of_range_floats() {
    config_err("llama_gqa", "rms_norm_eps", Some(json!(0)), &["rms_norm_eps", "0"]);
    config_err("llama_gqa", "rms_norm_eps", Some(json!(-1e-5)), &["rms_norm_eps", "-0.00001"]);
    config_err("llama_gqa", "rms_norm_eps", Some(json!(3.0)), &["rms_norm_eps", "3"]);
    config_err("gpt2", "layer_norm_epsilon", Some(json!(0)), &["layer_norm_epsilon", "0"]);
    config_err("llama_gqa", "partial_rotary_factor", Some(json!(0)), &["partial_rotary_factor", "0"]);
    config_err("llama_gqa", "partial_rotary_factor", Some(json!(1.5)), &["partial_rotary_factor", "1.5"]);
    config_err("gemma2", "final_logit_softcapping", Some(json!(-30.0)), &["softcapping", "-30"]);
    let (tmp, cfg) = with_config("llama_gqa", |c| {
        c.insert("rope_parameters".into(), json!({"rope_type": "default", "rope_theta": -10000.0}));
    });
    assert_err(tmp.path(), &cfg, &["rope_theta", "-10000"]);
}

#[test]
fn config_absurd_sizes() {
    // Too large to be a model: refused before any arithmetic on them can overflow.
    let huge = json!(1u64 << 62);
    for field in
        ["head_dim", "hidden_size", "intermediate_size", "vocab_size", "num_attention_heads", "num_hidden_layers"]
    {
        config_err("llama_gqa", field, Some(huge.clone()), &[field, &(1u64 << 62).to_string()]);
    }
    config_err("gpt2", "n_embd", Some(huge.clone()), &[&(1u64 << 62).to_string(), "too large"]);
    config_err("llama_gqa", "max_position_embeddings", Some(json!(u64::MAX)), &["max_position_embeddings"]);
    // Merely too large for this checkpoint: a shape or missing-tensor error naming the tensor
    // and the weights file.
    weights_err("llama_gqa", "vocab_size", json!(1_000_000), &["model.embed_tokens.weight", "[1000000, 64]"]);
    weights_err("llama_gqa", "num_hidden_layers", json!(1000), &["model.layers.2.", "not found"]);
}

/// Setting `key` to `value` makes the config disagree with the weights: the error names
/// `model.safetensors` and each of `needles`.
#[track_caller]
fn weights_err(case: &str, key: &str, value: Json, needles: &[&str]) {
    let (tmp, _) = with_config(case, |c| {
        c.insert(key.into(), value);
    });
    assert_err(tmp.path(), &tmp.path().join("model.safetensors"), needles);
}

#[test]
fn config_head_dim_inconsistent_with_weights() {
    weights_err("llama_gqa", "head_dim", json!(8), &["model.layers.0.self_attn.q_proj.weight", "[32, 64]", "[64, 64]"]);
    // Without head_dim, hidden_size / heads is used: 64 / 8 = 8 per head, 8 heads → q is 64 rows
    // (fits) but k is 2 * 8 = 16 rows (checkpoint has 32).
    let (tmp, _) = with_config("llama_gqa", |c| {
        c.remove("head_dim");
        c.insert("num_attention_heads".into(), json!(8));
    });
    let st = tmp.path().join("model.safetensors");
    assert_err(tmp.path(), &st, &["model.layers.0.self_attn.k_proj.weight", "[16, 64]", "[32, 64]"]);
}

#[test]
fn config_rope_scaling_errors() {
    let rope = |params: Json| {
        with_config("llama_gqa", move |c| {
            c.insert("rope_parameters".into(), params);
        })
    };
    let cases: Vec<(Json, Vec<&str>)> = vec![
        (json!({"rope_type": "wobbly", "rope_theta": 10000.0}), vec!["rope_type", "wobbly", "yarn"]),
        (json!({"rope_type": "yarn"}), vec!["original_max_position_embeddings", "yarn"]),
        (json!({"rope_type": "yarn", "factor": 0.0, "original_max_position_embeddings": 32}), vec!["factor", "0"]),
        (
            json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 0}),
            vec!["original_max_position_embeddings", "0"],
        ),
        (json!({"rope_type": "linear"}), vec!["rope_scaling.factor", "linear"]),
        (json!({"rope_type": "linear", "factor": -2.0}), vec!["factor", "-2"]),
        (json!({"rope_type": "dynamic", "factor": 0.0}), vec!["factor", "0"]),
        (json!({"rope_type": "llama3", "factor": 8.0}), vec!["low_freq_factor", "llama3"]),
        (
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 32}),
            vec!["high_freq_factor", "must be > low_freq_factor"],
        ),
        (json!({"rope_type": "longrope", "original_max_position_embeddings": 32}), vec!["short_factor", "longrope"]),
        (
            // head_dim 16 → 8 factors needed.
            json!({"rope_type": "longrope", "original_max_position_embeddings": 32,
                   "short_factor": [1.0, 1.0, 1.0], "long_factor": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]}),
            vec!["short_factor", "8 entries, got 3"],
        ),
        (
            json!({"rope_type": "longrope", "original_max_position_embeddings": 32,
                   "short_factor": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], "long_factor": []}),
            vec!["long_factor", "8 entries, got 0"],
        ),
        (json!({"rope_type": 7}), vec!["rope_parameters", "7"]),
    ];
    for (params, needles) in cases {
        let (tmp, cfg) = rope(params);
        assert_err(tmp.path(), &cfg, &needles);
    }
    // The transformers 4.x spelling: `rope_scaling` with `type`.
    let (tmp, cfg) = with_config("llama_gqa", |c| {
        c.remove("rope_parameters");
        c.insert("rope_scaling".into(), json!({"type": "wobbly", "factor": 2.0}));
    });
    assert_err(tmp.path(), &cfg, &["rope_type", "wobbly"]);
}

#[test]
fn config_sliding_window_zero() {
    config_err("mistral_swa", "sliding_window", Some(json!(0)), &["sliding_window", "0"]);
    // Same for a llama checkpoint relabelled as mistral (which always uses the window).
    let (tmp, cfg) = with_config("llama_gqa", |c| {
        c.insert("model_type".into(), json!("mistral"));
        c.insert("sliding_window".into(), json!(0));
    });
    assert_err(tmp.path(), &cfg, &["sliding_window", "0"]);
    config_err("mistral_swa", "sliding_window", Some(json!(-8)), &["sliding_window", "-8"]);
}

// ---------------------------------------------------------------------------------------------
// GGUF

const HIDDEN: usize = 32;
const HEADS: u32 = 2;
const KV_HEADS: u32 = 1;
const HEAD_DIM: usize = 16;
const FF: usize = 64;
const LAYERS: usize = 2;

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String((*s).to_owned())).collect())
}

/// A tiny llama-arch GGUF (two layers, GQA, tied head, byte-level BPE vocab of 8) as
/// metadata + f32 tensors, to be damaged and written.
struct TinyGguf {
    meta: Vec<(String, Value)>,
    tensors: Vec<(String, Tensor)>,
}

impl TinyGguf {
    fn llama() -> Self {
        let tokens = ["<|endoftext|>", "a", "b", "c", "ab", "abc", "Ġ", "Ġab"];
        let vocab = tokens.len();
        let meta: Vec<(&str, Value)> = vec![
            ("general.architecture", Value::String("llama".into())),
            ("general.name", Value::String("tiny".into())),
            ("llama.embedding_length", Value::U32(HIDDEN as u32)),
            ("llama.block_count", Value::U32(LAYERS as u32)),
            ("llama.attention.head_count", Value::U32(HEADS)),
            ("llama.attention.head_count_kv", Value::U32(KV_HEADS)),
            ("llama.feed_forward_length", Value::U32(FF as u32)),
            ("llama.context_length", Value::U32(64)),
            ("llama.rope.freq_base", Value::F32(10000.0)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
            ("tokenizer.ggml.tokens", strings(&tokens)),
            ("tokenizer.ggml.token_type", Value::Array([3, 1, 1, 1, 1, 1, 1, 1].map(Value::I32).to_vec())),
            ("tokenizer.ggml.merges", strings(&["a b", "ab c", "Ġ ab"])),
            ("tokenizer.ggml.bos_token_id", Value::U32(0)),
            ("tokenizer.ggml.eos_token_id", Value::U32(0)),
        ];
        let kv = KV_HEADS as usize * HEAD_DIM;
        let q = HEADS as usize * HEAD_DIM;
        // Small deterministic values; the numbers do not matter, only that they are finite.
        let t = |dims: &[usize]| {
            let n: usize = dims.iter().product();
            Tensor::arange(0u32, n as u32, &Device::Cpu)
                .and_then(|x| x.to_dtype(DType::F32))
                .and_then(|x| (x * 0.37).and_then(|x| x.sin()).and_then(|x| x * 0.05))
                .and_then(|x| x.reshape(dims))
                .unwrap()
        };
        let ones = |n: usize| Tensor::ones(n, DType::F32, &Device::Cpu).unwrap();
        let mut tensors = vec![
            ("token_embd.weight".to_owned(), t(&[vocab, HIDDEN])),
            ("output_norm.weight".to_owned(), ones(HIDDEN)),
        ];
        for i in 0..LAYERS {
            let l = |s: &str| format!("blk.{i}.{s}.weight");
            tensors.extend([
                (l("attn_norm"), ones(HIDDEN)),
                (l("attn_q"), t(&[q, HIDDEN])),
                (l("attn_k"), t(&[kv, HIDDEN])),
                (l("attn_v"), t(&[kv, HIDDEN])),
                (l("attn_output"), t(&[HIDDEN, q])),
                (l("ffn_norm"), ones(HIDDEN)),
                (l("ffn_gate"), t(&[FF, HIDDEN])),
                (l("ffn_up"), t(&[FF, HIDDEN])),
                (l("ffn_down"), t(&[HIDDEN, FF])),
            ]);
        }
        Self { meta: meta.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), tensors }
    }

    /// Sets (or with `None` removes) a metadata key.
    fn meta(mut self, key: &str, v: Option<Value>) -> Self {
        self.meta.retain(|(k, _)| k != key);
        if let Some(v) = v {
            self.meta.push((key.to_owned(), v));
        }
        self
    }

    /// Replaces (or with `None` removes) a tensor.
    fn tensor(mut self, name: &str, t: Option<Tensor>) -> Self {
        self.tensors.retain(|(n, _)| n != name);
        if let Some(t) = t {
            self.tensors.push((name.to_owned(), t));
        }
        self
    }

    fn write(&self, path: &Path) {
        self.write_as(path, GgmlDType::F32)
    }

    /// Writes with 2-D weights stored as `dtype` (1-D norms stay f32, as llama.cpp does).
    fn write_as(&self, path: &Path, dtype: GgmlDType) {
        let qs: Vec<(String, QTensor)> = self
            .tensors
            .iter()
            .map(|(n, t)| {
                let d = if t.rank() == 2 { dtype } else { GgmlDType::F32 };
                (n.clone(), QTensor::quantize(t, d).unwrap())
            })
            .collect();
        let meta: Vec<(&str, &Value)> = self.meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> = qs.iter().map(|(n, q)| (n.as_str(), q)).collect();
        let mut f = fs::File::create(path).unwrap();
        gguf_file::write(&mut f, &meta, &tensors).unwrap();
    }
}

/// Writes `g` to `<tmp>/tiny.gguf`.
fn gguf(g: &TinyGguf) -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny.gguf");
    g.write(&path);
    (tmp, path)
}

#[test]
fn gguf_tiny_loads_undamaged() {
    let (_tmp, path) = gguf(&TinyGguf::llama());
    assert_loads(&path);
    // Q8_0 weights (block size 32 = HIDDEN) load too.
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q8.gguf");
    TinyGguf::llama().write_as(&q, GgmlDType::Q8_0);
    assert_loads(&q);
}

#[test]
fn gguf_empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("zero.gguf");
    fs::write(&path, b"").unwrap();
    assert_err(&path, &path, &["not a valid GGUF file", "empty"]);
}

#[test]
fn gguf_wrong_magic() {
    let (_tmp, path) = gguf(&TinyGguf::llama());
    let mut bytes = fs::read(&path).unwrap();
    bytes[..4].copy_from_slice(b"GGML");
    fs::write(&path, &bytes).unwrap();
    assert_err(&path, &path, &["not a valid GGUF file", "magic"]);
    // A safetensors file renamed to .gguf.
    fs::copy(golden("llama_gqa").join("model.safetensors"), &path).unwrap();
    assert_err(&path, &path, &["not a valid GGUF file"]);
    // Right magic, unknown version.
    bytes[..4].copy_from_slice(b"GGUF");
    bytes[4..8].copy_from_slice(&9u32.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    assert_err(&path, &path, &["not a valid GGUF file", "9"]);
}

#[test]
fn gguf_truncated_in_metadata() {
    let (_tmp, path) = gguf(&TinyGguf::llama());
    let data_start = gguf_file::Content::read(&mut fs::File::open(&path).unwrap()).unwrap().tensor_data_offset;
    // Cut inside the header, inside the metadata and inside the tensor directory.
    for len in [6u64, 20, 60, 200, 400, 700, data_start - 40] {
        truncate(&path, len);
        let err = assert_err(&path, &path, &["not a valid GGUF file"]);
        assert!(err.contains("truncated") || err.contains("remaining"), "cut at {len}: {err}");
        TinyGguf::llama().write(&path);
    }
}

#[test]
fn gguf_truncated_in_tensor_data() {
    let (_tmp, path) = gguf(&TinyGguf::llama());
    let len = fs::metadata(&path).unwrap().len();
    truncate(&path, len - 100);
    assert_err(&path, &path, &["truncated", "tensor `"]);
    // Only the directory survives: every tensor points past the end.
    let data_start = gguf_file::Content::read(&mut fs::File::open(&path).unwrap()).unwrap().tensor_data_offset;
    truncate(&path, data_start);
    assert_err(&path, &path, &["truncated"]);
}

#[test]
fn gguf_unknown_architecture() {
    let (_tmp, path) = gguf(&TinyGguf::llama().meta("general.architecture", Some(Value::String("mamba-xyz".into()))));
    assert_err(&path, &path, &["mamba-xyz", "unsupported architecture", "llama"]);
    let (_tmp, path) = gguf(&TinyGguf::llama().meta("general.architecture", None));
    assert_err(&path, &path, &["general.architecture", "missing"]);
    let (_tmp, path) = gguf(&TinyGguf::llama().meta("general.architecture", Some(Value::U32(1))));
    assert_err(&path, &path, &["general.architecture", "expected a string"]);
}

#[test]
fn gguf_missing_required_metadata() {
    for key in
        ["llama.block_count", "llama.embedding_length", "llama.attention.head_count", "llama.feed_forward_length"]
    {
        let (_tmp, path) = gguf(&TinyGguf::llama().meta(key, None));
        assert_err(&path, &path, &[key, "missing"]);
    }
    // Neither a vocab size nor a token list.
    let (_tmp, path) = gguf(&TinyGguf::llama().meta("tokenizer.ggml.tokens", None));
    assert_err(&path, &path, &["tokenizer.ggml.tokens"]);
}

#[test]
fn gguf_metadata_wrong_type() {
    let (_tmp, path) = gguf(&TinyGguf::llama().meta("llama.embedding_length", Some(Value::String("32".into()))));
    assert_err(&path, &path, &["llama.embedding_length", "expected an integer", "String"]);
    let (_tmp, path) = gguf(&TinyGguf::llama().meta("llama.block_count", Some(Value::I32(-2))));
    assert_err(&path, &path, &["llama.block_count", "-2"]);
    let (_tmp, path) = gguf(&TinyGguf::llama().meta("llama.rope.freq_base", Some(Value::Bool(true))));
    assert_err(&path, &path, &["llama.rope.freq_base"]);
    let (_tmp, path) = gguf(&TinyGguf::llama().meta("tokenizer.ggml.bos_token_id", Some(Value::F32(1.0))));
    assert_err(&path, &path, &["tokenizer.ggml.bos_token_id"]);
}

#[test]
fn gguf_out_of_range_metadata() {
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("llama.attention.head_count", Value::U32(0), vec!["llama.attention.head_count", "0"]),
        ("llama.attention.head_count_kv", Value::U32(0), vec!["num_key_value_heads", "0"]),
        ("llama.attention.head_count_kv", Value::U32(3), vec!["num_key_value_heads", "3", "does not divide"]),
        ("llama.block_count", Value::U32(0), vec!["num_hidden_layers", "0"]),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(0.0), vec!["rms_norm_eps", "0"]),
        ("llama.rope.freq_base", Value::F32(-1.0), vec!["rope_theta", "-1"]),
        ("llama.rope.dimension_count", Value::U32(7), vec!["rotary dim 7"]),
        ("llama.rope.scaling.type", Value::String("wobbly".into()), vec!["llama.rope.scaling.type", "wobbly"]),
        ("llama.attention.key_length", Value::U64(1 << 62), vec!["head_dim", &"4611686018427387904"]),
        ("llama.embedding_length", Value::U64(u64::MAX), vec!["hidden_size"]),
        ("llama.attention.sliding_window", Value::U32(0), vec!["sliding_window", "0"]),
    ];
    for (key, v, needles) in cases {
        let (_tmp, path) = gguf(&TinyGguf::llama().meta(key, Some(v)));
        assert_err(&path, &path, &needles);
    }
}

#[test]
fn gguf_wrong_tensor_shape() {
    let t = Tensor::zeros((HIDDEN + 1, HIDDEN), DType::F32, &Device::Cpu).unwrap();
    let (_tmp, path) = gguf(&TinyGguf::llama().tensor("blk.1.attn_q.weight", Some(t)));
    assert_err(&path, &path, &["blk.1.attn_q.weight", "[32, 32]", "[33, 32]"]);
    // An embedding with fewer rows than the vocabulary.
    let t = Tensor::zeros((4, HIDDEN), DType::F32, &Device::Cpu).unwrap();
    let (_tmp, path) = gguf(&TinyGguf::llama().tensor("token_embd.weight", Some(t)));
    assert_err(&path, &path, &["token_embd.weight", "[8, 32]", "[4, 32]"]);
}

#[test]
fn gguf_missing_tensor() {
    for name in ["blk.1.ffn_down.weight", "token_embd.weight", "output_norm.weight", "blk.0.attn_k.weight"] {
        let (_tmp, path) = gguf(&TinyGguf::llama().tensor(name, None));
        assert_err(&path, &path, &[name, "not found"]);
    }
}

#[test]
fn gguf_rope_freqs_wrong_length() {
    // llama3-style rope factors: one per rotary frequency (8 here).
    let f = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
    let (_tmp, path) = gguf(&TinyGguf::llama().tensor("rope_freqs.weight", Some(f)));
    assert_err(&path, &path, &["short_factor", "8 entries, got 3"]);
}

#[test]
fn gguf_zero_alignment() {
    // candle's reader divides by `general.alignment`; 0 must be an error, not a division panic.
    let (_tmp, path) = gguf(&TinyGguf::llama().meta("general.alignment", Some(Value::U32(0))));
    assert_err(&path, &path, &["not a valid GGUF file", "general.alignment"]);
}

#[test]
fn gguf_tensor_dims_overflow() {
    // A directory entry whose byte size overflows: patch the one dim of `rope_freqs.weight`
    // (read by the config mapping without a shape check) to u64::MAX in the written file.
    let f = Tensor::ones(8, DType::F32, &Device::Cpu).unwrap();
    let (_tmp, path) = gguf(&TinyGguf::llama().tensor("rope_freqs.weight", Some(f)));
    let mut bytes = fs::read(&path).unwrap();
    let name = b"rope_freqs.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    // After the name: n_dims (u32) = 1, then dim 0 (u64).
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 1);
    bytes[at + 4..at + 12].copy_from_slice(&u64::MAX.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    assert_err(&path, &path, &["rope_freqs.weight"]);
}

#[test]
fn missing_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let gone = tmp.path().join("no-such-model");
    let err = load_err(&gone);
    assert!(err.contains(&gone.display().to_string()) && err.contains("no such file"), "{err}");
    let gone = tmp.path().join("no-such.gguf");
    let err = load_err(&gone);
    assert!(err.contains(&gone.display().to_string()), "{err}");
    // A directory without config.json or .gguf.
    let err = load_err(tmp.path());
    assert!(err.contains(&tmp.path().display().to_string()) && err.contains("config.json"), "{err}");
    // An HF directory without weights.
    let d = copy_case("llama_gqa");
    fs::remove_file(d.path().join("model.safetensors")).unwrap();
    let err = load_err(d.path());
    assert!(err.contains("model.safetensors") && err.contains(&d.path().display().to_string()), "{err}");
}
