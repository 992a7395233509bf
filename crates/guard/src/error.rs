//! The guard's one error type: bad configuration, bad keys, audit I/O, failed decryption.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rails YAML (or a value in it) is wrong; the message names the field and the value.
    #[error("rails config: {0}")]
    Config(String),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log {path}: {source}")]
    Audit {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Decryption failed: wrong key, or the token was altered or is not one of ours.
    #[error("decrypt: {0}")]
    Decrypt(String),
}
