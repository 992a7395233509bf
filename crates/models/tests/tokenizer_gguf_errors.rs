//! Bad `tokenizer.ggml.*` metadata must give an error naming the key and the file, never a
//! panic. The vocabularies are tiny and built in memory (plus one written to a real GGUF file);
//! the valid ones double as known-answer tests of the BPE and SentencePiece paths.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Content, Value, VersionedMagic};
use prom_models::tokenizer::EncodeOptions;
use prom_models::Tokenizer;

const PATH: &str = "/models/tiny.gguf";

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String((*s).to_owned())).collect())
}

fn content(md: &[(&str, Value)]) -> Content {
    Content {
        magic: VersionedMagic::GgufV3,
        metadata: md.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    }
}

/// A byte-level BPE vocab: "Ġ" is the GPT-2 stand-in for a space.
fn bpe_meta() -> Vec<(&'static str, Value)> {
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
        ("tokenizer.ggml.tokens", strings(&["<|endoftext|>", "a", "b", "c", "ab", "abc", "Ġ", "Ġab"])),
        ("tokenizer.ggml.token_type", Value::Array([3, 1, 1, 1, 1, 1, 1, 1].map(Value::I32).to_vec())),
        ("tokenizer.ggml.merges", strings(&["a b", "ab c", "Ġ ab"])),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
    ]
}

/// A SentencePiece vocab: merges follow the score of the merged piece.
fn spm_meta() -> Vec<(&'static str, Value)> {
    vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(&["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab", "▁ab", "<0x63>"])),
        (
            "tokenizer.ggml.scores",
            Value::Array([0., 0., 0., -1., -2., -3., -4., -5., -0.5, 0.].map(Value::F32).to_vec()),
        ),
        ("tokenizer.ggml.token_type", Value::Array([2, 3, 3, 1, 1, 1, 1, 1, 1, 6].map(Value::I32).to_vec())),
    ]
}

fn with(mut md: Vec<(&'static str, Value)>, key: &'static str, v: Option<Value>) -> Vec<(&'static str, Value)> {
    md.retain(|(k, _)| *k != key);
    if let Some(v) = v {
        md.push((key, v));
    }
    md
}

/// Loading must fail with a message that names `key`, the file and contains `what`.
fn expect_err(md: &[(&str, Value)], key: &str, what: &str) {
    let err = match Tokenizer::from_gguf(&content(md), Path::new(PATH)) {
        Ok(_) => panic!("loading succeeded; expected an error about `{key}` ({what})"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(PATH), "error does not name the file: {err}");
    assert!(err.contains(key), "error does not name `{key}`: {err}");
    assert!(err.contains(what), "error does not say {what:?}: {err}");
}

#[test]
fn tiny_bpe_known_answers() {
    let tok = Tokenizer::from_gguf(&content(&bpe_meta()), Path::new(PATH)).unwrap();
    // "ab" | " abc": a+b → ab, ab+c → abc; "Ġ"+"abc" is no merge.
    assert_eq!(tok.encode("ab abc", false).unwrap(), vec![4, 6, 5]);
    assert_eq!(tok.encode(" ab", false).unwrap(), vec![7]);
    assert_eq!(tok.decode(&[4, 6, 5], false).unwrap(), "ab abc");
    assert_eq!(tok.encode("<|endoftext|>a", false).unwrap(), vec![0, 1]);
    let literal = EncodeOptions { add_special_tokens: false, parse_special: false };
    assert_ne!(tok.encode_with("<|endoftext|>", literal).unwrap(), vec![0]);
    assert_eq!(tok.eos_token_ids(), &[0]);
    assert!(tok.decode(&[8], false).is_err());
}

#[test]
fn tiny_spm_known_answers() {
    let tok = Tokenizer::from_gguf(&content(&spm_meta()), Path::new(PATH)).unwrap();
    // "▁ab": ▁+a (-4) beats a+b (-5), then ▁a+b → ▁ab (-0.5).
    assert_eq!(tok.encode("ab", true).unwrap(), vec![1, 8]);
    // "c" has no piece but a byte token.
    assert_eq!(tok.encode("abc", false).unwrap(), vec![8, 9]);
    assert_eq!(tok.decode(&[8, 9], false).unwrap(), "abc");
    assert_eq!((tok.bos_token(), tok.eos_token()), (Some("<s>"), Some("</s>")));
}

#[test]
fn missing_and_unknown_model() {
    expect_err(&with(bpe_meta(), "tokenizer.ggml.model", None), "tokenizer.ggml.model", "missing");
    expect_err(
        &with(bpe_meta(), "tokenizer.ggml.model", Some(Value::String("bert".into()))),
        "tokenizer.ggml.model",
        "unsupported tokenizer model \"bert\"",
    );
    expect_err(
        &with(bpe_meta(), "tokenizer.ggml.model", Some(Value::U32(2))),
        "tokenizer.ggml.model",
        "expected a string, found u32 2",
    );
    expect_err(
        &with(bpe_meta(), "tokenizer.ggml.pre", Some(Value::String("nonsense".into()))),
        "tokenizer.ggml.pre",
        "unsupported pre-tokenizer \"nonsense\"",
    );
}

#[test]
fn bad_token_list() {
    let key = "tokenizer.ggml.tokens";
    expect_err(&with(bpe_meta(), key, None), key, "missing");
    expect_err(&with(bpe_meta(), key, Some(Value::String("a b c".into()))), key, "expected an array");
    expect_err(&with(bpe_meta(), key, Some(Value::Array(vec![]))), key, "empty");
    let mixed = Value::Array(vec![Value::String("a".into()), Value::String("b".into()), Value::U32(7)]);
    expect_err(&with(bpe_meta(), key, Some(mixed)), key, "element 2: expected a string, found u32 7");
    expect_err(&with(spm_meta(), key, Some(strings(&["a", "b", "a"]))), key, "tokens 0 and 2 are both \"a\"");
}

#[test]
fn bad_scores_and_types() {
    let scores = "tokenizer.ggml.scores";
    expect_err(&with(spm_meta(), scores, Some(Value::Array(vec![Value::F32(0.0)]))), scores, "1 scores for 10 tokens");
    expect_err(&with(spm_meta(), scores, Some(strings(&["x"; 10]))), scores, "expected float32 or int32");
    let types = "tokenizer.ggml.token_type";
    expect_err(&with(spm_meta(), types, Some(Value::Array(vec![Value::F32(1.0); 10]))), types, "expected int32");
    expect_err(
        &with(spm_meta(), types, Some(Value::Array(vec![Value::I32(1); 3]))),
        types,
        "3 token types for 10 tokens",
    );
}

#[test]
fn bad_merges() {
    let key = "tokenizer.ggml.merges";
    expect_err(&with(bpe_meta(), key, None), key, "missing");
    expect_err(&with(bpe_meta(), key, Some(Value::U8(1))), key, "expected an array");
    expect_err(&with(bpe_meta(), key, Some(strings(&["a b", "a x"]))), key, "merge 1 \"a x\" refers to \"x\"");
    expect_err(&with(bpe_meta(), key, Some(strings(&["abc"]))), key, "no space");
    expect_err(&with(bpe_meta(), key, Some(strings(&["b c"]))), key, "produces \"bc\"");
}

#[test]
fn bad_special_ids_and_flags() {
    let bos = "tokenizer.ggml.bos_token_id";
    expect_err(&with(bpe_meta(), bos, Some(Value::U32(8))), bos, "token id 8 is out of range");
    expect_err(&with(bpe_meta(), bos, Some(Value::I32(-1))), bos, "-1 is not a valid token id");
    expect_err(&with(bpe_meta(), bos, Some(Value::String("<s>".into()))), bos, "expected an integer");
    let eos = "tokenizer.ggml.eos_token_id";
    expect_err(&with(bpe_meta(), eos, Some(Value::U64(1 << 40))), eos, "not a valid token id");
    let add = "tokenizer.ggml.add_bos_token";
    expect_err(&with(bpe_meta(), add, Some(Value::U8(1))), add, "expected a bool");
    let tmpl = "tokenizer.chat_template";
    expect_err(&with(bpe_meta(), tmpl, Some(Value::Array(vec![]))), tmpl, "expected a string");
}

/// The same checks through a real file: written with candle's GGUF writer, read back.
#[test]
fn written_gguf_round_trip() {
    let dir = std::env::temp_dir().join(format!("prom-tokenizer-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, md: &[(&str, Value)]| {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
        gguf_file::write(&mut f, &refs, &[]).unwrap();
        path
    };
    let read = |path: &Path| Content::read(&mut std::fs::File::open(path).unwrap()).unwrap();

    let good = write("good.gguf", &with(bpe_meta(), "tokenizer.chat_template", Some(Value::String("{{ x }}".into()))));
    let tok = Tokenizer::from_gguf(&read(&good), &good).unwrap();
    assert_eq!(tok.encode("ab abc", false).unwrap(), vec![4, 6, 5]);
    assert_eq!(tok.chat_template(), Some("{{ x }}"));

    let bad = write("bad.gguf", &with(bpe_meta(), "tokenizer.ggml.token_type", Some(strings(&["x"; 8]))));
    let err = Tokenizer::from_gguf(&read(&bad), &bad).unwrap_err().to_string();
    assert!(err.contains("bad.gguf") && err.contains("tokenizer.ggml.token_type"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
