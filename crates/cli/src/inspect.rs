//! `prom inspect`: what a model is, from its files.

use std::collections::BTreeMap;

use anyhow::Result;
use prom_models::config::PositionEncoding;
use serde_json::json;

use crate::common::load_model;

#[derive(clap::Args)]
pub struct Args {
    /// Model: a .gguf file, an HF directory, `org/name`, or the default model's name.
    model: String,
    #[arg(long)]
    offline: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `blk.12.attn_q.weight` → `blk.*.attn_q.weight`, so per-layer tensors group together.
fn group_name(name: &str) -> String {
    name.split('.')
        .map(|part| if !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()) { "*" } else { part })
        .collect::<Vec<_>>()
        .join(".")
}

pub fn run(a: Args) -> Result<()> {
    let m = load_model(&a.model, a.offline)?;
    let cfg = m.model.config();
    let w = &m.weights;
    // group → (storage type → tensor count), parameters
    let mut groups: BTreeMap<String, (BTreeMap<String, usize>, u64)> = BTreeMap::new();
    let mut params = 0u64;
    for name in w.names() {
        let n: u64 = w.shape(&name).map(|s| s.iter().map(|&d| d as u64).product()).unwrap_or(0);
        params += n;
        let g = groups.entry(group_name(&name)).or_default();
        *g.0.entry(w.dtype_name(&name).unwrap_or_default()).or_default() += 1;
        g.1 += n;
    }
    let file_bytes: u64 = match &m.files {
        prom_models::source::ModelFiles::Gguf { path } => std::fs::metadata(path)?.len(),
        prom_models::source::ModelFiles::HfDir { weights, .. } => {
            weights.iter().map(|p| std::fs::metadata(p).map(|m| m.len())).sum::<Result<u64, _>>()?
        }
    };
    let a_cfg = &cfg.attention;
    // Our KV cache holds f32 K and V for every layer (MLA: the latent and the rope key).
    let kv_bytes_per_token = cfg.kv_bytes_per_token(4);
    let kv_without_mla = cfg.kv_bytes_per_token_without_mla(4);
    let active = params.saturating_sub(cfg.inactive_expert_params());
    let rope = match &cfg.position {
        PositionEncoding::Rope(r) => {
            json!({ "theta": r.theta, "rotary_dim": r.rotary_dim, "scaling": format!("{:?}", r.scaling) })
        }
        PositionEncoding::Learned => json!("learned absolute"),
        PositionEncoding::Alibi => json!("alibi"),
        PositionEncoding::None => json!("none"),
    };
    let report = json!({
        "model": a.model,
        "family": cfg.family,
        "parameters": params,
        "active_parameters": active,
        "moe": cfg.moe.as_ref().map(|m| json!({ "experts": m.num_experts, "top_k": m.top_k,
            "shared_experts": m.shared_experts.is_some(), "layers": cfg.layers.iter().filter(|l| l.moe).count() })),
        "mla": cfg.attention.mla.as_ref().map(|m| json!({ "kv_lora_rank": m.kv_lora_rank, "q_lora_rank": m.q_lora_rank,
            "rope_dim": m.qk_rope_head_dim, "kv_cache_bytes_per_token_without_mla": kv_without_mla })),
        "layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "attention": { "heads": a_cfg.num_heads, "kv_heads": a_cfg.num_kv_heads, "head_dim": a_cfg.head_dim,
            "kind": if a_cfg.mla.is_some() { "MLA" } else if a_cfg.num_kv_heads == a_cfg.num_heads { "MHA" } else if a_cfg.num_kv_heads == 1 { "MQA" } else { "GQA" },
            "sliding_window_layers": cfg.layers.iter().filter(|l| l.sliding_window.is_some()).count() },
        "mlp": { "intermediate_size": cfg.mlp.intermediate_size, "activation": format!("{:?}", cfg.mlp.activation), "gated": cfg.mlp.gated },
        "position": rope,
        "vocab_size": cfg.vocab_size,
        "context_length": cfg.max_position_embeddings,
        "tied_embeddings": cfg.tie_word_embeddings,
        "file_bytes": file_bytes,
        "kv_cache_bytes_per_token": kv_bytes_per_token,
        "chat_template": m.chat_template.is_some(),
        "tensor_groups": groups.iter().map(|(g, (types, n))| json!({ "name": g, "types": types, "parameters": n })).collect::<Vec<_>>(),
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("model            {}", a.model);
    println!("family           {}", cfg.family);
    println!("parameters       {} ({:.1} M)", params, params as f64 / 1e6);
    if let Some(m) = &cfg.moe {
        println!(
            "active params    {} ({:.1} M): {} of {} experts per token in {} MoE layers{}",
            active,
            active as f64 / 1e6,
            m.top_k,
            m.num_experts,
            cfg.layers.iter().filter(|l| l.moe).count(),
            if m.shared_experts.is_some() { ", plus shared experts" } else { "" }
        );
    }
    println!(
        "layers           {} × hidden {}, mlp {} ({:?}{})",
        cfg.num_layers,
        cfg.hidden_size,
        cfg.mlp.intermediate_size,
        cfg.mlp.activation,
        if cfg.mlp.gated { ", gated" } else { "" }
    );
    println!(
        "attention        {} heads, {} kv heads ({}), head_dim {}",
        a_cfg.num_heads,
        a_cfg.num_kv_heads,
        report["attention"]["kind"].as_str().unwrap_or(""),
        a_cfg.head_dim
    );
    println!("position         {}", report["position"]);
    println!("vocab            {}", cfg.vocab_size);
    println!("context length   {}", cfg.max_position_embeddings);
    println!("file size        {:.1} MB", file_bytes as f64 / 1e6);
    match kv_without_mla {
        Some(full) => println!(
            "KV cache         {} bytes/token (f32; MLA latent — full K/V would be {} bytes, {:.1}x more)",
            kv_bytes_per_token,
            full,
            full as f64 / kv_bytes_per_token.max(1) as f64
        ),
        None => println!("KV cache         {} bytes/token (f32)", kv_bytes_per_token),
    }
    println!("chat template    {}", if m.chat_template.is_some() { "yes" } else { "no" });
    println!("tensors:");
    for (g, (types, n)) in &groups {
        let types: Vec<String> = types.iter().map(|(t, c)| format!("{t}×{c}")).collect();
        println!("  {g:<40} {:<16} {n}", types.join(" "));
    }
    Ok(())
}
