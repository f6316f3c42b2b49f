"""The data directory: who may use it, and how it is made safe to use.

Three guards, all taken by ``mxg run`` before the spool or the store is
read or changed:

- The instance lock (ARCHITECTURE.md, rule 11a): an exclusive ``flock`` on
  ``mxg.lock``, held for the life of the process (the descriptor survives
  the privilege drop). A second relay on the same data directory exits
  before it touches a file there; otherwise its spool start-up would empty
  the free files that a live session is writing into (acknowledged mail
  lost), as Postfix's ``master.lock`` prevents for Postfix.
- The directory check (rule 8a): the data directory and every parent are
  owned by root or the relay's user and not writable by group or others
  (a sticky directory such as ``/tmp`` is allowed as a parent), so nobody
  else can swap a path under the relay.
- Ownership without following links (rule 8a): handing the directory to
  ``run.user`` opens each entry with ``O_NOFOLLOW`` and changes it through
  its descriptor, so a symlink or hard link planted by the unprivileged
  user never gives away a root-owned file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import stat
from pathlib import Path

from mxg.deliverylog import event, log
from mxg.errors import DataDirError, InstanceBusy, MxgError

LOCK_NAME = "mxg.lock"


class InstanceLock:
    """An exclusive, process-lifetime lock on one data directory."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: Path) -> InstanceLock:
        """Takes the lock or raises ``DataDirError`` naming the holder's PID.
        Writes this process's PID into the lock file once it holds it."""
        path = data_dir / LOCK_NAME
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as e:
            raise DataDirError(f"cannot open the instance lock {path}: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise DataDirError(f"instance lock {path} is not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                raise InstanceBusy(
                    f"another mxg (pid {holder or 'unknown'}) is running on {data_dir} "
                    f"(holds {path}): not starting, nothing touched"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path)

    def fileno(self) -> int:
        return self._fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = -1


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
    return ""


def check_tree(data_dir: Path, allowed_uids: set[int]) -> None:
    """Refuses a data directory that someone other than root or the relay's
    user could change: the directory and each parent must be owned by one of
    ``allowed_uids`` and not writable by group or others. A parent with the
    sticky bit (``/tmp``) may be world-writable: nobody can rename what is
    not theirs in it. The data directory itself must not be a symlink."""
    data_dir = Path(os.path.abspath(data_dir))
    st = os.lstat(data_dir)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise DataDirError(f"data directory {data_dir} is not a directory (symlinks are refused)")
    _check_one(data_dir, st, allowed_uids, sticky_ok=False)
    for parent in data_dir.parents:
        _check_one(parent, os.stat(parent), allowed_uids, sticky_ok=True)


def _check_one(path: Path, st: os.stat_result, allowed: set[int], *, sticky_ok: bool) -> None:
    if st.st_uid not in allowed:
        raise DataDirError(
            f"unsafe data directory: {path} is owned by uid {st.st_uid}; "
            f"it must belong to root or the relay's user"
        )
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        raise DataDirError(
            f"unsafe data directory: {path} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):o}); chmod go-w {path}"
        )


def hand_over(data_dir: Path, uid: int, gid: int) -> list[str]:
    """Gives the data directory and everything below it to ``uid``/``gid``
    without following a link: each entry is opened with ``O_NOFOLLOW`` and
    changed through its descriptor. Symlinks, special files and regular
    files with a second name (a hard link could point at any file of the
    system) are left as they are; returns their paths for the log."""
    skipped: list[str] = []
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    root_fd = os.open(data_dir, flags | os.O_DIRECTORY)
    try:
        _hand_over_dir(root_fd, str(data_dir), uid, gid, skipped)
    finally:
        os.close(root_fd)
    return skipped


def _hand_over_dir(dir_fd: int, where: str, uid: int, gid: int, skipped: list[str]) -> None:
    os.fchown(dir_fd, uid, gid)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    for name in os.listdir(dir_fd):
        path = f"{where}/{name}"
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except OSError:
            # ELOOP for a symlink, ENXIO for a socket: not ours to change.
            skipped.append(path)
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                _hand_over_dir(fd, path, uid, gid, skipped)
            elif stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                os.fchown(fd, uid, gid)
            elif (st.st_uid, st.st_gid) != (uid, gid):
                skipped.append(path)
        finally:
            os.close(fd)


def run_user(name: str) -> pwd.struct_passwd | None:
    """The account named by ``run.user`` (None when unset)."""
    if not name:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise MxgError(f"run.user: no such user {name!r}") from None


def drop_privileges(user: pwd.struct_passwd | None, data_dir: Path) -> None:
    """Rule 8: root only to bind; the data directory becomes the
    unprivileged user's before any byte is read from the network. Rule 8a:
    handed over without following a link (``hand_over``)."""
    if os.geteuid() != 0:
        return
    if user is None:
        event(
            log, "running as root: set run.user to drop privileges after binding", logging.WARNING
        )
        return
    for path in hand_over(data_dir, user.pw_uid, user.pw_gid):
        event(log, "left alone: not a plain file of the relay's", logging.WARNING, path=path)
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    event(log, "dropped privileges", user=user.pw_name, uid=user.pw_uid)
