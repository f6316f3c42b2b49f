//! The spool directory and its group committer.
//!
//! Sessions hand finished messages to one committer thread. It takes all
//! that are waiting as one batch, writes each into an empty file of
//! `free/` (or a new one in `tmp/`), makes them durable together (one
//! `syncfs`, or an `fdatasync` each for small batches), renames them into
//! `queue/` and fsyncs that directory once for the whole batch. Only then
//! are the sessions told, and only then may they say "250" (ARCHITECTURE.md
//! rule 9). While one batch is on its way to disk the next one gathers, so
//! the fsync cost is shared under load and nothing is ever skipped.
//!
//! Files of finished messages are recycled through `free/` rather than
//! unlinked (see `recycle.rs` for why).

use crate::envelope::Envelope;
use crate::error::SpoolError;
use crate::file::{parse_spool_file, spool_file_head};
use crate::nofollow;
use crate::queue_id::is_queue_id;
use crate::recycle::{inodes_in, is_second_name_of_queued, open_empty, FreeFiles, MAX_FREE_FILES};
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

/// Called by the committer thread once the message is durable, or failed.
pub type CommitCallback = Box<dyn FnOnce(Result<(), SpoolError>) + Send>;

struct Pending {
    id: String,
    /// The spool file's start: header, envelope and any prefix of the
    /// message (the trace field).
    head: Vec<u8>,
    /// The rest of the message, shared with the session's content scanner
    /// instead of copied (a 40 MB message is held once, not twice).
    body: Arc<Vec<u8>>,
    done: CommitCallback,
    /// The empty file reserved for this message, if its session took one.
    reserved: Option<PathBuf>,
}

/// An empty spool file set aside for a message still to come. A session
/// takes one before the transaction, as Postfix's cleanup creates its
/// queue file at MAIL: when the free pool is empty, the inode is allocated
/// then, in the session's own time, and not inside the group commit that
/// every `250` of a batch waits for (with a new file per message on a busy
/// ext4 that allocation cost 0.3 to 1.3 ms each, one after the other).
#[derive(Debug)]
pub struct Reserved {
    path: PathBuf,
}

/// Most messages in one batch; bounds the work between two acknowledgements.
const MAX_BATCH: usize = 512;

/// From this many messages in a batch on, one `syncfs` makes all of them
/// durable instead of one `fdatasync` each. Every `fdatasync` ends in its
/// own flush of the device cache (about 1 ms on the benchmark machine's
/// virtio disk, and concurrent ones barely overlap), so a batch of N waited
/// N flushes for its 250s: with 1,000 concurrent sessions, batches of
/// hundreds and accept latencies near a second. `syncfs(2)` writes back
/// what is dirty on the spool's file system and flushes once (and, since
/// Linux 5.8, reports write-back errors). Below this size the per-file path
/// costs as many flushes and leaves other files of the file system alone.
const SYNCFS_FROM: usize = if cfg!(target_os = "linux") {
    4
} else {
    usize::MAX
};

/// A spool directory with its committer thread.
pub struct Spool {
    root: PathBuf,
    pub(crate) queue: PathBuf,
    pub(crate) tmp: PathBuf,
    free: Arc<FreeFiles>,
    tx: mpsc::Sender<Pending>,
}

impl Spool {
    /// Keeps `target` empty files ready for new messages
    /// (`recycle::keep_stocked`); the engine asks for it, tools do not.
    pub fn keep_free_files_stocked(&self, target: usize) -> Result<(), SpoolError> {
        crate::recycle::keep_stocked(&self.free, target).map_err(|e| SpoolError::io(&self.root, e))
    }

    /// Stops `keep_free_files_stocked` and waits until it made its last file.
    pub fn stop_stocking(&self) {
        self.free.stop_stocking();
    }

    /// Opens (creating as needed, mode 0700) the spool under `root` and
    /// starts its committer. Reads and changes no file in it: what a
    /// previous run left in `tmp/` and `free/` is cleared by `tidy`, which
    /// the relay calls after dropping its privileges (rule 8a). A spool
    /// directory that is a symlink is refused.
    pub fn open(root: &Path) -> Result<Arc<Self>, SpoolError> {
        let queue = root.join("queue");
        let tmp = root.join("tmp");
        let free_dir = root.join("free");
        for dir in [root, &queue, &tmp, &free_dir] {
            nofollow::ensure_dir(dir).map_err(|e| SpoolError::io(dir, e))?;
        }
        let free = Arc::new(FreeFiles::open(free_dir, MAX_FREE_FILES));
        let queue_dir = File::open(&queue).map_err(|e| SpoolError::io(&queue, e))?;
        let (tx, rx) = mpsc::channel::<Pending>();
        let committer = Committer {
            tmp: tmp.clone(),
            queue: queue.clone(),
            queue_dir,
            free: Arc::clone(&free),
        };
        thread::Builder::new()
            .name("mxg-spool-commit".into())
            .spawn(move || committer.run(&rx))
            .map_err(|e| SpoolError::io(root, e))?;
        Ok(Arc::new(Self {
            root: root.to_owned(),
            queue,
            tmp,
            free,
            tx,
        }))
    }

    /// Clears what a previous run left outside `queue/`: leftovers in
    /// `tmp/` were never acknowledged and are removed, and the files of
    /// `free/` are emptied and taken into the pool, except where a crash
    /// left either as another name of a queued message
    /// (`is_second_name_of_queued`). Call it once, before the first
    /// message arrives and with the relay's own (unprivileged) rights.
    pub fn tidy(&self) -> Result<(), SpoolError> {
        let queued = inodes_in(&self.queue).map_err(|e| SpoolError::io(&self.queue, e))?;
        for entry in fs::read_dir(&self.tmp).map_err(|e| SpoolError::io(&self.tmp, e))? {
            let entry = entry.map_err(|e| SpoolError::io(&self.tmp, e))?;
            if !is_second_name_of_queued(&entry, &queued) {
                let _ = fs::remove_file(entry.path());
            }
        }
        self.free
            .take_over(&queued)
            .map_err(|e| SpoolError::io(&self.tmp, e))
    }

    /// A reservation from the free pool, if it has a file: no system call.
    pub fn reserve_ready(&self) -> Option<Reserved> {
        self.free.take_path().map(|path| Reserved { path })
    }

    /// A reservation made now: creates an empty file (an inode allocation,
    /// so not on an async worker).
    pub fn reserve_new(&self) -> Result<Reserved, SpoolError> {
        self.free
            .make_empty()
            .map(|path| Reserved { path })
            .map_err(|e| SpoolError::io(&self.root, e))
    }

    /// Hands back a reservation no message was written into.
    pub fn release(&self, reserved: Reserved) {
        let Reserved { path } = reserved;
        self.free.give_back(&path);
    }

    /// Queues a message for the next group commit; `done` runs on the
    /// committer thread when it is durable.
    pub fn commit(&self, envelope: &Envelope, message: &[u8], done: CommitCallback) {
        self.commit_reserved(None, envelope, message, done);
    }

    /// `commit`, writing into `reserved` when given.
    pub fn commit_reserved(
        &self,
        reserved: Option<Reserved>,
        envelope: &Envelope,
        message: &[u8],
        done: CommitCallback,
    ) {
        self.commit_shared(reserved, envelope, message, Arc::new(Vec::new()), done);
    }

    /// `commit_reserved` for a message given as a small prefix (its trace
    /// field) and a body shared with the caller: the body is written from
    /// where it lies, not copied.
    pub fn commit_shared(
        &self,
        reserved: Option<Reserved>,
        envelope: &Envelope,
        prefix: &[u8],
        body: Arc<Vec<u8>>,
        done: CommitCallback,
    ) {
        let mut head = spool_file_head(envelope, prefix.len());
        head.extend_from_slice(prefix);
        let pending = Pending {
            id: envelope.queue_id.clone(),
            head,
            body,
            done,
            reserved: reserved.map(|r| r.path),
        };
        if let Err(mpsc::SendError(p)) = self.tx.send(pending) {
            (p.done)(Err(SpoolError::Stopped));
        }
    }

    /// Writes a message and waits until it is durable (for callers that are
    /// not on an async runtime, such as DSN injection from Python).
    pub fn commit_blocking(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SpoolError> {
        let (tx, rx) = mpsc::channel();
        self.commit(
            envelope,
            message,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or(Err(SpoolError::Stopped))
    }

    pub(crate) fn path_of(&self, id: &str) -> Result<PathBuf, SpoolError> {
        if !is_queue_id(id) {
            return Err(SpoolError::NotFound(id.to_owned()));
        }
        Ok(self.queue.join(id))
    }

    /// Reads a spooled message: its envelope and its message octets.
    pub fn read(&self, id: &str) -> Result<(Envelope, Vec<u8>), SpoolError> {
        let path = self.path_of(id)?;
        let mut bytes = read_existing(&path, id)?;
        let (envelope, start) = parse_spool_file(&path, &bytes)?;
        bytes.drain(..start);
        Ok((envelope, bytes))
    }

    /// The size of a spooled message's file (envelope included).
    pub fn file_len(&self, id: &str) -> Result<u64, SpoolError> {
        let path = self.path_of(id)?;
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(SpoolError::NotFound(id.to_owned()))
            }
            Err(e) => Err(SpoolError::io(path, e)),
        }
    }

    /// Reads only the envelope of a spooled message.
    pub fn read_envelope(&self, id: &str) -> Result<Envelope, SpoolError> {
        let path = self.path_of(id)?;
        let bytes = read_existing(&path, id)?;
        Ok(parse_spool_file(&path, &bytes)?.0)
    }

    /// Removes a message whose recipients all have a final state. No fsync:
    /// a file that comes back after a crash is recognised as finished by
    /// the control plane's store and removed again (rule 11). The file is
    /// emptied and kept for a later message while the free pool has room.
    pub fn remove(&self, id: &str) -> Result<(), SpoolError> {
        let path = self.path_of(id)?;
        let recycled = self.free.put(&path, id);
        if let Ok(true) = recycled {
            return Ok(());
        }
        if let Err(e) = &recycled {
            if e.kind() == std::io::ErrorKind::NotFound {
                return Err(SpoolError::NotFound(id.to_owned()));
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(SpoolError::NotFound(id.to_owned()))
            }
            Err(e) => Err(SpoolError::io(path, e)),
        }
    }

    /// Ids of all spooled messages, oldest first.
    pub fn list(&self) -> Result<Vec<String>, SpoolError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.queue).map_err(|e| SpoolError::io(&self.queue, e))? {
            let entry = entry.map_err(|e| SpoolError::io(&self.queue, e))?;
            if let Some(name) = entry.file_name().to_str() {
                if is_queue_id(name) {
                    ids.push(name.to_owned());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

pub(crate) fn read_existing(path: &Path, id: &str) -> Result<Vec<u8>, SpoolError> {
    nofollow::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SpoolError::NotFound(id.to_owned())
        } else {
            SpoolError::io(path, e)
        }
    })
}

struct Committer {
    tmp: PathBuf,
    queue: PathBuf,
    queue_dir: File,
    free: Arc<FreeFiles>,
}

impl Committer {
    fn run(self, rx: &mpsc::Receiver<Pending>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&self, batch: Vec<Pending>) {
        let whole_file_system = batch.len() >= SYNCFS_FROM;
        // Write every file first, so the kernel can put them on disk together.
        let mut written: Vec<(Pending, PathBuf, File)> = Vec::with_capacity(batch.len());
        for p in batch {
            match self.write_unqueued(&p) {
                Ok((path, file)) => {
                    // syncfs writes back all of them in one pass; the hint
                    // only helps the per-file fdatasync calls overlap.
                    if !whole_file_system {
                        start_writeback(&file);
                    }
                    written.push((p, path, file));
                }
                Err(e) => (p.done)(Err(e)),
            }
        }
        let synced: Vec<(Pending, PathBuf, Result<(), SpoolError>)> = if whole_file_system {
            let result = sync_file_system(&self.queue_dir);
            written
                .into_iter()
                .map(|(p, path, _)| {
                    let r = result
                        .as_ref()
                        .copied()
                        .map_err(|e| SpoolError::io(&self.queue, copy_of(e)));
                    (p, path, r)
                })
                .collect()
        } else {
            written
                .into_iter()
                .map(|(p, path, file)| {
                    let r = file.sync_data().map_err(|e| SpoolError::io(&path, e));
                    (p, path, r)
                })
                .collect()
        };
        // Only durable files are renamed into queue/: a crash can never
        // leave a partly written message there.
        let mut renamed = Vec::with_capacity(synced.len());
        for (p, path, synced) in synced {
            let result = synced.and_then(|()| {
                fs::rename(&path, self.queue.join(&p.id)).map_err(|e| SpoolError::io(&path, e))
            });
            match result {
                Ok(()) => renamed.push(p),
                Err(e) => {
                    let _ = fs::remove_file(&path);
                    (p.done)(Err(e));
                }
            }
        }
        if renamed.is_empty() {
            return;
        }
        // One directory fsync makes all renames of the batch durable.
        let dir_result = self.queue_dir.sync_all();
        for p in renamed {
            match &dir_result {
                Ok(()) => (p.done)(Ok(())),
                Err(e) => {
                    // Not acknowledged, so it must not be delivered either.
                    let _ = fs::remove_file(self.queue.join(&p.id));
                    (p.done)(Err(SpoolError::io(&self.queue, copy_of(e))));
                }
            }
        }
    }

    /// Writes the message into a file outside `queue/`: an empty one of the
    /// free pool where it lies, or a new one in `tmp/`. Returns its path
    /// (renamed into `queue/` once durable) and the open file.
    fn write_unqueued(&self, p: &Pending) -> Result<(PathBuf, File), SpoolError> {
        let reserved = p.reserved.as_deref().and_then(open_empty);
        let (path, mut file) = if let Some(taken) = reserved.or_else(|| self.free.take()) {
            taken
        } else {
            let path = self.tmp.join(&p.id);
            let file = nofollow::create_new(&path).map_err(|e| SpoolError::io(&path, e))?;
            (path, file)
        };
        if let Err(e) = file
            .write_all(&p.head)
            .and_then(|()| file.write_all(&p.body))
        {
            let _ = fs::remove_file(&path);
            return Err(SpoolError::io(&path, e));
        }
        Ok((path, file))
    }
}

/// One batch-wide I/O error, reported to each of its messages.
fn copy_of(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

/// Makes everything written on the file system of `dir` durable: data,
/// inodes and a device cache flush (Linux `syncfs`).
fn sync_file_system(dir: &File) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscall on an open descriptor.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Not reached: SYNCFS_FROM keeps other systems on fdatasync.
        dir.sync_all()
    }
}

/// Asks the kernel to begin writing the file now (Linux `sync_file_range`),
/// so the following `fdatasync` calls of a batch overlap instead of queueing.
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscall on an open descriptor; failure only loses the hint.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file.as_raw_fd();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::spool_file_bytes;
    use crate::{new_queue_id, Recipient};

    fn envelope(id: &str) -> Envelope {
        Envelope {
            queue_id: id.to_owned(),
            received_ms: 1,
            sender: "a@example.org".into(),
            recipients: vec![Recipient {
                address: "b@example.net".into(),
                notify: vec![],
                orcpt: None,
            }],
            ret: None,
            envid: None,
            body: None,
            smtputf8: false,
            requiretls: false,
            origin: "smtp".into(),
            client_addr: "127.0.0.1".into(),
            client_helo: "client".into(),
            client_tls: None,
            size: 5,
            message_id: None,
        }
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mxg-spool-test-{}", new_queue_id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_reserved_file_takes_the_message_and_an_unused_one_goes_back() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        // The pool is empty: the reservation is an empty file made now.
        assert!(spool.reserve_ready().is_none());
        let reserved = spool.reserve_new().unwrap();
        let inode = fs::metadata(&reserved.path).unwrap().ino();
        let id = new_queue_id();
        let (tx, rx) = mpsc::channel();
        spool.commit_reserved(
            Some(reserved),
            &envelope(&id),
            b"hello",
            Box::new(move |r| tx.send(r).unwrap()),
        );
        rx.recv().unwrap().unwrap();
        assert_eq!(
            fs::metadata(dir.join("queue").join(&id)).unwrap().ino(),
            inode
        );
        assert_eq!(spool.read(&id).unwrap().1, b"hello");
        // One never used goes back to the pool and is the next one taken.
        let unused = spool.reserve_new().unwrap();
        let inode = fs::metadata(&unused.path).unwrap().ino();
        spool.release(unused);
        let again = spool.reserve_ready().unwrap();
        assert_eq!(again.path.parent(), Some(dir.join("free").as_path()));
        assert_eq!(fs::metadata(&again.path).unwrap().ino(), inode);
        assert!(spool.reserve_ready().is_none());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn committed_message_reads_back_and_is_private() {
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        let id = new_queue_id();
        spool.commit_blocking(&envelope(&id), b"hello").unwrap();
        let (env, msg) = spool.read(&id).unwrap();
        assert_eq!(env, envelope(&id));
        assert_eq!(msg, b"hello");
        assert_eq!(spool.list().unwrap(), vec![id.clone()]);
        let mode = fs::metadata(dir.join("queue").join(&id)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        spool.remove(&id).unwrap();
        assert!(matches!(spool.read(&id), Err(SpoolError::NotFound(_))));
        assert!(matches!(spool.remove(&id), Err(SpoolError::NotFound(_))));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rule11_a_removed_message_is_gone_and_its_file_reused_empty() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        let first = new_queue_id();
        spool
            .commit_blocking(&envelope(&first), b"a long first message")
            .unwrap();
        let inode = fs::metadata(dir.join("queue").join(&first)).unwrap().ino();
        spool.remove(&first).unwrap();
        assert_eq!(
            fs::metadata(dir.join("free").join(&first)).unwrap().len(),
            0
        );
        let second = new_queue_id();
        spool.commit_blocking(&envelope(&second), b"short").unwrap();
        let path = dir.join("queue").join(&second);
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(spool.read(&second).unwrap().1, b"short");
        assert_eq!(
            spool.file_len(&second).unwrap(),
            fs::metadata(&path).unwrap().len()
        );
        assert!(matches!(
            spool.file_len(&first),
            Err(SpoolError::NotFound(_))
        ));
        assert_eq!(fs::read_dir(dir.join("free")).unwrap().count(), 0);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_commits_are_all_acknowledged() {
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        let (tx, rx) = mpsc::channel();
        for _ in 0..200 {
            let tx = tx.clone();
            let id = new_queue_id();
            spool.commit(&envelope(&id), b"x", Box::new(move |r| tx.send(r).unwrap()));
        }
        drop(tx);
        let results: Vec<_> = rx.iter().collect();
        assert_eq!(results.len(), 200);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(spool.list().unwrap().len(), 200);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rule9_a_batch_synced_as_a_whole_is_in_queue_when_acknowledged() {
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        let committer = Committer {
            tmp: dir.join("tmp"),
            queue: dir.join("queue"),
            queue_dir: File::open(dir.join("queue")).unwrap(),
            free: Arc::clone(&spool.free),
        };
        let (tx, rx) = mpsc::channel();
        let ids: Vec<String> = (0..SYNCFS_FROM.min(64) * 2)
            .map(|_| new_queue_id())
            .collect();
        let batch = ids
            .iter()
            .map(|id| {
                let tx = tx.clone();
                Pending {
                    id: id.clone(),
                    head: spool_file_bytes(&envelope(id), id.as_bytes()),
                    body: Arc::new(Vec::new()),
                    done: Box::new(move |r| tx.send(r).unwrap()),
                    reserved: None,
                }
            })
            .collect();
        committer.commit_batch(batch);
        drop(tx);
        assert!(rx.iter().all(|r| r.is_ok()));
        for id in &ids {
            assert_eq!(spool.read(id).unwrap().1, id.as_bytes());
        }
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unacknowledged_leftovers_are_removed_and_bad_ids_refused() {
        let dir = tempdir();
        fs::create_dir_all(dir.join("tmp")).unwrap();
        fs::write(dir.join("tmp").join("0000000000000001"), b"partial").unwrap();
        let spool = Spool::open(&dir).unwrap();
        // Opening touches nothing (that waits for `tidy`, after the
        // privilege drop); tidying removes what was never acknowledged.
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 1);
        spool.tidy().unwrap();
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        assert!(matches!(
            spool.read("../../etc/passwd"),
            Err(SpoolError::NotFound(_))
        ));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rule_8a_planted_symlinks_are_never_followed() {
        let dir = tempdir();
        let outside = tempdir();
        fs::create_dir_all(&outside).unwrap();
        let target = outside.join("precious");
        fs::write(&target, b"not the spool's").unwrap();
        for sub in ["queue", "tmp", "free"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let id = "0000000000000003";
        for (sub, name) in [("free", "link"), ("tmp", "link"), ("queue", id)] {
            std::os::unix::fs::symlink(&target, dir.join(sub).join(name)).unwrap();
        }
        let spool = Spool::open(&dir).unwrap();
        spool.tidy().unwrap();
        assert!(spool.read(id).is_err());
        assert!(spool.read_envelope(id).is_err());
        spool.remove(id).ok();
        spool
            .commit_blocking(&envelope(&new_queue_id()), b"m")
            .unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"not the spool's");
        // A spool directory that is a link is refused outright.
        let linked = tempdir();
        fs::create_dir_all(&linked).unwrap();
        std::os::unix::fs::symlink(&outside, linked.join("queue")).unwrap();
        assert!(Spool::open(&linked).is_err());
        for d in [dir, outside, linked] {
            fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn truncated_file_is_reported_malformed() {
        let path = Path::new("x");
        let bytes = spool_file_bytes(&envelope("0000000000000002"), b"m");
        assert!(parse_spool_file(path, &bytes[..10]).is_err());
        assert!(parse_spool_file(path, b"JUNK 3\nabc\n").is_err());
    }
}
