//! Tokenizers (being written; see the tokenizer task).
pub struct Tokenizer;
