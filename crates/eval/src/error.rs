use std::path::PathBuf;

/// Everything that can go wrong in an evaluation, with the file, task or field it concerns.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("task config: {0}")]
    Config(String),
    #[error("task `{task}`: {msg}")]
    Task { task: String, msg: String },
    #[error("template `{template}`: {msg}")]
    Template { template: String, msg: String },
    #[error("dataset {path}: {msg}")]
    Data { path: PathBuf, msg: String },
    #[error("backend: {0}")]
    Backend(String),
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

impl EvalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EvalError {
        let path = path.into();
        move |source| EvalError::Io { op, path, source }
    }
    pub(crate) fn task(task: &str, msg: impl Into<String>) -> EvalError {
        EvalError::Task { task: task.to_string(), msg: msg.into() }
    }
}
