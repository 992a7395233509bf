//! GGUF tokenizers against the llama.cpp binary itself: `scripts/tokenizer/smollm2_expected.sh`
//! ran `llama-tokenize` (the pinned llama.cpp build) over `tests/fixtures/tokenizer/corpus.txt`
//! for the default model (SmolLM2, `gpt2` vocab with pre "smollm") and for five vocab test files,
//! with special-token text parsed and not. Unlike llama.cpp's own vectors (made with HF
//! tokenizers, specials never parsed), these pin llama.cpp's special-token splitting and BOS.

#[path = "tokenizer_common.rs"]
mod common;

use std::path::{Path, PathBuf};

use prom_models::tokenizer::EncodeOptions;
use prom_models::Tokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Recorded {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    ids_literal: Vec<u32>,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tokenizer").join(name)
}

fn smollm2_path() -> PathBuf {
    common::artifact("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Every corpus line must encode as llama-tokenize did; returns the tokenizer and the cases.
fn check_against_llamacpp(gguf: &Path, recorded: &str) -> (Tokenizer, Vec<Case>) {
    let tok = common::load_gguf(gguf);
    let path = fixture(recorded);
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rec: Recorded = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(rec.cases.len() > 50, "{recorded}: too few cases");
    let mut failures = Vec::new();
    for c in &rec.cases {
        // llama-tokenize passes add_special = the model's add_bos flag.
        for (parse_special, want) in [(true, &c.ids), (false, &c.ids_literal)] {
            let opts = EncodeOptions { add_special_tokens: tok.add_bos(), parse_special };
            let got = tok.encode_with(&c.text, opts).expect("encode");
            if &got != want {
                failures.push(format!(
                    "{:?} (parse_special {parse_special})\n  llama.cpp {want:?}\n  ours      {got:?}",
                    c.text
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{recorded}: {} mismatches:\n{}", failures.len(), failures.join("\n"));
    (tok, rec.cases)
}

#[test]
fn smollm2_matches_llama_tokenize() {
    let (tok, cases) = check_against_llamacpp(&smollm2_path(), "smollm2_llamacpp.json");
    // No clean_spaces for "smollm" and byte-level BPE loses nothing: decoding gives the text back.
    for c in &cases {
        assert_eq!(tok.decode(&c.ids, false).unwrap(), c.text);
        assert_eq!(tok.decode(&c.ids_literal, false).unwrap(), c.text);
    }
}

#[test]
fn vocab_files_match_llama_tokenize() {
    for v in ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2"] {
        let gguf = common::artifact(&format!("llama-cpp-python-0.3.36/vendor/llama.cpp/models/ggml-vocab-{v}.gguf"));
        check_against_llamacpp(&gguf, &format!("llamacpp_{v}.json"));
    }
}

/// SmolLM2's settings and a few ids worked out from llama.cpp's rules: "smollm" splits digits
/// one by one (the starcoder regex list), control tokens split out only when parsed, and the
/// end-of-generation set is llama.cpp's (<|im_end|>, <|endoftext|> and the FIM-repo token
/// <reponame>).
#[test]
fn smollm2_known_answers() {
    let tok = common::load_gguf(&smollm2_path());
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!((tok.bos_token_id(), tok.bos_token()), (Some(1), Some("<|im_start|>")));
    assert_eq!((tok.eos_token_id(), tok.eos_token()), (Some(2), Some("<|im_end|>")));
    assert_eq!(tok.eos_token_ids(), &[2, 0, 4]);
    assert!(!tok.add_bos() && !tok.add_eos());
    assert!(tok.chat_template().is_some_and(|t| t.contains("<|im_start|>")));

    let ids = tok.encode("Hello world<|im_start|>x", true).unwrap();
    assert_eq!(ids, vec![19556, 905, 1, 104]);
    let literal =
        tok.encode_with("<|im_start|>", EncodeOptions { add_special_tokens: false, parse_special: false }).unwrap();
    assert!(!literal.contains(&1) && literal.len() > 1, "{literal:?}");
    assert_eq!(tok.decode(&ids, true).unwrap(), "Hello worldx");
    assert_eq!(tok.decode(&ids, false).unwrap(), "Hello world<|im_start|>x");

    // Digits are pre-tokenized one at a time, so "2024" is four single-digit tokens.
    let digits = tok.encode("2024", false).unwrap();
    let singles: Vec<u32> = "2024".chars().map(|c| tok.token_to_id(&c.to_string()).unwrap()).collect();
    assert_eq!(digits, singles);
    // A space attaches to the following word (GPT-2 style "Ġ").
    assert_eq!(tok.encode(" world", false).unwrap(), vec![905]);
    assert_eq!(tok.id_to_token(905).as_deref(), Some("Ġworld"));
    assert!(tok.is_special(0) && tok.is_special(16) && !tok.is_special(17));
    assert_eq!(tok.token_bytes(905, false), Some(&b" world"[..]));
    assert_eq!(tok.token_bytes(1, false), Some(&b""[..]));
    assert_eq!(tok.token_bytes(1, true), Some(&b"<|im_start|>"[..]));
}
