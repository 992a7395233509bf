//! `prom score`: the parity hook. Teacher-forces a token sequence and prints, as JSON, each
//! next token's logprob, the top-k alternatives at every position and the last position's full
//! logits, so any other implementation can be compared number for number.

use anyhow::{bail, Context, Result};
use candle_core::D;
use prom_models::nn::LogitsFor;
use serde_json::json;

use crate::common::{load_model, tokenizer};

#[derive(clap::Args)]
pub struct Args {
    /// Model: a .gguf file, an HF directory, `org/name`, or the default model's name.
    model: String,
    /// Text to tokenize (with the model's BOS/EOS settings).
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    text: Option<String>,
    /// Comma-separated token ids.
    #[arg(long, value_delimiter = ',')]
    ids: Option<Vec<u32>>,
    /// Alternatives to list per position.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Leave out the last position's full logits.
    #[arg(long)]
    no_logits: bool,
    #[arg(long)]
    offline: bool,
}

pub fn run(a: Args) -> Result<()> {
    let m = load_model(&a.model, a.offline)?;
    let ids = match (&a.ids, &a.text) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => tokenizer(&m)?.encode(text, true)?,
        (None, None) => bail!("give --text or --ids"),
    };
    if ids.is_empty() {
        bail!("nothing to score: the token sequence is empty");
    }
    let mut cache = m.model.new_cache()?;
    let logits = m.model.forward(&ids, &mut cache, LogitsFor::All)?;
    let logprobs = candle_nn::ops::log_softmax(&logits, D::Minus1).context("log_softmax")?;
    let rows: Vec<Vec<f32>> = logprobs.to_vec2()?;
    let piece = |id: u32| m.tokenizer.as_ref().and_then(|t| t.id_to_token(id));
    let positions: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut order: Vec<u32> = (0..row.len() as u32).collect();
            order.sort_unstable_by(|&x, &y| row[y as usize].total_cmp(&row[x as usize]).then(x.cmp(&y)));
            let top: Vec<_> = order
                .iter()
                .take(a.top_k)
                .map(|&t| json!({ "id": t, "token": piece(t), "logprob": row[t as usize] }))
                .collect();
            let next = ids.get(i + 1).copied();
            json!({
                "position": i,
                "token": ids[i],
                "next_token": next,
                "next_logprob": next.map(|n| row[n as usize]),
                "next_rank": next.map(|n| order.iter().position(|&t| t == n)),
                "top": top,
            })
        })
        .collect();
    let scored: Vec<f64> = positions.iter().filter_map(|p| p["next_logprob"].as_f64()).collect();
    let nll = -scored.iter().sum::<f64>() / scored.len().max(1) as f64;
    let last: Vec<f32> = logits.get(ids.len() - 1)?.to_vec1()?;
    let out = json!({
        "model": a.model,
        "token_ids": ids,
        "tokens": ids.iter().map(|&i| piece(i)).collect::<Vec<_>>(),
        "mean_nll": if scored.is_empty() { None } else { Some(nll) },
        "perplexity": if scored.is_empty() { None } else { Some(nll.exp()) },
        "positions": positions,
        "last_logits": if a.no_logits { None } else { Some(last) },
    });
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
