"""The bench's PostgreSQL (Debian's postgresql-15): one server per bench
run, started again with a fresh database for each relay run (so no run
finds another's pages in the shared buffers, which would count in its
memory, or its dirty ones still to be written), and the server's own CPU
time, so that a relay on PostgreSQL is charged for the work its store
does.

Durability as the other relays': ``fsync`` and ``synchronous_commit`` on
(PostgreSQL's defaults, stated anyway), so a commit is in the fsynced WAL
when it returns, as a Postfix queue file or mxg's spool is on disk before
their 250. Run as root, the server runs as the package's ``postgres``
user (initdb and postgres refuse root)."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import threading
import time
from pathlib import Path

import psycopg

BIN = Path("/usr/lib/postgresql/15/bin")
_AS = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
_TICK = os.sysconf("SC_CLK_TCK")
# How long the backends of a stopped relay may take to exit.
_BACKENDS_GONE = 10.0
# How often `LockWaits` looks: a query each time, counted in the relay's
# PostgreSQL CPU like the rest (about 0.1 ms each).
_LOCK_SAMPLE = 0.02


def _ticks(pid: int, fields: slice) -> int:
    """Fields of /proc/PID/stat after the command name, summed (clock
    ticks): 11:13 are utime and stime, 13:15 cutime and cstime."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in rest[fields])


class PgServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"
        self._names = itertools.count(1)
        # The database of the relay run under way.
        self.current = self.url()
        self._pg_ctl = [*_AS, str(BIN / "pg_ctl"), "-D", str(self.data)]

    def start(self) -> PgServer:
        if not (BIN / "postgres").exists():
            raise RuntimeError("PostgreSQL 15 is not installed (apt-get install postgresql-15)")
        self.root.mkdir(parents=True, exist_ok=True)
        if _AS:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        initdb = [str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]
        subprocess.run([*_AS, *initdb, "-E", "UTF8"], check=True, capture_output=True)
        self._start()
        return self

    def _start(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
            " -c fsync=on -c synchronous_commit=on -c max_connections=100"
        )
        subprocess.run(
            [*self._pg_ctl, "-o", opts, "-l", str(self.root / "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )

    def stop(self, *, remove: bool = True) -> None:
        subprocess.run([*self._pg_ctl, "-m", "fast", "stop"], check=False, capture_output=True)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database for one relay run on a freshly started
        server (a stop writes everything dirty out: a checkpoint); its
        URL."""
        self.stop(remove=False)
        self._start()
        name = f"bench{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        self.current = self.url(name)
        return self.current

    @property
    def postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def pids(self) -> list[int]:
        """The postmaster and its processes (backends, WAL writer,
        checkpointer, ...)."""
        root = self.postmaster
        kids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if _ticks(int(entry), slice(1, 2)) == root:  # ppid
                        kids.append(int(entry))
                except (OSError, ValueError):
                    continue
        return [root, *kids]

    def cpu_seconds(self) -> float:
        """CPU time of the whole server so far: its live processes and
        the exited ones the postmaster has reaped (its cutime and cstime),
        so a backend that comes and goes between two readings counts."""
        total = _ticks(self.postmaster, slice(13, 15))
        for pid in self.pids():
            try:
                total += _ticks(pid, slice(11, 13))
            except (OSError, ValueError):
                # Exited between the listing and the reading: its time is
                # in the postmaster's cutime by the next reading.
                continue
        return total / _TICK

    def wait_idle(self) -> None:
        """Waits until no client backend is left (the relay's connections
        closed), so that their CPU time is all counted."""
        deadline = time.monotonic() + _BACKENDS_GONE
        with psycopg.connect(self.url(), autocommit=True) as c:
            while time.monotonic() < deadline:
                row = c.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()
                if row is not None and row[0] == 0:
                    return
                time.sleep(0.05)
        raise RuntimeError("PostgreSQL: the relay's connections did not close")


class LockWaits(threading.Thread):
    """Samples, while a relay runs, whether a transaction waits for an
    advisory lock (the writers' lock, store/db.py: the only advisory lock
    that is waited for; the node and housekeeper locks are taken or
    tried once): the share of samples with a waiter shows how much the
    writers serialise each other, one node's or several nodes'."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.waiting = url, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as c:
            while not self.stop.wait(_LOCK_SAMPLE):
                row = c.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                ).fetchone()
                self.samples += 1
                self.waiting += bool(row and row[0])

    def share(self) -> float:
        self.stop.set()
        self.join()
        return self.waiting / max(self.samples, 1)
