//! Detokenizing GGUF vocabs the way llama.cpp does (`token_to_piece` + `detokenize`).
//!
//! This is our own code rather than a `tokenizers` decoder chain because llama.cpp's rules are
//! per token and do not map onto one: control tokens render as their text (or nothing), the
//! leading-space strip applies to the first token only, and byte-level BPE vocabs get
//! llama.cpp's `clean_spaces` pass. Each token's bytes are computed once at load time, so the
//! same table serves incremental (streaming) decoding.

use super::attr::Attr;
use super::vocab::{Model, Vocab};

pub(super) struct Pieces {
    /// The bytes of each token rendered with specials shown; may be partial UTF-8.
    bytes: Vec<Vec<u8>>,
    /// Control and unknown tokens: rendered only when specials are shown.
    hidden: Vec<bool>,
    strip_first_space: bool,
    clean_spaces: bool,
}

impl Pieces {
    pub(super) fn new(vocab: &Vocab) -> Self {
        let byte_level = matches!(vocab.model, Model::Bpe(_)) && !vocab.escape_whitespaces;
        let bytes = (0..vocab.n_tokens()).map(|i| piece(vocab, i, byte_level)).collect();
        let hidden = vocab.attrs.iter().map(|a| a.has(Attr::UNKNOWN | Attr::CONTROL)).collect();
        Self { bytes, hidden, strip_first_space: vocab.add_space_prefix, clean_spaces: vocab.clean_spaces }
    }

    /// The bytes token `id` stands for; `None` when `id` is out of range.
    pub(super) fn token_bytes(&self, id: u32, show_special: bool) -> Option<&[u8]> {
        let b = self.bytes.get(id as usize)?;
        Some(if self.hidden[id as usize] && !show_special { &[] } else { b })
    }

    /// llama.cpp `detokenize(tokens, remove_special = skip, unparse_special = !skip)`; `ids` are
    /// already range-checked by the caller and BOS/EOS removal already applied.
    pub(super) fn detokenize(&self, ids: &[u32], skip_special: bool, mut strip_space: bool) -> Vec<u8> {
        strip_space &= self.strip_first_space;
        let mut out = Vec::new();
        for &id in ids {
            let mut p = self.token_bytes(id, !skip_special).unwrap_or_default();
            if strip_space {
                p = p.strip_prefix(b" ").unwrap_or(p);
                strip_space = false;
            }
            out.extend_from_slice(p);
        }
        if self.clean_spaces {
            clean_spaces(&mut out);
        }
        out
    }
}

/// `token_to_piece(id, special = true)`.
fn piece(vocab: &Vocab, id: usize, byte_level: bool) -> Vec<u8> {
    let attr = vocab.attrs[id];
    let text = vocab.tokens[id].as_str();
    if attr.has(Attr::UNKNOWN | Attr::CONTROL | Attr::USER_DEFINED) {
        return text.as_bytes().to_vec();
    }
    if attr.has(Attr::NORMAL) {
        return if byte_level { unmap_byte_level(text) } else { text.replace('\u{2581}', " ").into_bytes() };
    }
    if attr.has(Attr::BYTE) {
        return byte_token_value(text).map(|b| vec![b]).unwrap_or_default();
    }
    // Unused and undefined tokens render as nothing, as in llama.cpp.
    Vec::new()
}

/// `<0xAB>` → 0xAB. SPM byte tokens are `<0xXX>`; a byte-typed token of another shape renders
/// as nothing rather than aborting as llama.cpp would.
fn byte_token_value(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2 byte-to-unicode, reversed. A character outside the 256-character alphabet (not
/// produced by the byte-level encoder) passes through as its own UTF-8.
fn unmap_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unicode_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// The inverse of GPT-2's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the
/// other 68 bytes (0x00-0x20, 0x7F-0xA0, 0xAD, in that order) to U+0100.. .
fn unicode_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    match cp {
        0..=0xFF => printable(cp).then_some(cp as u8),
        0x100..=0x120 => Some((cp - 0x100) as u8),
        0x121..=0x142 => Some((cp - 0x121 + 0x7F) as u8),
        0x143 => Some(0xAD),
        _ => None,
    }
}

/// llama.cpp's three in-place `clean_spaces` passes, ported literally (including reading the
/// NUL it writes over a skipped space): drop the space before ? ! . , ; turn " ' " into "'";
/// drop the space before 's, 'm, 're, 've.
fn clean_spaces(t: &mut Vec<u8>) {
    // Pass 1: " ?", " !", " .", " ," lose the space.
    let n = t.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);

    // Pass 2: a lone apostrophe between spaces loses both spaces.
    let n = t.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = t[i];
        if x == b'\'' && i + 1 < n && t[i - 1] == b' ' && t[i + 1] == b' ' {
            total -= 1;
            i += 1;
            t[i] = 0;
        }
        t[total] = x;
        total += 1;
        i += 1;
    }
    t.truncate(total);

    // Pass 3: " 's", " 'm", " 're", " 've" lose the space.
    let n = t.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = t[i + 1];
            let drop = match x1 {
                b's' | b'm' => true,
                b't' | b'd' => false,
                _ => i + 2 < n && matches!((x1, t[i + 2]), (b'r', b'e') | (b'v', b'e')),
            };
            if drop {
                total -= 1;
            }
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);
}

#[cfg(test)]
mod tests {
    /// GPT-2's `bytes_to_unicode`, written out as in the original encoder.py.
    fn bytes_to_unicode() -> Vec<(u8, char)> {
        let mut bs: Vec<u32> = (0x21..=0x7E).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        bs.iter().zip(cs).map(|(&b, c)| (b as u8, char::from_u32(c).unwrap())).collect()
    }

    #[test]
    fn byte_level_alphabet_inverts() {
        for (b, c) in bytes_to_unicode() {
            assert_eq!(super::unicode_to_byte(c), Some(b), "{c:?}");
        }
        assert_eq!(super::unicode_to_byte('\u{144}'), None);
        assert_eq!(super::unicode_to_byte(' '), None);
    }

    #[test]
    fn clean_spaces_like_llama_cpp() {
        let clean = |s: &str| {
            let mut v = s.as_bytes().to_vec();
            super::clean_spaces(&mut v);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(clean("Hello , world . Yes ! Why ?"), "Hello, world. Yes! Why?");
        assert_eq!(clean("it 's he 'm we 're they 've"), "it's he'm we're they've");
        assert_eq!(clean("do n't 't 'd 'll"), "do n't 't 'd 'll");
        assert_eq!(clean("a ' b"), "a'b");
        // The NUL llama.cpp writes over the skipped space keeps the next apostrophe apart.
        assert_eq!(clean("a ' ' b"), "a'' b");
        assert_eq!(clean(""), "");
        assert_eq!(clean(" ."), ".");
    }
}
