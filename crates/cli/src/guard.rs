//! `prom guard`: the guardrails (crate `prom-guard`) on files or stdin — scan for PII, secrets
//! and prompt injection, redact with the configured operators, decrypt `encrypt` tokens.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use prom_guard::{CheckKind, Guard, RailsConfig, Signals};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print findings (byte span, type, score, check, recognizer), one per line or as JSON.
    Scan {
        /// Print one JSON object: {"findings": [...]}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        rails: RailsArg,
        /// A file, or `-` for standard input.
        input: String,
    },
    /// Print the text with every finding rewritten by its operator (default `<TYPE>`).
    Redact {
        #[command(flatten)]
        rails: RailsArg,
        input: String,
    },
    /// Decrypt a token made by the `encrypt` operator, with the rails file's key.
    Decrypt {
        #[arg(long, value_name = "RAILS.yaml")]
        rails: PathBuf,
        token: String,
    },
}

#[derive(clap::Args)]
struct RailsArg {
    /// Use this rails file's input checks and operators (default: every PII/secret type and
    /// injection detection, threshold 0.5, operator replace).
    #[arg(long, value_name = "RAILS.yaml")]
    rails: Option<PathBuf>,
}

impl RailsArg {
    fn guard(&self) -> Result<Guard> {
        let config = match &self.rails {
            Some(p) => RailsConfig::from_file(p)?,
            None => RailsConfig::from_yaml(
                "input:\n  - {check: pii, action: redact}\n  - {check: injection, action: warn}\n",
            )?,
        };
        Ok(Guard::new(config))
    }
}

fn read_input(input: &str) -> Result<String> {
    let mut text = String::new();
    if input == "-" {
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
    } else {
        text = std::fs::read_to_string(input).with_context(|| format!("reading {input}"))?;
    }
    Ok(text)
}

pub fn run(a: Args) -> Result<()> {
    match a.command {
        Command::Scan { json, rails, input } => {
            let guard = rails.guard()?;
            let text = read_input(&input)?;
            let mut rows = vec![];
            for check in &guard.config.default.input {
                if matches!(check.kind, CheckKind::Perplexity) {
                    continue; // needs a served model
                }
                for f in guard.findings(check, &text, &Signals::default()) {
                    rows.push((check.kind.name(), f));
                }
            }
            rows.sort_by_key(|(_, f)| (f.start, f.end));
            if json {
                let findings: Vec<_> = rows
                    .iter()
                    .map(|(check, f)| {
                        let mut v = serde_json::to_value(f).unwrap_or_default();
                        v["check"] = serde_json::json!(check);
                        v
                    })
                    .collect();
                println!("{}", serde_json::json!({ "findings": findings }));
            } else {
                for (check, f) in &rows {
                    println!("{}-{}\t{}\t{:.2}\t{check}\t{}", f.start, f.end, f.kind.name(), f.score, f.recognizer);
                }
            }
        }
        Command::Redact { rails, input } => {
            let guard = rails.guard()?;
            let text = read_input(&input)?;
            let mut found = vec![];
            for check in
                guard.config.default.input.iter().filter(|c| matches!(c.kind, CheckKind::Pii | CheckKind::Secrets))
            {
                found.extend(guard.findings(check, &text, &Signals::default()));
            }
            print!("{}", guard.redact(&text, found)?);
        }
        Command::Decrypt { rails, token } => {
            let config = RailsConfig::from_file(&rails)?;
            let key =
                config.secrets.key.as_ref().with_context(|| format!("{} has no encryption key", rails.display()))?;
            println!("{}", key.decrypt(&token)?);
        }
    }
    Ok(())
}
