//! `prom run`: one prompt in, streamed text out.

use std::io::Write;

use anyhow::Result;
use prom_models::chat::{ChatMessage, ChatTemplate, RenderOptions};

use crate::common::{generate, start_engine, EngineArgs, ModelArgs, SamplingArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    engine: EngineArgs,
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
    let m = a.model.load()?;
    let params = a.sampling.params(&m);
    let raw = a.raw || m.chat_template.is_none();
    let s = start_engine(m, &a.engine)?;
    let (text, add_special) = if raw {
        (a.prompt.clone(), true)
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(ChatMessage::system(s.clone()));
        }
        msgs.push(ChatMessage::user(a.prompt.clone()));
        (render(s.chat_template.as_ref(), &msgs)?, false)
    };
    let ids = s.tokenizer.encode(&text, add_special)?;
    let mut out = std::io::stdout().lock();
    let g = generate(&s.engine, ids, params, |piece| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    })?;
    let _ = writeln!(out);
    if a.verbose {
        let (p, n, t) = (g.usage.prompt_tokens, g.tokens, g.timings);
        let decode = t.total.saturating_sub(t.first_token);
        eprintln!(
            "prompt {p} tokens in {:.2?} ({:.1} tok/s); generated {n} tokens in {decode:.2?} ({:.1} tok/s); finish: {:?}",
            t.first_token,
            p as f64 / t.first_token.as_secs_f64().max(1e-9),
            n.saturating_sub(1) as f64 / decode.as_secs_f64().max(1e-9),
            g.finish
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
