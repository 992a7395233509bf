//! HF tokenizers against transformers: `scripts/tokenizer/hf_expected.py` encodes
//! `tests/fixtures/tokenizer/corpus.txt` with AutoTokenizer from the pinned qwen3 and llama3
//! `tokenizer.json` + `tokenizer_config.json` and records ids (with / without special tokens, and
//! with special-token text kept literal) and decoded text; we load the same files with
//! `Tokenizer::from_hf_files` and must agree on every line.

#[path = "tokenizer_common.rs"]
mod common;

use std::path::PathBuf;

use prom_models::tokenizer::EncodeOptions;
use prom_models::Tokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    bos_token: Option<String>,
    bos_token_id: Option<u32>,
    eos_token: Option<String>,
    eos_token_id: Option<u32>,
    vocab_size: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    ids_no_special: Vec<u32>,
    ids_literal: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tokenizer")
}

/// The corpus escapes of hf_expected.py: \n \t \r \\ \uXXXX; other backslashes are literal.
fn unescape(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            let simple = match chars[i + 1] {
                'n' => Some('\n'),
                't' => Some('\t'),
                'r' => Some('\r'),
                '\\' => Some('\\'),
                _ => None,
            };
            if let Some(c) = simple {
                out.push(c);
                i += 2;
                continue;
            }
            if chars[i + 1] == 'u' && i + 6 <= chars.len() {
                let hex: String = chars[i + 2..i + 6].iter().collect();
                if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(c);
                    i += 6;
                    continue;
                }
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn load(name: &str) -> (Tokenizer, Expected) {
    let dir = common::artifact(&format!("npm/tokenizer-{name}/models"));
    let tok = Tokenizer::from_hf_files(&dir.join("tokenizer.json"), Some(&dir.join("tokenizer_config.json")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let path = fixtures().join(format!("{name}_expected.json"));
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let expected: Expected = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (tok, expected)
}

fn check_corpus(name: &str) -> Tokenizer {
    let (tok, exp) = load(name);
    let corpus = std::fs::read_to_string(fixtures().join("corpus.txt")).expect("corpus.txt");
    let lines: Vec<String> = corpus.strip_suffix('\n').unwrap_or(&corpus).split('\n').map(unescape).collect();
    let texts: Vec<&String> = exp.cases.iter().map(|c| &c.text).collect();
    assert_eq!(
        lines.iter().collect::<Vec<_>>(),
        texts,
        "{name}: expected file is stale; rerun scripts/tokenizer/hf_expected.py"
    );

    let mut failures = Vec::new();
    let mut check = |what: &str, text: &str, want: &dyn std::fmt::Debug, got: &dyn std::fmt::Debug| {
        let (w, g) = (format!("{want:?}"), format!("{got:?}"));
        if w != g {
            failures.push(format!("{what} of {text:?}\n  transformers {w}\n  ours         {g}"));
        }
    };
    for c in &exp.cases {
        let enc = |add_special_tokens, parse_special| {
            tok.encode_with(&c.text, EncodeOptions { add_special_tokens, parse_special }).expect("encode")
        };
        check("ids", &c.text, &c.ids, &enc(true, true));
        check("ids without special tokens", &c.text, &c.ids_no_special, &enc(false, true));
        check("ids with special text literal", &c.text, &c.ids_literal, &enc(false, false));
        check("decode", &c.text, &c.decoded, &tok.decode(&c.ids, false).expect("decode"));
        check("decode skipping specials", &c.text, &c.decoded_skip_special, &tok.decode(&c.ids, true).expect("decode"));
    }
    check("vocab size", name, &exp.vocab_size, &tok.vocab_size());
    check("bos", name, &(exp.bos_token.as_deref(), exp.bos_token_id), &(tok.bos_token(), tok.bos_token_id()));
    check("eos", name, &(exp.eos_token.as_deref(), exp.eos_token_id), &(tok.eos_token(), tok.eos_token_id()));
    assert!(failures.is_empty(), "{name}: {} mismatches with transformers:\n{}", failures.len(), failures.join("\n"));
    tok
}

#[test]
fn qwen3_matches_transformers() {
    let tok = check_corpus("qwen3");
    let id = |t: &str| tok.token_to_id(t).unwrap();
    assert_eq!(tok.eos_token_ids(), &[id("<|im_end|>"), id("<|endoftext|>")]);
    assert!(tok.is_special(id("<|im_start|>")));
    assert!(!tok.is_special(id("Hello")));
    assert!(!tok.add_bos() && !tok.add_eos());
    let template = tok.chat_template().expect("qwen3 has a chat template");
    assert!(template.contains("<|im_start|>"));
    assert_eq!(tok.id_to_token(id("Ġworld")).as_deref(), Some("Ġworld"));
}

#[test]
fn llama3_matches_transformers() {
    let tok = check_corpus("llama3");
    let id = |t: &str| tok.token_to_id(t).unwrap();
    // Llama 3.0: no <|eom_id|> yet.
    assert_eq!(tok.eos_token_ids(), &[id("<|end_of_text|>"), id("<|eot_id|>")]);
    assert!(tok.is_special(id("<|begin_of_text|>")));
    // These npm files have no BOS template and no add_bos_token, so transformers adds nothing.
    assert!(!tok.add_bos());
    assert!(tok.chat_template().is_some_and(|t| t.contains("<|start_header_id|>")));
}

/// The config's explicit `add_bos_token` / `add_eos_token` replace the post-processor, as
/// transformers does; a list-valued `chat_template` yields its "default" entry.
#[test]
fn config_flags_and_template_list() {
    let dir = common::artifact("npm/tokenizer-llama3/models");
    let tmp = std::env::temp_dir().join(format!("prom-tokenizer-hf-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let cfg = tmp.join("tokenizer_config.json");
    std::fs::write(
        &cfg,
        r#"{"bos_token": {"content": "<|begin_of_text|>", "special": true}, "eos_token": "<|eot_id|>",
            "add_bos_token": true, "add_eos_token": true,
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
    )
    .unwrap();
    let tok = Tokenizer::from_hf_files(&dir.join("tokenizer.json"), Some(&cfg)).unwrap();
    let (bos, eot) = (tok.token_to_id("<|begin_of_text|>").unwrap(), tok.token_to_id("<|eot_id|>").unwrap());
    assert!(tok.add_bos() && tok.add_eos());
    assert_eq!(tok.encode("Hello", true).unwrap(), vec![bos, 9906, eot]);
    assert_eq!(tok.encode("Hello", false).unwrap(), vec![9906]);
    assert_eq!(tok.decode(&[bos, 9906, eot], true).unwrap(), "Hello");
    assert_eq!(tok.chat_template(), Some("D"));
    assert!(tok.decode(&[tok.vocab_size() as u32], false).is_err());

    std::fs::write(&cfg, r#"{"add_bos_token": "yes"}"#).unwrap();
    let err = Tokenizer::from_hf_files(&dir.join("tokenizer.json"), Some(&cfg)).unwrap_err().to_string();
    assert!(err.contains("add_bos_token") && err.contains("tokenizer_config.json"), "{err}");
    let missing = Tokenizer::from_hf_files(&tmp.join("nope.json"), None).unwrap_err().to_string();
    assert!(missing.contains("nope.json"), "{missing}");
    std::fs::remove_dir_all(&tmp).ok();
}
