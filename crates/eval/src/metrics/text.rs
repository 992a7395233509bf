//! String metrics of generation tasks: lm-eval's `exact_match` (HF evaluate's, with
//! `regexes_to_ignore`, `ignore_case`, `ignore_punctuation`, `ignore_numbers`).
//!
//! Regexes run on Rust's `regex` engine: no look-around or backreferences, and `$` matches only
//! at the very end (Python's also matches before a final `\n`).

use regex::Regex;

use crate::{EvalError, Result};

#[derive(Debug, Clone, Default)]
pub struct ExactMatch {
    pub regexes_to_ignore: Vec<Regex>,
    pub ignore_case: bool,
    pub ignore_punctuation: bool,
    pub ignore_numbers: bool,
}

/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

impl ExactMatch {
    pub fn new(regexes: &[String], ignore_case: bool, ignore_punctuation: bool, ignore_numbers: bool) -> Result<Self> {
        let regexes_to_ignore = regexes
            .iter()
            .map(|r| Regex::new(r).map_err(|e| EvalError::Config(format!("`regexes_to_ignore` entry {r:?}: {e}"))))
            .collect::<Result<_>>()?;
        Ok(Self { regexes_to_ignore, ignore_case, ignore_punctuation, ignore_numbers })
    }

    pub fn normalize(&self, s: &str) -> String {
        let mut s = s.to_string();
        for re in &self.regexes_to_ignore {
            s = re.replace_all(&s, "").into_owned();
        }
        if self.ignore_case {
            s = s.to_lowercase();
        }
        if self.ignore_punctuation {
            s.retain(|c| !PUNCTUATION.contains(c));
        }
        if self.ignore_numbers {
            s.retain(|c| !c.is_ascii_digit());
        }
        s
    }

    pub fn score(&self, prediction: &str, reference: &str) -> f64 {
        f64::from(self.normalize(prediction) == self.normalize(reference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_normalisation_strips_reasoning_commas_and_dollars() {
        let regexes: Vec<String> = [",", "\\$", "(?s).*#### ", "\\.$"].iter().map(|s| s.to_string()).collect();
        let em = ExactMatch::new(&regexes, true, false, false).unwrap();
        let reference = "Janet sells 16 - 3 - 4 = 9 duck eggs.\nShe makes $18.\n#### 1,018";
        assert_eq!(em.normalize(reference), "1018");
        assert_eq!(em.score("$1,018.", reference), 1.0);
        assert_eq!(em.score("1019", reference), 0.0);
    }

    #[test]
    fn punctuation_and_numbers() {
        let em = ExactMatch::new(&[], false, true, true).unwrap();
        assert_eq!(em.normalize("It's 42!"), "Its ");
        assert!(ExactMatch::new(&["(".to_string()], false, false, false).is_err());
    }
}
