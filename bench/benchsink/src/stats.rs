//! Counters shared by all connections, and their JSON snapshot file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters. Relaxed atomics suffice: each counter is read on
/// its own and only needs to be eventually exact, not ordered with the others.
#[derive(Debug, Default)]
pub struct Stats {
    messages: AtomicU64,
    recipients: AtomicU64,
    connections: AtomicU64,
    tls_connections: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub messages: u64,
    pub recipients: u64,
    pub connections: u64,
    pub tls_connections: u64,
}

impl Stats {
    /// Counts one accepted message and returns its 1-based sequence number
    /// (used as the queue id in the reply).
    pub fn message(&self) -> u64 {
        self.messages.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn recipient(&self) {
        self.recipients.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tls_connection(&self) {
        self.tls_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            messages: self.messages.load(Ordering::Relaxed),
            recipients: self.recipients.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            tls_connections: self.tls_connections.load(Ordering::Relaxed),
        }
    }
}

impl Snapshot {
    pub fn to_json(self) -> String {
        serde_json::json!({
            "messages": self.messages,
            "recipients": self.recipients,
            "connections": self.connections,
            "tls_connections": self.tls_connections,
        })
        .to_string()
    }

    /// Replaces `path` atomically: write a temporary file in the same
    /// directory, then rename over the target, so a reader polling the file
    /// never sees a partial JSON document.
    pub async fn write_atomic(self, path: &Path) -> io::Result<()> {
        let tmp = temp_path(path);
        tokio::fs::write(&tmp, self.to_json() + "\n").await?;
        tokio::fs::rename(&tmp, path).await
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let s = Stats::default();
        assert_eq!(s.message(), 1);
        s.recipient();
        s.recipient();
        s.connection();
        let v: serde_json::Value = serde_json::from_str(&s.snapshot().to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"messages": 1, "recipients": 2, "connections": 1, "tls_connections": 0})
        );
    }

    #[tokio::test]
    async fn atomic_write() {
        let dir = std::env::temp_dir().join(format!("benchsink-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stats.json");
        let snap = Snapshot {
            messages: 5,
            ..Snapshot::default()
        };
        snap.write_atomic(&path).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"messages\":5"), "{text}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "temp file left behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
