//! `prom quantize IN OUT --type T`: a GGUF file or an HF safetensors directory to a GGUF file
//! that llama.cpp runs, with llama.cpp's per-tensor type recipes (docs/quantization.md).

use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use prom_models::quant::{self, FileType, QuantizeOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Input: a .gguf file or an HF model directory (config.json + *.safetensors).
    input: PathBuf,
    /// Output .gguf file.
    output: PathBuf,
    /// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K, F16, BF16 or F32.
    #[arg(long = "type", short = 't', value_parser = |s: &str| s.parse::<FileType>())]
    ftype: FileType,
    /// Give every weight the type's default block type (no mixed precision; llama-quantize --pure).
    #[arg(long)]
    pure: bool,
    /// llama.cpp pre-tokenizer name written for converted HF tokenizers (`tokenizer.ggml.pre`).
    #[arg(long, default_value = "default")]
    tokenizer_pre: String,
}

pub fn run(a: Args) -> Result<()> {
    let opts = QuantizeOptions { ftype: a.ftype, pure: a.pure, tokenizer_pre: a.tokenizer_pre.clone() };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} tensors {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = quant::quantize_file(&a.input, &a.output, &opts, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.index as u64);
        bar.set_message(format!("{} {:?} → {}", p.name, p.from, quant::ggml::name(p.to)));
    })
    .with_context(|| format!("quantizing {} to {}", a.input.display(), a.output.display()));
    bar.finish_and_clear();
    let s = summary?;
    let types: Vec<String> = s.types.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    eprintln!(
        "wrote {} ({}): {} tensors, {:.1} MiB → {:.1} MiB, {:.3} bits per weight ({})",
        a.output.display(),
        a.ftype,
        s.tensors,
        s.bytes_in as f64 / (1 << 20) as f64,
        s.bytes_out as f64 / (1 << 20) as f64,
        8.0 * s.weight_bytes as f64 / s.weight_elements.max(1) as f64,
        types.join(", ")
    );
    Ok(())
}
