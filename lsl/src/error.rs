//! Why the bridge stops.

use vigil_ingest::client::ClientError;

/// Bridge failures.
#[derive(Debug, thiserror::Error)]
pub enum LslError {
    /// The configuration cannot work (no streams, a missing token, a bad predicate).
    #[error("lsl configuration: {0}")]
    Config(String),
    /// A matching stream cannot be carried faithfully (unit, rate, format); nothing of it is
    /// sent.
    #[error("LSL stream {stream:?} refused: {why}")]
    Refused {
        /// The LSL stream name.
        stream: String,
        /// What is wrong, and what to change.
        why: String,
    },
    /// liblsl failed (resolving, opening an inlet, pulling).
    #[error("liblsl: {0}")]
    Lsl(String),
    /// The gateway client failed (token refused, closed); the cause is the error's source.
    #[error("stream {stream:?}")]
    Client {
        /// The configured stream's key.
        stream: String,
        /// The client's error.
        source: ClientError,
    },
    /// An inlet thread could not be started or panicked.
    #[error("inlet thread: {0}")]
    Thread(String),
}

impl From<lsl::Error> for LslError {
    fn from(err: lsl::Error) -> Self {
        Self::Lsl(format!("{err:?}"))
    }
}
