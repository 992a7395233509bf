//! Text as the injection rules see it: NFKC, lower case, look-alike Cyrillic and Greek letters
//! mapped to Latin, invisible characters dropped, with a map back to the original byte offsets.
//! Also counts the characters attackers use to hide text.

use unicode_normalization::UnicodeNormalization;

/// The normalized text and, for each of its bytes, the original byte offset.
pub struct Normalized {
    pub text: String,
    map: Vec<usize>,
    pub stats: HiddenStats,
}

/// Characters that hide or disguise text.
#[derive(Debug, Default, Clone, Copy)]
pub struct HiddenStats {
    /// Unicode tag characters (U+E0000..U+E007F) outside flag-emoji sequences: "ASCII smuggling".
    pub tags: usize,
    /// Zero-width spaces/joiners, word joiners, BOMs inside the text, soft hyphens.
    pub zero_width: usize,
    /// Bidi embedding, override and isolate controls ("Trojan Source").
    pub bidi: usize,
    /// Variation selectors not following an emoji or a CJK ideograph (a known smuggling channel).
    pub selectors: usize,
    /// Words mixing Latin letters with look-alike Cyrillic or Greek letters.
    pub mixed_script_words: usize,
}

impl Normalized {
    /// The original byte offset of normalized offset `i`.
    pub fn original(&self, i: usize) -> usize {
        self.map.get(i).copied().unwrap_or_else(|| self.map.last().copied().unwrap_or(0))
    }
}

/// Cyrillic and Greek letters that look like Latin ones (the common part of Unicode's
/// confusables.txt for lower-cased text).
#[rustfmt::skip]
fn confusable(c: char) -> Option<char> {
    Some(match c {
        'а' => 'a', 'в' => 'b', 'с' => 'c', 'ԁ' => 'd', 'е' | 'ё' => 'e', 'һ' => 'h', 'і' | 'ї' => 'i',
        'ј' => 'j', 'к' => 'k', 'м' => 'm', 'н' => 'h', 'о' => 'o', 'р' => 'p', 'ԛ' => 'q', 'г' => 'r',
        'ѕ' => 's', 'т' => 't', 'ս' => 'u', 'ѵ' => 'v', 'ԝ' => 'w', 'х' => 'x', 'у' => 'y',
        'α' => 'a', 'β' => 'b', 'ε' => 'e', 'η' => 'n', 'ι' => 'i', 'κ' => 'k', 'ν' => 'v', 'ο' => 'o',
        'ρ' => 'p', 'τ' => 't', 'υ' => 'u', 'χ' => 'x', 'γ' => 'y', 'ω' => 'w',
        _ => return None,
    })
}

fn is_tag(c: char) -> bool {
    ('\u{E0000}'..='\u{E007F}').contains(&c)
}

fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{200C}' | '\u{2060}' | '\u{2061}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}')
}

fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

fn is_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

fn is_pictographic_or_cjk(c: char) -> bool {
    let u = c as u32;
    (0x1F000..=0x1FAFF).contains(&u) || (0x2600..=0x27BF).contains(&u) || (0x3000..=0x9FFF).contains(&u) || u < 0x80
}

pub fn normalize(text: &str) -> Normalized {
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len() + 1);
    let mut stats = HiddenStats::default();
    let mut prev: Option<char> = None;
    let mut in_flag = false;
    let (mut word_latin, mut word_confusable) = (false, false);
    for (i, c) in text.char_indices() {
        if is_tag(c) {
            if !in_flag {
                stats.tags += 1;
            }
            if c == '\u{E007F}' {
                in_flag = false;
            }
            continue;
        }
        in_flag = c == '\u{1F3F4}';
        if is_zero_width(c) {
            stats.zero_width += usize::from(!(c == '\u{FEFF}' && i == 0));
            continue;
        }
        if is_bidi(c) {
            stats.bidi += 1;
            continue;
        }
        if is_selector(c) {
            if !prev.is_some_and(is_pictographic_or_cjk) || ('\u{E0100}'..='\u{E01EF}').contains(&c) {
                stats.selectors += 1;
            }
            continue;
        }
        if c == '\u{200D}' {
            continue; // ZWJ: legitimate inside emoji sequences; never part of a word we match
        }
        prev = Some(c);
        if c.is_alphanumeric() {
            if c.is_ascii_alphabetic() {
                word_latin = true;
            } else if confusable(c.to_lowercase().next().unwrap_or(c)).is_some() {
                word_confusable = true;
            }
        } else {
            stats.mixed_script_words += usize::from(word_latin && word_confusable);
            word_latin = false;
            word_confusable = false;
        }
        if c.is_ascii() {
            map.push(i);
            out.push(c.to_ascii_lowercase());
            continue;
        }
        for n in std::iter::once(c).nfkc() {
            for l in n.to_lowercase() {
                let l = confusable(l).unwrap_or(l);
                for _ in 0..l.len_utf8() {
                    map.push(i);
                }
                out.push(l);
            }
        }
    }
    stats.mixed_script_words += usize::from(word_latin && word_confusable);
    map.push(text.len());
    Normalized { text: out, map, stats }
}

/// The ASCII text hidden in Unicode tag characters (U+E0020..U+E007E map to ' '..'~').
pub fn smuggled_tags(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            let u = c as u32;
            (0xE0020..=0xE007E).contains(&u).then(|| char::from_u32(u - 0xE0000)).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homoglyphs_and_invisibles() {
        let n = normalize("Іgnоre\u{200B} prеvious");
        assert_eq!(n.text, "ignore previous");
        assert_eq!(n.stats.zero_width, 1);
        assert_eq!(n.stats.mixed_script_words, 2);
        assert_eq!(n.original(n.text.len()), "Іgnоre\u{200B} prеvious".len());
        // Full-width letters fold under NFKC.
        assert_eq!(normalize("ＩＧＮＯＲＥ").text, "ignore");
        // A flag emoji's tag sequence is not smuggling; tags elsewhere are.
        let england = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}";
        assert_eq!(normalize(england).stats.tags, 0);
        let hidden: String = "hi".chars().map(|c| char::from_u32(c as u32 + 0xE0000).unwrap()).collect();
        assert_eq!(normalize(&format!("ok{hidden}")).stats.tags, 2);
        assert_eq!(smuggled_tags(&hidden), "hi");
        // Plain Russian is not mixed-script.
        assert_eq!(normalize("Привет, мир, iPhone").stats.mixed_script_words, 0);
    }
}
