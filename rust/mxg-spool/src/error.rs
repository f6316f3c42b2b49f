use std::path::PathBuf;

/// Everything that can go wrong with the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool file {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("no message {0} in the spool")]
    NotFound(String),
    #[error("the spool committer has stopped")]
    Stopped,
}

impl SpoolError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
