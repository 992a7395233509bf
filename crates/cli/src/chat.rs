//! `prom chat`: an interactive conversation. Each turn re-renders the whole history with the
//! model's chat template (as transformers and llama.cpp do); `/reset` clears it, `/exit` quits.

use std::io::{BufRead, Write};

use anyhow::Result;
use prom_engine::FinishReason;
use prom_models::chat::ChatMessage;

use crate::common::{generate, start_engine, EngineArgs, ModelArgs, SamplingArgs};
use crate::run::render;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// System message for the conversation.
    #[arg(long)]
    system: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    let m = a.model.load()?;
    if m.chat_template.is_none() {
        eprintln!("note: the model has no chat template; using ChatML");
    }
    let params = a.sampling.params(&m);
    let s = start_engine(m, &a.engine)?;
    let start: Vec<ChatMessage> = a.system.iter().map(|s| ChatMessage::system(s.clone())).collect();
    let mut history = start.clone();
    eprintln!("chatting with {} — /reset clears the history, /exit or Ctrl-D quits", a.model.model);
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        eprint!("> ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history = start.clone();
                eprintln!("(history cleared)");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::user(line));
        // Prefix caching makes each turn re-use the blocks of the conversation so far.
        let prompt = s.tokenizer.encode(&render(s.chat_template.as_ref(), &history)?, false)?;
        let g = match generate(&s.engine, prompt, params.clone(), |piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }) {
            Ok(g) => g,
            Err(e) => {
                // A too-long conversation is not fatal: say so and let the user reset.
                history.pop();
                eprintln!("\nerror: {e} (use /reset to start over)");
                continue;
            }
        };
        writeln!(out)?;
        if g.finish == Some(FinishReason::Length) {
            eprintln!("(reply cut at {} tokens)", g.tokens);
        }
        history.push(ChatMessage::assistant(g.text));
    }
    Ok(())
}
