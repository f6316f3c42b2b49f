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
    #[error("message {0} is in the spool already with other bytes")]
    Conflict(String),
    #[error("the spool committer has stopped")]
    Stopped,
}

impl SpoolError {
    /// The file system is full or the user's quota spent (ENOSPC, EDQUOT):
    /// a condition to report as such (RFC 3463 4.3.1, "mail system full"),
    /// which clears when space returns.
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, Self::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)))
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
