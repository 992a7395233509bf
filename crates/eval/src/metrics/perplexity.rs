//! Perplexity aggregations (lm-eval `metrics.py`): per document the summed loglikelihood (nats)
//! with its word count (`len(re.split(r"\s+", text))`) and UTF-8 byte count; corpus values are
//! weighted: word_perplexity = exp(−ΣLL/ΣW), byte_perplexity = exp(−ΣLL/ΣB),
//! bits_per_byte = −ΣLL/ΣB/ln 2.

/// Python's `len(re.split(r"\s+", text))`: leading/trailing whitespace yields empty pieces,
/// which count.
pub fn word_count(text: &str) -> usize {
    let mut n = 1;
    let mut in_ws = false;
    for c in text.chars() {
        // Python's \s (Unicode) matches what char::is_whitespace does, plus \x1c-\x1f.
        let ws = c.is_whitespace() || ('\x1c'..='\x1f').contains(&c);
        if ws && !in_ws {
            n += 1;
        }
        in_ws = ws;
    }
    n
}

/// `(loglikelihood, weight)` pairs → exp(−ΣLL / Σweight).
pub fn weighted_perplexity(items: &[(f64, f64)]) -> f64 {
    (-weighted_mean(items)).exp()
}

pub fn bits_per_byte(items: &[(f64, f64)]) -> f64 {
    -weighted_mean(items) / std::f64::consts::LN_2
}

fn weighted_mean(items: &[(f64, f64)]) -> f64 {
    let (ll, w) = items.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    ll / w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example() {
        // LL = −100 over 10 words and 50 bytes.
        assert!((weighted_perplexity(&[(-100.0, 10.0)]) - 22026.465794806718).abs() < 1e-6);
        assert!((weighted_perplexity(&[(-60.0, 30.0), (-40.0, 20.0)]) - 2f64.exp()).abs() < 1e-12);
        assert!((bits_per_byte(&[(-100.0, 50.0)]) - 2.0 / std::f64::consts::LN_2).abs() < 1e-12);
    }

    #[test]
    fn word_count_is_python_re_split() {
        assert_eq!(word_count("a b  c"), 3);
        assert_eq!(word_count(" a b\n"), 4);
        assert_eq!(word_count(""), 1);
    }
}
