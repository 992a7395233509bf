//! lm-eval's response filters (`lm_eval/filters/`): a pipeline of steps turns each document's
//! list of responses (one per repeat) into filtered responses; metrics then read the first.
//! Supported: `regex` (findall, `group_select`, fallback `[invalid]`), `take_first`,
//! `take_first_k`, `remove_whitespace`, `lowercase`, `uppercase`, `majority_vote`.

use std::collections::HashMap;

use regex::Regex;

use crate::task::config::{FilterPipeline, FilterStep};
use crate::{EvalError, Result};

#[derive(Debug, Clone)]
enum Step {
    Regex { re: Regex, group_select: i64, fallback: String },
    TakeFirst,
    TakeFirstK(usize),
    RemoveWhitespace,
    Lowercase,
    Uppercase,
    MajorityVote,
}

#[derive(Debug, Clone)]
pub struct Filter {
    pub name: String,
    steps: Vec<Step>,
}

impl Filter {
    /// The identity pipeline lm-eval calls `none`.
    pub fn none() -> Self {
        Self { name: "none".into(), steps: vec![Step::TakeFirst] }
    }

    pub fn new(p: &FilterPipeline) -> Result<Self> {
        let steps = p.filter.iter().map(|s| step(&p.name, s)).collect::<Result<_>>()?;
        Ok(Self { name: p.name.clone(), steps })
    }

    /// Applies the pipeline to one document's responses.
    pub fn apply(&self, resps: &[String]) -> Vec<String> {
        let mut r = resps.to_vec();
        for s in &self.steps {
            r = match s {
                Step::Regex { re, group_select, fallback } => {
                    r.iter().map(|x| regex_pick(re, *group_select, fallback, x)).collect()
                }
                Step::TakeFirst => r.into_iter().take(1).collect(),
                Step::TakeFirstK(k) => r.into_iter().take(*k).collect(),
                Step::RemoveWhitespace => r.iter().map(|x| x.trim_start().to_string()).collect(),
                Step::Lowercase => r.iter().map(|x| x.to_lowercase()).collect(),
                Step::Uppercase => r.iter().map(|x| x.to_uppercase()).collect(),
                Step::MajorityVote => majority(&r).into_iter().collect(),
            };
        }
        r
    }
}

fn step(pipeline: &str, s: &FilterStep) -> Result<Step> {
    let bad = |m: String| EvalError::Config(format!("filter `{pipeline}`: {m}"));
    Ok(match s.function.as_str() {
        "regex" => {
            let pat = s.regex_pattern.as_deref().unwrap_or(r"#### (\-?[0-9\.\,]+)");
            let re = Regex::new(pat).map_err(|e| bad(format!("`regex_pattern` {pat:?}: {e}")))?;
            Step::Regex { re, group_select: s.group_select.unwrap_or(0), fallback: s.fallback.clone().unwrap_or_else(|| "[invalid]".into()) }
        }
        "take_first" => Step::TakeFirst,
        "take_first_k" => Step::TakeFirstK(1),
        "remove_whitespace" => Step::RemoveWhitespace,
        "lowercase" => Step::Lowercase,
        "uppercase" => Step::Uppercase,
        "majority_vote" => Step::MajorityVote,
        other => {
            return Err(bad(format!(
                "unknown function `{other}`; supported: regex, take_first, take_first_k, remove_whitespace, lowercase, uppercase, majority_vote"
            )))
        }
    })
}

/// Python `re.findall(...)[group_select]`: the whole match without groups, the group with one,
/// else the first non-empty group of the selected tuple; then `.strip()`.
fn regex_pick(re: &Regex, group_select: i64, fallback: &str, text: &str) -> String {
    let groups = re.captures_len() - 1;
    let matches: Vec<Vec<String>> = re
        .captures_iter(text)
        .map(|c| match groups {
            0 => vec![c[0].to_string()],
            _ => (1..=groups).map(|i| c.get(i).map_or(String::new(), |m| m.as_str().to_string())).collect(),
        })
        .collect();
    let n = matches.len() as i64;
    let idx = if group_select < 0 { n + group_select } else { group_select };
    if n == 0 || idx < 0 || idx >= n {
        return fallback.to_string();
    }
    let m = &matches[idx as usize];
    let picked = if groups <= 1 { Some(m[0].as_str()) } else { m.iter().map(String::as_str).find(|s| !s.is_empty()) };
    picked.map_or_else(|| fallback.to_string(), |s| s.trim().to_string())
}

fn majority(r: &[String]) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for x in r {
        *counts.entry(x).or_insert(0) += 1;
    }
    // Counter.most_common: the first-seen among the most frequent.
    let best = counts.values().copied().max()?;
    r.iter().find(|x| counts[x.as_str()] == best).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(steps: &[(&str, Option<&str>, Option<i64>)]) -> Filter {
        let p = FilterPipeline {
            name: "t".into(),
            filter: steps
                .iter()
                .map(|(f, re, g)| FilterStep {
                    function: f.to_string(),
                    regex_pattern: re.map(str::to_string),
                    group_select: *g,
                    fallback: None,
                })
                .collect(),
        };
        Filter::new(&p).unwrap()
    }

    #[test]
    fn gsm8k_strict_and_flexible() {
        let strict = pipe(&[("regex", Some(r"#### (\-?[0-9\.\,]+)"), None), ("take_first", None, None)]);
        let flex = pipe(&[("regex", Some(r"(-?[$0-9.,]{2,})|(-?[0-9]+)"), Some(-1)), ("take_first", None, None)]);
        let out = "She has 3 apples and buys 12 more, so 15.\n#### 15".to_string();
        assert_eq!(strict.apply(std::slice::from_ref(&out)), vec!["15"]);
        assert_eq!(flex.apply(std::slice::from_ref(&out)), vec!["15"]);
        let no_hash = "The answer is 7 or $1,200.".to_string();
        assert_eq!(strict.apply(std::slice::from_ref(&no_hash)), vec!["[invalid]"]);
        assert_eq!(flex.apply(std::slice::from_ref(&no_hash)), vec!["$1,200."]);
        assert_eq!(flex.apply(&["no digits".to_string()]), vec!["[invalid]"]);
    }

    #[test]
    fn majority_vote_and_whitespace() {
        let f = pipe(&[("remove_whitespace", None, None), ("majority_vote", None, None)]);
        let r: Vec<String> = [" a", "b", "a", " b", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(f.apply(&r), vec!["b"]);
        let bad = FilterPipeline {
            name: "x".into(),
            filter: vec![FilterStep { function: "nope".into(), ..Default::default() }],
        };
        assert!(Filter::new(&bad).unwrap_err().to_string().contains("nope"));
    }
}
