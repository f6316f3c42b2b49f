"""The open database and its transactions: WAL, durable commits (fsynced
when they commit, or by one `sync` for the batches a restart repairs,
rule 11), and the bound on parameters per statement. Every other part of
`Store` builds on `Database`.

Two backends behind one interface: the embedded SQLite file (the
default) and PostgreSQL (`[data] store = "postgresql://..."`, through
`mxg.store.postgres`, which speaks the ``sqlite3.Connection`` subset the
modules use). Their few differences that are not mechanical are the
`Dialect`'s."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from mxg.errors import StoreDamaged, StoreError
from mxg.store.files import _damaged, _make_private
from mxg.store.postgres import PgConnection, StoreUnreachable
from mxg.store.schema import SCHEMA, check_postgres, migrate

# The advisory lock every PostgreSQL write transaction takes first:
# writers are serialised as SQLite's BEGIN IMMEDIATE serialises them, which
# the audit trail's chain relies on (one block per transaction, each after
# the tail it read; store/audit.py). Any constant works; this spells "mxg".
WRITER_LOCK = 0x6D7867
# The session locks of a cluster on PostgreSQL (two-key form: this class
# and a second key): one per node name, held by the node's relay for its
# life (rule 11a for a shared server), keyed on `hashtext(name)`; and the
# housekeeper's (second key 0), held by one node at a time.
NODE_LOCK = 0x6D78674E

# How long the audit tail is read again after another writer was found to
# have moved it (`Database.retrying`): long enough that two nodes appending
# all the time do not refuse each other's blocks at every transaction.
TAIL_CONTENDED = 10.0

# Bound parameters per statement: SQLite's limit was 999 before 3.32.
_MAX_PARAMS = 999


def is_postgres(target: Path | str) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class Dialect:
    """The SQL that differs between the backends beyond what
    `mxg.store.postgres.to_postgres` translates."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        # What a `LIMIT ?` takes to mean no limit.
        self.no_limit: int | None = None if postgres else -1

    def concat_distinct(self, expr: str) -> str:
        """The distinct non-null values of ``expr``, comma-separated."""
        if self.postgres:
            return f"string_agg(DISTINCT {expr}, ',')"
        return f"group_concat(DISTINCT {expr})"


class AuditTailMoved(StoreError):
    """A transaction appended to the audit trail after the tail this
    store wrote last, and another writer had appended since: rolled back,
    to be run again from the tail as it is (`Database.retrying`)."""


# What refuses an append after a stale tail: the unique index on a
# block's first record (schema version 5), or the primary key on its last,
# whichever PostgreSQL checks first.
_TAIL_INDEXES = ("audit_blocks_first", "audit_blocks_pkey")


class NodeTaken(StoreError):
    """Another relay of this node's name holds the store's node lock,
    taken while this one's connection was down (rule 11a)."""


class _Writers:
    """What the connections of one relay to a PostgreSQL store share: one
    transaction at a time among them (so that each append to the audit
    trail follows the one before it, and the tail they remember is the
    store's unless another process wrote), and that tail: the last
    record's number, its block's hash, and the server start it was
    committed on (a restart may have lost it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tail: tuple[int, bytes, datetime] | None = None
        # Until when (monotonic) the tail is read, not remembered: another
        # writer appended lately (another node of a cluster writes all the
        # time), and an append after a stale tail costs a whole
        # transaction again.
        self.contended_until = 0.0


class _Unflushed:
    """The commits `Database.sync` has yet to make durable, shared with
    the companions whose commits that store syncs
    (`Store.companion(shares_sync=True)`): the server starts they were
    made on; how many there were (a sync clears the starts it flushed
    only if none came while it ran: their start is most often one it
    flushed already, which tells nothing); and the starts on which a
    COMMIT was sent and the connection broke before its answer came
    (committed or not, nobody knows: the server may have ended the
    session just after it, and what the caller did on the failure, a
    result kept in memory and stored again, may not match the store).
    Changed under the writers' lock."""

    def __init__(self) -> None:
        self.starts: set[datetime] = set()
        self.commits = 0
        self.answers_lost: set[datetime] = set()


class Database:
    """One connection to the queue index, and its transactions."""

    def __init__(self, target: Path | str, *, keyed_plans: bool = False) -> None:
        self.dialect = Dialect(is_postgres(target))
        self.path: Path | None = None
        # The cluster node this store's relay is (`claim_node`); None on
        # SQLite and for the commands, which own nothing.
        self.node: str | None = None
        self.db: sqlite3.Connection
        self._durable = True
        # A transaction begun with `inserts_first` that has not yet taken
        # the writers' lock (`writers_lock`).
        self._lock_pending = False
        # What this store shares with its companions (`Store.companion`):
        # one writer at a time, and the audit tail the last one left.
        self._writers = _Writers()
        # Whether the transaction under way may append after that tail
        # unread (`retrying`), and the tail its own append leaves.
        self._trust_tail = False
        self._appended: tuple[int, bytes] | None = None
        # A PostgreSQL store's schema version (`check_postgres`).
        self.schema_version: int | None = None
        # PostgreSQL: the URL (for `sync`'s own connection, opened when
        # first needed) and the commits `sync` has not yet made durable.
        self._url = ""
        self._syncer: PgConnection | None = None
        # The connection the intake's group flush waits on (`flusher`).
        self._flusher: PgConnection | None = None
        self._unflushed = _Unflushed()
        # How often commits in doubt were forgotten (`forget_doubtful`): a
        # removal decided before then is refused by `sync`.
        self.repairs = 0
        if isinstance(target, str):
            if not self.dialect.postgres:
                target = Path(target)
            else:
                self._open_postgres(target, keyed_plans=keyed_plans)
                return
        self._open_sqlite(target)

    def _open_postgres(self, url: str, *, keyed_plans: bool) -> None:
        # The modules are typed against sqlite3.Connection, the interface
        # PgConnection gives (the subset they use).
        conn = PgConnection(url)
        self.db = cast(sqlite3.Connection, conn)
        self._url = url
        try:
            # Newer than this mxg's when every newer step only expanded it.
            self.schema_version = check_postgres(self.db, url)
            if keyed_plans:
                conn.plan_by_key()
        except BaseException:
            conn.close()
            raise

    @property
    def url(self) -> str:
        """A PostgreSQL store's URL ("" on SQLite)."""
        return self._url

    def share_writers(self, other: Database, *, sync: bool = False) -> None:
        """Takes turns with `other`'s transactions and shares its audit
        tail (`Store.companion`); with `sync`, also the server starts of
        the commits `other.sync` makes durable (the same set: a commit
        here is in doubt there after a restart)."""
        self._writers = other._writers
        if sync:
            self._unflushed = other._unflushed

    def watch_reachability(self, changed: Callable[[bool], None]) -> None:
        """On PostgreSQL: `changed(False)` when the connection breaks,
        `changed(True)` once it is open again (`PgConnection`)."""
        if self.dialect.postgres:
            cast(PgConnection, self.db).on_reachable = changed

    def claim_node(self, node: str, where: str) -> None:
        """On PostgreSQL: this relay is node `node` of the store's cluster,
        the only process of that name (rule 11a for a shared server), held
        by a session lock for the connection's life. The messages it
        accepts are its own (`messages.node`); recovery and the scanner
        look at those alone. On SQLite the data directory's mxg.lock
        covers the file and nothing is owned."""
        if not self.dialect.postgres:
            return
        row = self.db.execute(
            f"SELECT pg_try_advisory_lock({NODE_LOCK}, hashtext(?))", (node,)
        ).fetchone()
        if not row[0]:
            self.close()
            raise StoreError(
                f"a relay named {node!r} already uses the store at {where};"
                " give each node its own [cluster] node name"
            )
        self.node = node
        holder = _session(cast(PgConnection, self.db))

        def again(conn: PgConnection) -> None:
            # A session lock ends with its connection: taken again on the
            # new one after PostgreSQL restarted. Another relay of the same
            # name may have started meanwhile and taken it: then this one
            # is no longer that node and must not act on its messages.
            # Unless the holder is this relay's own old session, which a
            # network partition ended on this side alone: the server keeps
            # it (and the lock) until it writes to it, hours with the
            # default TCP keepalive. That one is ended, then the lock taken.
            nonlocal holder
            lock = f"SELECT pg_try_advisory_lock({NODE_LOCK}, hashtext(%s))"
            row = conn.conn.execute(lock, (node,)).fetchone()
            if (not row or not row[0]) and _end_session(conn, holder):
                row = conn.conn.execute(lock, (node,)).fetchone()
            if not row or not row[0]:
                conn.conn.close()
                raise NodeTaken(
                    f"a relay named {node!r} took the store at {where} while this one"
                    " was cut off from it: this relay stops (rule 11a)"
                )
            holder = _session(conn)

        cast(PgConnection, self.db).on_reconnect = again

    def mine(self, messages: str = "m") -> tuple[str, tuple[str, ...]]:
        """A term (`` AND ...``) and its parameters that keep a query on
        the messages this node owns (`messages` is the alias of the
        messages table in it): the relay's scanner and recovery act on
        their own messages alone. Nothing on SQLite and in the commands,
        where every message is everyone's."""
        if self.node is None:
            return "", ()
        return f" AND {messages}.node = ?", (self.node,)

    def mine_by_id(self, table: str) -> tuple[str, tuple[str, ...]]:
        """`mine` for a query on another table (`table`, its name or alias
        in the query), through its `queue_id`: each row's message read by
        its key. As an IN over the node's messages, PostgreSQL's planner
        hashed all of them, its whole history until retention, once a few
        hundred rows were to be tested: a sequential scan of the messages
        at every scan of the queue while bounces waited for their DSN
        (4-6 ms at 20,000 messages, 23 ms at 200,000)."""
        if self.node is None:
            return "", ()
        node = f"(SELECT m.node FROM messages m WHERE m.queue_id = {table}.queue_id)"
        return f" AND {node} = ?", (self.node,)

    def _open_sqlite(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        _make_private(path)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.row_factory = sqlite3.Row
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            # Commits reach the WAL without an fsync of SQLite's own; durable
            # ones get theirs in `transaction` (the effect of
            # synchronous=FULL), so that repairable ones need no PRAGMA round
            # trip each.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            migrate(self.db)
        except sqlite3.DatabaseError as e:
            self.db.close()
            # Not an OperationalError such as "locked": the file itself is
            # unreadable (SQLITE_NOTADB, SQLITE_CORRUPT).
            if not _damaged(e):
                raise
            raise StoreDamaged(path, str(e)) from None

    def close(self) -> None:
        self.db.close()
        for conn in (self._syncer, self._flusher):
            if conn is not None:
                conn.close()

    @property
    def commit_start(self) -> datetime | None:
        """On PostgreSQL: the start of the server the last commit was made
        on, which the intake's flush checks (None on SQLite)."""
        if not self.dialect.postgres:
            return None
        return cast(PgConnection, self.db).server_started

    def flusher(self) -> PgConnection:
        """On PostgreSQL: the connection the intake's group commit waits
        on (`pipeline/groupflush.py`) for the WAL flush that makes its
        commits durable, beside the relay's connection: one statement at
        a time, from the event loop (`PgConnection.send_flush`). OSError
        when it cannot be opened."""
        if self._flusher is None:
            try:
                self._flusher = PgConnection(self._url)
            except StoreError as e:
                raise OSError(errno.EIO, str(e)) from None
        return self._flusher

    @contextmanager
    def transaction(
        self, *, inserts_first: bool = False, pipelined: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """One write transaction, durable when it returns (unless inside
        `_not_synced`). Writers are serialised (the audit chain relies on
        it): SQLite's BEGIN IMMEDIATE; on PostgreSQL a transaction-scoped
        advisory lock, taken before anything is read. With `inserts_first`
        (PostgreSQL): the transaction only inserts rows of its own before
        it appends to the audit trail, so the lock waits for that append
        (`writers_lock`), and the inserts, a batch's spool files among
        them, run beside other writers. `pipelined` (PostgreSQL): the
        statements go without waiting for each result
        (`PgConnection.pipeline`), for the transactions that run at the
        message rate; an error then surfaces where a result is read or
        at the commit."""
        self._lock_pending = inserts_first and self.dialect.postgres
        self._appended = None
        pipeline: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        writers: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.dialect.postgres:
            writers = self._writers.lock
            if pipelined:
                pipeline = cast(PgConnection, self.db).pipeline()
        with writers:
            yield from self._transaction(pipeline, inserts_first=inserts_first, pipelined=pipelined)

    def _transaction(
        self,
        pipeline: contextlib.AbstractContextManager[None],
        *,
        inserts_first: bool,
        pipelined: bool,
    ) -> Iterator[sqlite3.Connection]:
        committing = False
        try:
            with pipeline:
                for statement in self._begin(inserts_first=inserts_first, pipelined=pipelined):
                    self.db.execute(statement)
                yield self.db
                # A COMMIT that fails (a full disk: SQLITE_FULL) leaves the
                # transaction open; it is rolled back like any other failure.
                committing = True
                self.db.execute("COMMIT")
        except BaseException as e:
            self._failed(e, commit_sent=committing)
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if _moved_tail(e):
                raise AuditTailMoved("another writer appended to the audit trail") from None
            raise
        if not self.dialect.postgres:
            if self._durable:
                self.sync()
            return
        self._committed()

    def _failed(self, e: BaseException, *, commit_sent: bool) -> None:
        """A transaction failed: the tail it would have left is not
        remembered, and a commit sent on a connection that broke before
        its answer puts that server start in doubt (`doubtful`). Still the
        broken connection's start: it reconnects at the next statement."""
        self._writers.tail = None
        if commit_sent and isinstance(e, StoreUnreachable):
            self._unflushed.answers_lost.add(cast(PgConnection, self.db).server_started)

    def _committed(self) -> None:
        """A PostgreSQL commit: the audit tail it appended after is
        remembered, and, if it did not wait for the WAL, its server start
        is one `sync` must flush."""
        started = cast(PgConnection, self.db).server_started
        if self._appended is not None:
            self._writers.tail = (*self._appended, started)
        if not self._durable:
            self._unflushed.starts.add(started)
            self._unflushed.commits += 1

    def statement_transaction(
        self, build: Callable[[], tuple[str, Sequence[Any]] | None]
    ) -> list[Any] | None:
        """On PostgreSQL: one statement that is a whole transaction (the
        connection commits it by itself), and its rows. For a transaction
        at the message rate whose work fits in one statement
        (data-modifying WITH queries): a single round trip and a single
        hand-over of the GIL, where the same work pipelined as a
        transaction of ten statements took about fifteen
        (docs/benchmarks.md).

        `build` gives the statement and its parameters under the writers'
        lock, where the audit tail it may append after is current
        (`remembered_tail`, then `appended_tail`); or None when the work
        cannot be one statement now, and then None is returned and nothing
        ran. The commit is bookkept as `transaction`'s: not durable inside
        `_not_synced` (the statement then turns ``synchronous_commit`` off
        itself), in doubt when the connection broke before the answer (it
        may have committed), and AuditTailMoved when its audit block was
        refused."""
        assert self.dialect.postgres
        conn = cast(PgConnection, self.db)
        with self._writers.lock:
            conn.ready()  # a statement that cannot go is not in doubt
            self._appended = None
            statement = build()
            if statement is None:
                return None
            try:
                rows = conn.execute(*statement).fetchall()
            except BaseException as e:
                self._failed(e, commit_sent=True)  # the statement is its commit
                if _moved_tail(e):
                    raise AuditTailMoved("another writer appended to the audit trail") from None
                raise
            self._committed()
        return rows

    def _begin(self, *, inserts_first: bool, pipelined: bool) -> list[str]:
        """The statements that open a transaction (`transaction`)."""
        if not self.dialect.postgres:
            return ["BEGIN IMMEDIATE"]
        begin = ["BEGIN"]
        # What a restart repairs does not wait for the WAL flush (as
        # SQLite's synchronous=NORMAL); `sync` makes it durable. In the
        # statement that takes the lock, where there is one: a statement
        # less in every transaction at the message rate.
        selected = [] if self._durable else ["set_config('synchronous_commit', 'off', true)"]
        if not inserts_first:
            selected.insert(0, f"pg_advisory_xact_lock({WRITER_LOCK})")
        if selected:
            begin.append(f"SELECT {', '.join(selected)}")
        # One round trip either way: a pipeline sends them together, and
        # outside one they go as one string (a pipeline takes one statement
        # at a time).
        return begin if pipelined else ["; ".join(begin)]

    def retrying(self, transaction: Callable[[], T]) -> T:
        """Runs `transaction` (a function that runs one transaction),
        whose audit records may follow the tail this store wrote last
        without reading it: on PostgreSQL the relay is nearly always the
        only writer, and that read was a round trip of its own in every
        transaction at the message rate. Should another writer have
        appended since (another node, an operator's command), the block is
        refused (`_TAIL_INDEXES`), and `transaction` runs once more,
        reading the tail."""
        self._trust_tail = True
        try:
            return transaction()
        except AuditTailMoved:
            self._trust_tail = False
            self._writers.contended_until = time.monotonic() + TAIL_CONTENDED
            return transaction()
        finally:
            self._trust_tail = False

    def remembered_tail(self) -> tuple[int, bytes] | None:
        """The tail to append after without reading it (`retrying`), if
        this transaction may and it is known for the server start now."""
        tail = self._writers.tail
        if not (self._trust_tail and self.dialect.postgres) or tail is None:
            return None
        if time.monotonic() < self._writers.contended_until:
            return None
        last, digest, start = tail
        if start != cast(PgConnection, self.db).server_started:
            return None
        return last, digest

    def appended_tail(self, last: int, digest: bytes) -> None:
        """The tail this transaction's append leaves, remembered once it
        commits."""
        self._appended = (last, digest)

    def writers_lock(self, db: sqlite3.Connection) -> None:
        """Takes the writers' lock in a transaction begun with
        `inserts_first`, before anything it reads (a statement of its
        own: under READ COMMITTED the next statement then sees every
        commit of the lock's previous holder)."""
        if self._lock_pending:
            self._lock_pending = False
            db.execute(f"SELECT pg_advisory_xact_lock({WRITER_LOCK})")

    @contextmanager
    def _not_synced(self) -> Iterator[None]:
        """Transactions whose loss a crash can repair: committed to the WAL
        without an fsync of their own; the next durable commit carries them
        to disk (SQLite WAL, synchronous=NORMAL)."""
        self._durable = False
        try:
            yield
        finally:
            self._durable = True

    def doubtful(self) -> set[datetime]:
        """On PostgreSQL: the earlier starts of the server on which commits
        were made that no `sync` made durable. The server restarted since,
        so they may be lost; what it shows now is durable (WAL replay
        restores only flushed commits), and `sync` fails until the relay
        has repaired its queue from that (`pipeline/repair.py`). And the
        starts on which a commit's answer was lost (`answers_lost`), the
        current one too: the relay's memory may not match the store, and
        the same repair settles it from the store."""
        if not self.dialect.postgres:
            return set()
        now = cast(PgConnection, self.db).server_started
        unflushed = self._unflushed
        return {t for t in unflushed.starts if t != now} | unflushed.answers_lost

    @property
    def answers_lost(self) -> bool:
        """Whether a COMMIT's answer was lost with the connection since
        the last repair (`doubtful`)."""
        return bool(self._unflushed.answers_lost)

    def forget_doubtful(self, starts: set[datetime]) -> None:
        """The commits on those `starts` are settled: the repair read what
        survived of them. Every removal decided before is refused
        (`sync(decided=...)`); the count goes first, so that a `sync`
        that no longer sees those starts sees the new count. The current
        start stays among those `sync` flushes: its commits are there."""
        self.repairs += 1
        now = cast(PgConnection, self.db).server_started
        self._unflushed.starts -= {t for t in starts if t != now}
        self._unflushed.answers_lost -= starts

    def sync(self, decided: int | None = None) -> None:
        """Makes every commit so far durable. Commits without their own
        fsync are in the WAL (SQLite syncs it before a checkpoint, and the
        database file after); one fsync of the WAL covers them all. Uses its
        own descriptor, so it may run in another thread than the commits.
        On PostgreSQL the durable commits wait for the WAL flush
        (synchronous_commit on) and the others do not; one flush on a
        connection of its own (the main one may be inside a transaction of
        another thread) covers them, OSError if the server started again
        since they committed, or if `decided` (the `repairs` count when
        the caller decided what the sync covers) is not the count now."""
        if self.dialect.postgres:
            if self._syncer is None:
                try:
                    self._syncer = PgConnection(self._url)
                except StoreError as e:
                    raise OSError(errno.EIO, str(e)) from None
            # Commits made while this runs stay for the next sync: the
            # flush may not cover them.
            unflushed = self._unflushed
            pending, commits = set(unflushed.starts), unflushed.commits
            self._syncer.flush_since({cast(PgConnection, self.db).server_started, *pending})
            with self._writers.lock:  # no commit counted between the two
                if unflushed.commits == commits:
                    unflushed.starts -= pending
            if decided is not None and decided != self.repairs:
                raise OSError(
                    errno.EIO,
                    "the store restarted since these messages were found finished;"
                    " the repair decides again",
                )
            return
        if self.path is None:
            return
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # no WAL (yet): nothing was committed through it
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


T = TypeVar("T")


def _moved_tail(e: BaseException) -> bool:
    """An append after a stale tail was refused (`_TAIL_INDEXES`)."""
    diag = getattr(e, "diag", None)
    return getattr(diag, "constraint_name", None) in _TAIL_INDEXES


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _session(conn: PgConnection) -> tuple[int, datetime]:
    """The server process of `conn`'s session and when it began: a
    process id alone may be another session's after this one ended."""
    row = conn.conn.execute(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    ).fetchone()
    assert row is not None  # its own row is always there
    return int(row[0]), row[1]


def _end_session(conn: PgConnection, session: tuple[int, datetime]) -> bool:
    """Ends `session` if it still runs (waiting up to 5 s until it has
    ended, and its locks with it); whether it did."""
    row = conn.conn.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
        " WHERE pid = %s AND backend_start = %s",
        session,
    ).fetchone()
    return bool(row and row[0])
