//! Opening spool paths without following links (ARCHITECTURE.md, rule 8a).
//!
//! The spool belongs to the relay's unprivileged user, and so does every
//! name in it. A process running as that user (or an attacker who took it
//! over) can plant `free/x -> /etc/shadow`; a relay that opened the name
//! normally would truncate, read or deliver the target with its own rights.
//! So every spool file is opened with `O_NOFOLLOW` (a symlink fails with
//! `ELOOP`) and `O_NONBLOCK` (a planted FIFO cannot hang the open), and is
//! used only if it is a regular file. Spool directories must be real
//! directories, not links to one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

const FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// Opens an existing regular file for writing, without following a link.
pub(crate) fn open_write(path: &Path, truncate: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .truncate(truncate)
        .custom_flags(FLAGS)
        .open(path)?;
    regular(file)
}

/// Creates a new file, mode 0600 (`O_EXCL`: never an existing name, and
/// never through a link).
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(FLAGS)
        .open(path)
}

/// Reads a whole regular file, without following a link.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = regular(
        OpenOptions::new()
            .read(true)
            .custom_flags(FLAGS)
            .open(path)?,
    )?;
    let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Creates `dir` (mode 0700) if needed and checks that it is a directory
/// itself, not a link to one.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if fs::symlink_metadata(dir)?.file_type().is_dir() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a directory (a symlink in the spool is refused)",
        ))
    }
}

fn regular(file: File) -> io::Result<File> {
    if file.metadata()?.file_type().is_file() {
        Ok(file)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn rule_8a_a_symlink_is_never_opened_truncated_or_read() {
        let dir = std::env::temp_dir().join(format!("mxg-nofollow-{}", crate::new_queue_id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("target");
        fs::write(&target, b"precious").unwrap();
        let link = dir.join("link");
        symlink(&target, &link).unwrap();
        assert!(open_write(&link, true).is_err());
        assert!(read(&link).is_err());
        assert!(create_new(&link).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        let linked_dir = dir.join("linked-dir");
        symlink(&dir, &linked_dir).unwrap();
        assert!(ensure_dir(&linked_dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
