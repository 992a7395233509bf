//! `prom run`: one prompt in, streamed text out.

use std::io::Write;

use anyhow::Result;
use prom_engine::Generator;
use prom_models::chat::{ChatMessage, ChatTemplate, RenderOptions};

use crate::common::{load_model, tokenizer, ModelArgs, SamplingArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Complete the prompt as plain text instead of wrapping it in the chat template.
    #[arg(long)]
    raw: bool,
    /// System message (chat mode only).
    #[arg(long)]
    system: Option<String>,
    /// Print timing to stderr.
    #[arg(long, short)]
    verbose: bool,
    /// The prompt.
    prompt: String,
}

pub fn run(a: Args) -> Result<()> {
    let m = load_model(&a.model.model, a.model.offline)?;
    let tok = tokenizer(&m)?;
    let (text, add_special) = if a.raw || m.chat_template.is_none() {
        (a.prompt.clone(), true)
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(ChatMessage::system(s.clone()));
        }
        msgs.push(ChatMessage::user(a.prompt.clone()));
        (render(m.chat_template.as_ref(), &msgs)?, false)
    };
    let ids = tok.encode(&text, add_special)?;
    let params = a.sampling.params(&m);
    let mut out = std::io::stdout().lock();
    let g = Generator::new(&m.model, tok).generate(&ids, &params, |piece| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    })?;
    let _ = writeln!(out);
    if a.verbose {
        let n = g.token_ids.len();
        eprintln!(
            "prompt {} tokens in {:.2?} ({:.1} tok/s); generated {n} tokens in {:.2?} ({:.1} tok/s); finish: {:?}",
            g.prompt_tokens,
            g.prefill_time,
            g.prompt_tokens as f64 / g.prefill_time.as_secs_f64(),
            g.decode_time,
            n as f64 / g.decode_time.as_secs_f64().max(1e-9),
            g.finish_reason
        );
    }
    Ok(())
}

/// Renders a conversation with the model's template (the generation prompt appended).
pub fn render(template: Option<&ChatTemplate>, msgs: &[ChatMessage]) -> Result<String> {
    let fallback;
    let t = match template {
        Some(t) => t,
        None => {
            fallback = ChatTemplate::chatml()?;
            &fallback
        }
    };
    let values: Vec<serde_json::Value> = msgs.iter().cloned().map(serde_json::Value::from).collect();
    Ok(t.render(&values, &RenderOptions { add_generation_prompt: true, ..Default::default() })?)
}
