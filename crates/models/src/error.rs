//! The one error type of `prom-models`. Every variant carries enough context (file, tensor,
//! field, value) for a user to fix the input without reading our source.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A model file exists but its contents are not what its format promises.
    #[error("{path}: {msg}")]
    BadFile { path: PathBuf, msg: String },

    /// A config value is missing, has the wrong type or is out of range.
    #[error("config `{field}`: {msg}")]
    Config { field: String, msg: String },

    #[error("unsupported architecture `{arch}` (supported: {supported})")]
    UnknownArchitecture { arch: String, supported: String },

    #[error("tensor `{name}` not found in {path}")]
    MissingTensor { name: String, path: PathBuf },

    #[error("tensor `{name}` in {path}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch { name: String, path: PathBuf, expected: Vec<usize>, found: Vec<usize> },

    /// A caller passed something the model cannot run (a token id past the vocabulary, an empty
    /// sequence, a sequence longer than learned positions allow).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    ChatTemplate(String),

    /// Resolving a model name to files failed; the message lists what was tried where.
    #[error("{0}")]
    ModelNotFound(String),

    #[error("{op}: {source}")]
    Tensor {
        op: String,
        #[source]
        source: candle_core::Error,
    },
}

impl Error {
    pub fn bad_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), msg: msg.into() }
    }
    pub fn config(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { field: field.into(), msg: msg.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

impl From<candle_core::Error> for Error {
    fn from(source: candle_core::Error) -> Self {
        Error::Tensor { op: "tensor op".into(), source }
    }
}

/// Adds the name of the operation to a candle error: `x.matmul(w).ctx("attn.q_proj")?`.
pub trait TensorContext<T> {
    fn ctx(self, op: impl Into<String>) -> Result<T>;
}

impl<T> TensorContext<T> for std::result::Result<T, candle_core::Error> {
    fn ctx(self, op: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Tensor { op: op.into(), source })
    }
}
