//! Few-shot example selection (lm-eval `api/samplers.py`). `first_n` takes the pool in order;
//! `default` draws at random. When the pool is the evaluated split, the evaluated document is
//! left out (lm-eval compares documents for equality; so do we).
//!
//! Deliberate difference: lm-eval's `default` sampler draws from one `random.Random(1234)`
//! shared by all documents in order, so a document's shots depend on which documents came
//! before it. Ours seeds a generator per document index (1234 + index): the same shots for a
//! document whatever `--limit` or batching is used, though not the very examples lm-eval picks.

use rand::seq::index::sample;
use rand::SeedableRng;
use serde_json::Value as Json;

use crate::{EvalError, Result};

const SEED: u64 = 1234;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    FirstN,
    Random,
}

#[derive(Debug, Clone)]
pub struct Sampler {
    kind: Kind,
    pool: Vec<Json>,
    exclude_eval_doc: bool,
}

impl Sampler {
    pub fn empty() -> Self {
        Self { kind: Kind::FirstN, pool: vec![], exclude_eval_doc: false }
    }

    pub fn new(kind: &str, pool: Vec<Json>, exclude_eval_doc: bool) -> Result<Self> {
        let kind = match kind {
            "first_n" => Kind::FirstN,
            "default" => Kind::Random,
            other => {
                return Err(EvalError::Config(format!(
                    "`fewshot_config.sampler` must be default or first_n. Given: {other}"
                )))
            }
        };
        Ok(Self { kind, pool, exclude_eval_doc })
    }

    pub fn kind(&self) -> &'static str {
        match self.kind {
            Kind::FirstN => "first_n",
            Kind::Random => "default",
        }
    }

    /// `n` shots for the document `doc` (the `index`-th evaluated).
    pub fn sample<'a>(&'a self, n: usize, doc: &Json, index: usize) -> Vec<&'a Json> {
        if n == 0 || self.pool.is_empty() {
            return vec![];
        }
        let keep = |d: &&Json| !self.exclude_eval_doc || *d != doc;
        match self.kind {
            Kind::FirstN => self.pool.iter().filter(keep).take(n).collect(),
            Kind::Random => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(SEED + index as u64);
                let m = (n + 1).min(self.pool.len());
                let picked: Vec<&Json> = sample(&mut rng, self.pool.len(), m)
                    .into_iter()
                    .map(|i| &self.pool[i])
                    .filter(keep)
                    .take(n)
                    .collect();
                picked
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_n_skips_the_evaluated_document() {
        let pool: Vec<Json> = (0..5).map(|i| json!({"i": i})).collect();
        let s = Sampler::new("first_n", pool.clone(), true).unwrap();
        let got: Vec<&Json> = s.sample(2, &pool[0], 0);
        assert_eq!(got, vec![&pool[1], &pool[2]]);
        let s = Sampler::new("first_n", pool.clone(), false).unwrap();
        assert_eq!(s.sample(2, &pool[0], 0), vec![&pool[0], &pool[1]]);
    }

    #[test]
    fn random_is_deterministic_per_document_and_never_the_document_itself() {
        let pool: Vec<Json> = (0..50).map(|i| json!({"i": i})).collect();
        let s = Sampler::new("default", pool.clone(), true).unwrap();
        for i in 0..50 {
            let a = s.sample(5, &pool[i], i);
            assert_eq!(a.len(), 5);
            assert!(!a.contains(&&pool[i]));
            assert_eq!(a, s.sample(5, &pool[i], i));
        }
        assert!(Sampler::new("balanced", pool, true).is_err());
    }
}
