//! The pre-tokenizer table of GGUF byte-level BPE vocabularies, keyed by `tokenizer.ggml.pre`.
//!
//! Copied from llama.cpp `src/llama-vocab.cpp` (the `tokenizer_pre` chain in
//! `llama_vocab::impl::load` and the regex lists in the `llm_tokenizer_bpe` constructor). Each
//! list is applied in order, every regex splitting the pieces left by the previous one and keeping
//! both the matches and the text between them — llama.cpp's `unicode_regex_split`, which is
//! `tokenizers`' `Split(regex, Isolated)` in a `Sequence`.
//!
//! Where llama.cpp rewrote an upstream regex only because its std::regex backend lacks Unicode
//! classes (tekken, gpt-4o, granite-embed-multi), we use the upstream `tokenizer.json` regex:
//! fancy-regex has real Unicode classes and the rewrite is wrong outside ASCII there.
//! Not supported (llama.cpp runs hand-written splitters for them): kimi-k2, afmoe, superbpe,
//! whitespace.

/// How one `tokenizer.ggml.pre` value tokenizes and detokenizes.
#[derive(Debug, Clone)]
pub(super) struct PreSpec {
    pub regexes: &'static [&'static str],
    /// Detokenizer removes spaces before punctuation (llama.cpp `clean_spaces`).
    pub clean_spaces: bool,
    /// A pre-token that is itself in the vocab is emitted whole, without running merges.
    pub ignore_merges: bool,
    /// The default of `add_bos_token` before the GGUF key overrides it.
    pub add_bos: bool,
    /// `false` for SPM-style BPE (gemma4): merges run on raw UTF-8 with `▁` for spaces and
    /// `<0xXX>` byte fallback instead of GPT-2 byte-to-unicode.
    pub byte_level: bool,
    /// The vocab has no BOS token (chatglm).
    pub no_bos: bool,
}

const GPT2: &[&str] = &[r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"];
const DEFAULT: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];
const LLAMA3: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const JAIS2: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}",
];
const DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
    "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
    "\\s+$",
    "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
    "\\p{N}+",
];
const DEEPSEEK3: &[&str] = &[
    "\\p{N}{1,3}",
    "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
];
const SPARK2_5: &[&str] = &[
    "\\p{N}{1,3}",
    "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
    "\\p{N}",
];
const YOUTU: &[&str] = &[
    "[\u{AC00}-\u{D7A3}\u{3131}-\u{318E}]+|[\u{FF01}\u{2026}\u{201C}\u{201D}\u{2018}\u{2019}\u{2014}\u{FF1A}\u{FF1B}\u{FF0C}\u{3001}-\u{303F}\u{FE30}-\u{FE4F}]+|[\u{3105}-\u{312F}]+|[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
const DEEPSEEK_CODER: &[&str] =
    &["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+", "\\p{N}"];
const FALCON: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|`]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"[0-9][0-9][0-9]",
];
const STARCODER: &[&str] = &[r"\p{N}", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"];
const QWEN2: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const QWEN35: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const PORO: &[&str] = &[" ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+"];
const VIKING: &[&str] = &[" ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+", "\\p{N}"];
// Upstream regex (mistral tekken); see the module doc.
const TEKKEN: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const CHAMELEON: &[&str] = &[
    r"<sentinel:[0-9]+>",
    r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    r"([\t\n]|    |  )",
    r"\p{N}",
    r"[\p{P}!-/:-@\[-`{-~]",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
];
// Upstream regex (o200k); see the module doc.
const GPT4O: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const TINY_AYA: &[&str] = &[
    r"\d{1,3}(?=(?:\d{3})*\b)",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const BAILINGMOE: &[&str] = &[
    r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
];
const SEED_CODER: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const UFAKZEKA: &[&str] = &[r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"];
const LAGUNA: &[&str] = &[
    r"[^\n]+|[\n]+",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const EXAONE_MOE: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",
];
const MINICPM5: &[&str] = &[
    r"\p{N}{1,3}",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const GRANITE_EMB_MULTI: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
/// SPM-style BPE (gemma4, sarvam-moe): only newlines split; merges see the whole line.
const LINES: &[&str] = &[r"[^\n]+|[\n]+"];

/// Every `tokenizer.ggml.pre` value we accept, for error messages.
pub(super) const SUPPORTED: &str = "default, llama3, llama-v3, llama-bpe, falcon3, falcon-h1, pixtral, \
midm-2.0, lfm2, jina-v5-nano, dbrx, smaug-bpe, deepseek-llm, deepseek-coder, deepseek-v3, \
hunyuan-dense, joyai-llm, hy_v4, spark2_5, youtu, falcon, mpt, starcoder, gpt-2, phi-2, jina-es, \
jina-de, gigachat, jina-v2-es, jina-v2-de, a.x-4.0, mellum, modern-bert, jina-v1-en, jina-v2-code, \
roberta-bpe, exaone4, olmo, jais, trillion, granite-docling, jais-2, gemma4, granite-embed-multi-311m, sarvam-moe, refact, \
command-r, smollm, codeshell, exaone, minerva-7b, mellum2, qwen2, deepseek-r1-qwen, kormo, f2llmv2, \
megrez, stablelm2, hunyuan, solar-open, grok-2, qwen35, poro-chat, bloom, gpt3-finnish, chatglm-bpe, \
glm4, glm5, viking, tekken, chameleon, gpt-4o, llama4, kanana2, talkie, minimax-m2, \
granite-embed-multi-97m, tiny_aya, cohere2moe, bailingmoe, bailingmoe2, llada-moe, seed-coder, \
ufakzeka, laguna, exaone-moe, minicpm5";

/// The spec for a `tokenizer.ggml.pre` value; `None` when missing, llama.cpp falls back to
/// "default" (with a loud warning) and so do we.
pub(super) fn lookup(pre: Option<&str>) -> Option<PreSpec> {
    let spec = |regexes, clean_spaces| PreSpec {
        regexes,
        clean_spaces,
        ignore_merges: false,
        add_bos: false,
        byte_level: true,
        no_bos: false,
    };
    let s = match pre.unwrap_or("default") {
        "default" => spec(DEFAULT, true),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" => PreSpec { ignore_merges: true, add_bos: true, ..spec(LLAMA3, true) },
        "dbrx" | "smaug-bpe" => spec(LLAMA3, true),
        "minicpm5" => PreSpec { ignore_merges: true, ..spec(MINICPM5, true) },
        "deepseek-llm" => spec(DEEPSEEK_LLM, false),
        "deepseek-coder" => spec(DEEPSEEK_CODER, false),
        "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => spec(DEEPSEEK3, false),
        "spark2_5" => spec(SPARK2_5, false),
        "youtu" => PreSpec { ignore_merges: true, ..spec(YOUTU, false) },
        "falcon" => spec(FALCON, true),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum"
        | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "exaone4" | "mpt" | "olmo" | "jais" => {
            spec(GPT2, true)
        }
        "trillion" | "granite-docling" => spec(GPT2, false),
        "jais-2" => spec(JAIS2, true),
        "gemma4" | "granite-embed-multi-311m" => PreSpec { byte_level: false, add_bos: true, ..spec(LINES, true) },
        "sarvam-moe" => PreSpec { byte_level: false, ..spec(LINES, false) },
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => spec(STARCODER, true),
        "command-r" | "smollm" => spec(STARCODER, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" | "grok-2" => spec(QWEN2, false),
        "megrez" | "stablelm2" => spec(QWEN2, true),
        "qwen35" => spec(QWEN35, false),
        "poro-chat" => spec(PORO, false),
        "bloom" | "gpt3-finnish" => spec(PORO, true),
        "chatglm-bpe" => PreSpec { no_bos: true, ..spec(LLAMA3, true) },
        "glm4" | "glm5" => PreSpec { no_bos: true, ignore_merges: true, ..spec(LLAMA3, true) },
        "viking" => spec(VIKING, false),
        "tekken" => PreSpec { ignore_merges: true, add_bos: true, ..spec(TEKKEN, false) },
        "chameleon" => PreSpec { add_bos: true, ..spec(CHAMELEON, false) },
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => spec(GPT4O, false),
        "granite-embed-multi-97m" => PreSpec { ignore_merges: true, ..spec(GRANITE_EMB_MULTI, false) },
        "tiny_aya" | "cohere2moe" => spec(TINY_AYA, false),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => spec(BAILINGMOE, false),
        "seed-coder" => spec(SEED_CODER, false),
        "ufakzeka" => spec(UFAKZEKA, false),
        "laguna" => spec(LAGUNA, false),
        "exaone-moe" => spec(EXAONE_MOE, true),
        _ => return None,
    };
    Some(s)
}

#[cfg(test)]
mod tests {
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::SplitDelimiterBehavior;

    /// Every name we advertise resolves, and every regex compiles with the `tokenizers` regex
    /// engine (fancy-regex), so no supported vocab can fail at load time on a regex.
    #[test]
    fn every_supported_pre_tokenizer_compiles() {
        let names: Vec<&str> = super::SUPPORTED.split(", ").map(str::trim).collect();
        assert!(names.len() > 80);
        for name in names {
            let spec = super::lookup(Some(name)).unwrap_or_else(|| panic!("{name} is listed but not handled"));
            for r in spec.regexes {
                let split = Split::new(SplitPattern::Regex((*r).to_owned()), SplitDelimiterBehavior::Isolated, false);
                assert!(split.is_ok(), "{name}: {r:?} does not compile: {:?}", split.err());
            }
        }
        assert!(super::lookup(Some("kimi-k2")).is_none());
        assert_eq!(super::lookup(None).map(|s| s.regexes.len()), Some(4), "missing pre means \"default\"");
    }
}
