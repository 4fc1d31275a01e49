//! The gateway's one error type.

/// What can go wrong starting or running the gateway (protocol errors are
/// answered to the client with reason codes, not surfaced here).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] fjord_broker::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    /// An append failed; `uncertain`: it may still have been written.
    #[error("publish failed: {message}")]
    Publish { message: String, uncertain: bool },
}

pub type Result<T> = std::result::Result<T, Error>;
