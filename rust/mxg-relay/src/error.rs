/// Errors the engine reports to its caller (mapped to Python exceptions in
/// one place, `mxg-py/src/error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid engine configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error(transparent)]
    Spool(#[from] mxg_spool::SpoolError),
    #[error("invalid delivery job: {0}")]
    Job(String),
    #[error("the engine is shut down")]
    Stopped,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
