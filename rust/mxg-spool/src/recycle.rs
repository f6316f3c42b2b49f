//! Spool files are recycled instead of unlinked.
//!
//! Creating a file on ext4 allocates an inode, and the allocator skips
//! every inode deleted in the last few seconds (`recently_deleted` in
//! fs/ext4/ialloc.c, so a crash cannot confuse an old inode with a new
//! one). A relay creates and deletes one file per message, thousands a
//! second: the profile of the encrypted bench had a quarter of all mxg CPU
//! in that scan. So a finished message's file is renamed into `free/` and
//! emptied, and the next message takes it over: a rename instead of an
//! inode allocation and an inode release.
//!
//! Emptying happens before the file is offered again, so no message text
//! stays behind once its message is finished (the blocks are released just
//! as `unlink` releases them). A free file is a zero-length file with mode
//! 0600; after a crash the pool is read back from `free/`.

use crate::nofollow;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

/// Most empty files kept. Enough to absorb a burst of finished messages
/// while the next ones arrive; beyond it, finished files are unlinked.
pub const MAX_FREE_FILES: usize = 4096;

pub struct FreeFiles {
    dir: PathBuf,
    /// Where new files are made (the spool's `tmp/`) before they join the
    /// pool: an inode allocation holds its directory's lock for as long as
    /// it takes (0.3 to 1.3 ms on a busy ext4, skipping recently freed
    /// inodes), and in `free/` that held up the group commit's renames out
    /// of it.
    new_dir: PathBuf,
    names: Mutex<Vec<String>>,
    cap: usize,
    /// The thread that keeps the pool stocked (`keep_stocked`), and the
    /// level below which a `take` wakes it.
    stocker: Mutex<Option<(Thread, usize)>>,
    stocker_done: Mutex<Option<(JoinHandle<()>, u32)>>,
    stop_stocking: AtomicBool,
}

impl FreeFiles {
    /// A pool over `dir` (which must exist), empty until `take_over`.
    pub fn open(dir: PathBuf, cap: usize) -> Self {
        Self {
            new_dir: dir.with_file_name("tmp"),
            dir,
            names: Mutex::new(Vec::new()),
            cap,
            stocker: Mutex::new(None),
            stocker_done: Mutex::new(None),
            stop_stocking: AtomicBool::new(false),
        }
    }

    /// Takes over the files a previous run left in the pool's directory;
    /// `queued` holds the inode numbers of the messages in `queue/`. Runs
    /// once the relay has dropped its privileges (rule 8a), and never on a
    /// link: a name that is not a plain file of ours is removed, never
    /// followed.
    pub fn take_over(&self, queued: &HashSet<u64>) -> io::Result<()> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if is_second_name_of_queued(&entry, queued) {
                continue;
            }
            // Emptied before it was offered; a crash between the rename
            // and the truncation may have left text behind, so empty again.
            if names.len() < self.cap && truncate(&entry.path()).is_ok() {
                names.push(name);
            } else {
                let _ = fs::remove_file(entry.path());
            }
        }
        self.lock().extend(names);
        Ok(())
    }

    /// Moves the file at `path` (named `name`, unique among spool files)
    /// into the pool and empties it; false when the pool is full and the
    /// caller should unlink the file itself.
    pub fn put(&self, path: &Path, name: &str) -> io::Result<bool> {
        if self.len() >= self.cap {
            return Ok(false);
        }
        let free = self.dir.join(name);
        fs::rename(path, &free)?;
        if let Err(e) = truncate(&free) {
            let _ = fs::remove_file(&free);
            return Err(e);
        }
        self.lock().push(name.to_owned());
        Ok(true)
    }

    /// Takes an empty file from the pool and opens it for writing where it
    /// is, in `free/`: the committer writes the message there and renames it
    /// into `queue/` once it is durable, one rename per message. None when
    /// the pool is empty. A crash before that rename leaves text in a free
    /// file, which `open` empties again.
    pub fn take(&self) -> Option<(PathBuf, File)> {
        loop {
            let path = self.take_path()?;
            if let Some(taken) = open_empty(&path) {
                return Some(taken);
            }
        }
    }

    /// Takes the name of an empty file from the pool without opening it:
    /// a reservation for a message still to come (`Spool::reserve_ready`).
    pub fn take_path(&self) -> Option<PathBuf> {
        let (name, left) = {
            let mut names = self.lock();
            let name = names.pop();
            (name, names.len())
        };
        self.wake_stocker(left);
        name.map(|n| self.dir.join(n))
    }

    /// Creates a new empty file (`spare-<id>` in `tmp/`), outside the pool:
    /// for a reservation (`Spool::reserve_new`), or to join it. It allocates
    /// an inode.
    pub fn make_empty(&self) -> io::Result<PathBuf> {
        let path = self
            .new_dir
            .join(format!("spare-{}", crate::new_queue_id()));
        nofollow::create_new(&path)?;
        Ok(path)
    }

    /// Returns an unused reservation (still empty) to the pool, or removes
    /// it when the pool is full.
    pub fn give_back(&self, path: &Path) {
        let name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        if let Some(name) = name.filter(|_| self.len() < self.cap) {
            let here = self.dir.join(&name);
            if path == here || fs::rename(path, &here).is_ok() {
                self.lock().push(name);
                return;
            }
        }
        let _ = fs::remove_file(path);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Creates empty files until the pool holds `target` (at most its
    /// cap); returns how many it made.
    pub fn top_up(&self, target: usize) -> io::Result<usize> {
        let mut made = 0;
        while self.len() < target.min(self.cap) && !self.stop_stocking.load(Ordering::Acquire) {
            let made_at = self.make_empty()?;
            let name = made_at
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned);
            let name = name.expect("spare names are UTF-8");
            fs::rename(&made_at, self.dir.join(&name))?;
            self.lock().push(name);
            made += 1;
        }
        Ok(made)
    }

    /// Stops the stocking thread and waits for it: no file is made after
    /// this returns (the spool's directory may be removed then).
    pub fn stop_stocking(&self) {
        self.stop_stocking.store(true, Ordering::Release);
        let done = self
            .stocker_done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        // After fork() the thread exists only in the parent: no join here.
        if let Some((handle, pid)) = done {
            if pid == std::process::id() {
                handle.thread().unpark();
                let _ = handle.join();
            }
        }
    }

    fn wake_stocker(&self, left: usize) {
        let stocker = self
            .stocker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((thread, low)) = stocker.as_ref() {
            if left < *low {
                thread.unpark();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A panic while holding the lock cannot leave the list inconsistent
        // (push and pop are single steps), so a poisoned lock is still good.
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps `target` empty files ready from a background thread, so that the
/// committer, on the path to every 250, takes a file instead of allocating
/// an inode (on a busy ext4 without a journal that allocation took 0.2 to
/// 0.8 ms, one after the other, inside each group commit). The thread tops
/// the pool up when a `take` leaves it below half of `target`, and ends
/// once the pool is dropped. The files are created empty: nothing of any
/// message is in them.
pub fn keep_stocked(pool: &Arc<FreeFiles>, target: usize) -> io::Result<()> {
    let weak: Weak<FreeFiles> = Arc::downgrade(pool);
    let handle = thread::Builder::new()
        .name("mxg-spool-stock".into())
        .spawn(move || loop {
            {
                let Some(pool) = weak.upgrade() else { return };
                if pool.stop_stocking.load(Ordering::Acquire) {
                    return;
                }
                // A full disk or a permission problem: the committer makes
                // its own files (and reports the error) as before.
                let _ = pool.top_up(target);
            }
            thread::park_timeout(Duration::from_secs(1));
        })?;
    *pool
        .stocker
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some((handle.thread().clone(), target / 2));
    *pool
        .stocker_done
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((handle, std::process::id()));
    Ok(())
}

/// True for a leftover in `free/` or `tmp/` that is another name of a
/// queued message: a crash right after the committer renamed it into
/// `queue/` can keep the old directory entry too (the batch fsyncs only
/// `queue/`; a file system without a journal persists each directory on
/// its own). Emptying or unlinking that name would destroy an acknowledged
/// message, so the extra name is removed only where the link count shows
/// the queued name still holds the inode, and otherwise left alone.
pub(crate) fn is_second_name_of_queued(entry: &fs::DirEntry, queued: &HashSet<u64>) -> bool {
    if !queued.contains(&entry.ino()) {
        return false;
    }
    if entry.metadata().is_ok_and(|m| m.nlink() >= 2) {
        let _ = fs::remove_file(entry.path());
    }
    true
}

/// Inode numbers of the files in `dir` (read from the directory entries,
/// without a stat each).
pub(crate) fn inodes_in(dir: &Path) -> io::Result<HashSet<u64>> {
    fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.ino()))
        .collect()
}

/// Opens a pool file (or a reserved one) for writing; None, and the file
/// gone, if it is missing or, against every expectation, not empty: a
/// longer file would leave an old tail behind the new message.
pub(crate) fn open_empty(path: &Path) -> Option<(PathBuf, File)> {
    match nofollow::open_write(path, false) {
        Ok(file) if file.metadata().is_ok_and(|m| m.len() == 0) => Some((path.to_owned(), file)),
        Ok(_) | Err(_) => {
            let _ = fs::remove_file(path);
            None
        }
    }
}

fn truncate(path: &Path) -> io::Result<()> {
    nofollow::open_write(path, true).map(drop::<File>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn taken_over(dir: PathBuf, cap: usize, queued: &HashSet<u64>) -> FreeFiles {
        let pool = FreeFiles::open(dir, cap);
        pool.take_over(queued).unwrap();
        pool
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mxg-recycle-{tag}-{}", crate::new_queue_id()));
        fs::create_dir_all(dir.join("free")).unwrap();
        fs::create_dir_all(dir.join("tmp")).unwrap();
        dir
    }

    #[test]
    fn the_stocker_keeps_empty_files_ready_and_refills_after_takes() {
        let dir = tempdir("stock");
        let pool = Arc::new(taken_over(dir.join("free"), 8, &HashSet::new()));
        keep_stocked(&pool, 6).unwrap();
        let wait_for = |n: usize| {
            for _ in 0..500 {
                if pool.len() >= n {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
            panic!("the pool holds {} files, wanted {n}", pool.len());
        };
        wait_for(6);
        for i in 0..4 {
            let (path, mut f) = pool.take().unwrap();
            f.write_all(b"text").unwrap();
            fs::rename(path, dir.join(format!("m{i}"))).unwrap();
        }
        // Four taken leave two, below half of six: it is topped up again.
        wait_for(6);
        let spares: Vec<_> = fs::read_dir(dir.join("free")).unwrap().collect();
        assert_eq!(spares.len(), 6);
        for f in spares {
            assert_eq!(f.unwrap().metadata().unwrap().len(), 0);
        }
        pool.stop_stocking();
        let (path, _) = pool.take().unwrap();
        fs::rename(path, dir.join("last")).unwrap();
        thread::sleep(Duration::from_millis(50));
        assert_eq!(pool.len(), 5, "no file made after stop_stocking");
        drop(pool);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_put_file_is_emptied_and_its_inode_reused() {
        let dir = tempdir("reuse");
        let pool = taken_over(dir.join("free"), 4, &HashSet::new());
        let old = dir.join("old");
        fs::write(&old, b"secret text").unwrap();
        let inode = fs::metadata(&old).unwrap().ino();
        assert!(pool.put(&old, "old").unwrap());
        assert!(!old.exists());
        assert_eq!(fs::metadata(dir.join("free/old")).unwrap().len(), 0);
        let (path, mut file) = pool.take().unwrap();
        assert_eq!(path, dir.join("free/old"), "written where it lies");
        file.write_all(b"x").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(fs::read(&path).unwrap(), b"x");
        assert!(pool.take().is_none());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_full_pool_declines_and_leftovers_are_taken_over_empty() {
        let dir = tempdir("full");
        fs::write(dir.join("free/a"), b"left by a crash").unwrap();
        fs::write(dir.join("free/b"), b"").unwrap();
        fs::write(dir.join("free/c"), b"").unwrap();
        let pool = taken_over(dir.join("free"), 2, &HashSet::new());
        assert_eq!(pool.len(), 2);
        assert_eq!(fs::read_dir(dir.join("free")).unwrap().count(), 2);
        for entry in fs::read_dir(dir.join("free")).unwrap() {
            assert_eq!(entry.unwrap().metadata().unwrap().len(), 0);
        }
        let f = dir.join("f");
        fs::write(&f, b"y").unwrap();
        assert!(!pool.put(&f, "f").unwrap());
        assert!(f.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_free_name_of_a_queued_message_is_never_emptied() {
        let dir = tempdir("twice");
        fs::create_dir(dir.join("queue")).unwrap();
        // As a crash can leave a rename out of free/: the message under
        // both names, counted once (no fsck) or twice (after fsck).
        fs::write(dir.join("queue/once"), b"acknowledged").unwrap();
        fs::hard_link(dir.join("queue/once"), dir.join("free/once")).unwrap();
        fs::write(dir.join("queue/twice"), b"acknowledged too").unwrap();
        fs::hard_link(dir.join("queue/twice"), dir.join("free/twice")).unwrap();
        fs::write(dir.join("free/spare"), b"").unwrap();
        let queued = inodes_in(&dir.join("queue")).unwrap();
        let pool = taken_over(dir.join("free"), 4, &queued);
        assert_eq!(pool.len(), 1, "only the spare is offered");
        assert_eq!(fs::read(dir.join("queue/once")).unwrap(), b"acknowledged");
        assert_eq!(
            fs::read(dir.join("queue/twice")).unwrap(),
            b"acknowledged too"
        );
        assert!(!dir.join("free/twice").exists(), "an extra link is dropped");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_free_file_that_is_not_empty_is_not_taken() {
        let dir = tempdir("dirty");
        fs::write(dir.join("free/a"), b"").unwrap();
        let pool = taken_over(dir.join("free"), 4, &HashSet::new());
        fs::write(dir.join("free/a"), b"an old tail").unwrap();
        assert!(pool.take().is_none());
        assert!(!dir.join("free/a").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_vanished_free_file_is_skipped() {
        let dir = tempdir("gone");
        fs::write(dir.join("free/a"), b"").unwrap();
        fs::write(dir.join("free/b"), b"").unwrap();
        let pool = taken_over(dir.join("free"), 4, &HashSet::new());
        fs::remove_file(dir.join("free/b")).unwrap();
        fs::remove_file(dir.join("free/a")).unwrap();
        assert!(pool.take().is_none());
        fs::remove_dir_all(dir).unwrap();
    }
}
