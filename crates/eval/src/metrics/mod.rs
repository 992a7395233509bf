//! Metrics with the definitions lm-eval, sacreBLEU, rouge-score and human-eval use; each file
//! pins its reference's published values in tests.

pub mod bleu;
pub mod choice;
pub mod latex;
pub mod pass_at_k;
pub mod perplexity;
pub mod rouge;
pub mod stderr;
pub mod text;
