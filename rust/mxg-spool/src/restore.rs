//! A spool file as bytes, out and back in: how a message's exact spool
//! file reaches the shared store before its `250` and comes back from it
//! onto a node (docs/cluster.md, "Bodies before the 250").
//!
//! `restore` keeps the spool's rules: the bytes are parsed as a spool file
//! first, so nothing malformed ever lands in `queue/`; the file is written
//! under `tmp/`, made durable, and renamed into `queue/` without replacing
//! anything there (`RENAME_NOREPLACE`), then the directory is synced, as
//! the group commit does (rule 9). Reads never follow a link (rule 8a).

use crate::commit::{read_existing, Spool};
use crate::error::SpoolError;
use crate::file::parse_spool_file;
use crate::nofollow;
use crate::queue_id::is_queue_id;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

impl Spool {
    /// The spool file of a message exactly as it is on disk: header,
    /// envelope and message octets.
    pub fn read_raw(&self, id: &str) -> Result<Vec<u8>, SpoolError> {
        let path = self.path_of(id)?;
        read_existing(&path, id)
    }

    /// Writes a spool file from `raw` (as `read_raw` gave it) and returns
    /// its queue id; durable when this returns. The same bytes under that
    /// id already are a no-op; other bytes under it are an error
    /// (`SpoolError::Conflict`), never overwritten.
    pub fn restore(&self, raw: &[u8]) -> Result<String, SpoolError> {
        let (envelope, _) = parse_spool_file(Path::new("<restored spool file>"), raw)?;
        let id = envelope.queue_id;
        if !is_queue_id(&id) {
            return Err(SpoolError::Malformed {
                path: "<restored spool file>".into(),
                reason: format!("{id:?} is not a queue id"),
            });
        }
        let target = self.queue.join(&id);
        if let Some(done) = Self::same_or_conflict(&id, &target, raw)? {
            return Ok(done);
        }
        let tmp = self.tmp.join(format!("{id}.restore"));
        // A leftover of an attempt that failed half-way was never in queue/.
        let _ = fs::remove_file(&tmp);
        let written = nofollow::create_new(&tmp).and_then(|mut file| {
            file.write_all(raw)?;
            file.sync_all()
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(SpoolError::io(&tmp, e));
        }
        if let Err(e) = rename_no_replace(&tmp, &target) {
            let _ = fs::remove_file(&tmp);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                // Restored by someone else meanwhile: the same check again.
                return match Self::same_or_conflict(&id, &target, raw)? {
                    Some(done) => Ok(done),
                    None => Err(SpoolError::io(&target, e)),
                };
            }
            return Err(SpoolError::io(&target, e));
        }
        File::open(&self.queue)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| SpoolError::io(&self.queue, e))?;
        Ok(id)
    }

    /// `Some(id)` when `target` holds exactly `raw`, `None` when there is
    /// no such file, `Conflict` when it holds something else.
    fn same_or_conflict(id: &str, target: &Path, raw: &[u8]) -> Result<Option<String>, SpoolError> {
        match read_existing(target, id) {
            Ok(existing) if existing == raw => Ok(Some(id.to_owned())),
            Ok(_) => Err(SpoolError::Conflict(id.to_owned())),
            Err(SpoolError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `rename(2)` that fails with `EEXIST` instead of replacing `to`.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        let (from, to) = (c(from)?, c(to)?);
        // SAFETY: two NUL-terminated paths that live across the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        if fs::symlink_metadata(to).is_ok() {
            return Err(std::io::ErrorKind::AlreadyExists.into());
        }
        fs::rename(from, to)
    }
}

#[cfg(test)]
mod tests {
    use crate::file::spool_file_bytes;
    use crate::{new_queue_id, Envelope, Recipient, Spool, SpoolError};
    use std::fs;
    use std::path::PathBuf;

    fn envelope(id: &str) -> Envelope {
        serde_json::from_value(serde_json::json!({
            "queue_id": id, "received_ms": 1, "sender": "a@example.org",
            "recipients": [Recipient { address: "b@example.net".into(), notify: vec![], orcpt: None }],
            "origin": "smtp", "size": 5
        }))
        .unwrap()
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mxg-restore-test-{}", new_queue_id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn rule9_raw_bytes_come_back_as_the_same_durable_file() {
        let (from_dir, to_dir) = (tempdir(), tempdir());
        let (from, to) = (
            Spool::open(&from_dir).unwrap(),
            Spool::open(&to_dir).unwrap(),
        );
        let id = new_queue_id();
        from.commit_blocking(&envelope(&id), b"hello").unwrap();
        let raw = from.read_raw(&id).unwrap();
        assert_eq!(raw, spool_file_bytes(&envelope(&id), b"hello"));
        assert_eq!(to.restore(&raw).unwrap(), id);
        assert_eq!(to.read(&id).unwrap().1, b"hello");
        assert_eq!(to.read_raw(&id).unwrap(), raw);
        // Again with the same bytes: nothing changes.
        assert_eq!(to.restore(&raw).unwrap(), id);
        assert_eq!(to.list().unwrap(), vec![id.clone()]);
        assert_eq!(fs::read_dir(to_dir.join("tmp")).unwrap().count(), 0);
        let mode = fs::metadata(to_dir.join("queue").join(&id)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        fs::remove_dir_all(from_dir).unwrap();
        fs::remove_dir_all(to_dir).unwrap();
    }

    #[test]
    fn other_bytes_under_the_same_id_are_refused_and_kept() {
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        let id = new_queue_id();
        spool.commit_blocking(&envelope(&id), b"hello").unwrap();
        let other = spool_file_bytes(&envelope(&id), b"HELLO");
        assert!(matches!(
            spool.restore(&other),
            Err(SpoolError::Conflict(c)) if c == id
        ));
        assert_eq!(spool.read(&id).unwrap().1, b"hello");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn malformed_bytes_and_bad_ids_never_reach_the_queue() {
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        assert!(matches!(
            spool.restore(b"MXG1 999\n{}"),
            Err(SpoolError::Malformed { .. })
        ));
        let bad = spool_file_bytes(&envelope("../../etc/passwd"), b"x");
        assert!(matches!(
            spool.restore(&bad),
            Err(SpoolError::Malformed { .. })
        ));
        assert!(matches!(
            spool.read_raw("../x"),
            Err(SpoolError::NotFound(_))
        ));
        assert!(spool.list().unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rule_8a_a_planted_link_is_not_read_as_a_message() {
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        let id = new_queue_id();
        let secret = dir.join("secret");
        fs::write(&secret, spool_file_bytes(&envelope(&id), b"hello")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("queue").join(&id)).unwrap();
        assert!(spool.read_raw(&id).is_err());
        let raw = fs::read(&secret).unwrap();
        assert!(spool.restore(&raw).is_err());
        fs::remove_dir_all(dir).unwrap();
    }
}
