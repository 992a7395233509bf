//! The engine's error type.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] prom_models::Error),

    /// A request parameter is out of range; the message names the field, the limit and the value.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The engine could not run a request (a failed step, shutdown).
    #[error("engine: {0}")]
    Engine(String),

    #[error("{op}: {source}")]
    Tensor {
        op: &'static str,
        #[source]
        source: candle_core::Error,
    },
}

pub(crate) fn tensor_err(op: &'static str) -> impl FnOnce(candle_core::Error) -> Error {
    move |source| Error::Tensor { op, source }
}
