"""The PostgreSQL backend of the store (`[data] store = "postgresql://..."`,
issue 18 item 1): one psycopg 3 connection behind the subset of
``sqlite3.Connection`` that the store's modules use (``execute``,
``executemany``, rows read by index and by name), so that every module
keeps one copy of its logic and its ``?`` SQL.

`to_postgres` adapts the few dialect differences mechanically; where a
translation would be obscure, the module asks `Dialect` for the
expression instead (`mxg.store.db.Dialect`). The translation is cached
per statement: the store's SQL is a few hundred constant strings.
"""

from __future__ import annotations

import errno
import functools
import logging
import re
import select
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.adapt import Dumper, Transformer
from psycopg.pq import Format

from mxg.errors import StoreError
from mxg.store import hosts

# psycopg warns, on stderr and past mxg's log, when a pipeline ends on a
# lost connection ("error ignored terminating ..."): the error itself is
# raised to mxg, which logs the outage once.
logging.getLogger("psycopg").setLevel(logging.ERROR)

# What a failed statement raises on either store.
STORE_ERRORS = (sqlite3.Error, psycopg.Error)


class StoreUnreachable(StoreError):
    """The PostgreSQL server cannot be reached or refused the login."""


# Reconnecting after the connection broke: the first try at once, then
# waits doubling up to the longest, so a server that is down for minutes
# (a restart, a failover) is asked every few seconds, not for every
# statement of every batch.
RECONNECT_FIRST = 0.25
RECONNECT_LONGEST = 4.0


class _Reach:
    """What the connections to one store know together: when one of
    them last connected. A backoff set while the server was down is
    waived once another connection got through since: the relay's
    connection reaching the server again opens intake, and the intake's
    own connections must not then answer 451 for up to
    `RECONNECT_LONGEST` more."""

    def __init__(self) -> None:
        self.connected = 0.0


# Per store URL; a relay has a handful (its store, the companions', the
# flush and sync connections), a test session one per database.
_REACH: dict[str, _Reach] = {}


class Row:
    """A result row read like ``sqlite3.Row``: by index, by column name,
    unpacked, or turned into a dict."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = {d.name: i for i, d in enumerate(cursor.description or ())}
    return lambda values: Row(names, values)


class _BoolAsInt(Dumper):
    """Flags are INTEGER 0/1 columns (as in SQLite): a Python bool is
    sent as a number, not as PostgreSQL's boolean."""

    format = Format.TEXT
    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _BoolAsIntBinary(Dumper):
    """`_BoolAsInt` for parameters sent in binary (the arrays of
    `executemany`): a big-endian int8."""

    format = Format.BINARY
    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return (1 if obj else 0).to_bytes(8, "big")


class PgCursor:
    """What ``execute`` gives back: the rows, ``rowcount``, ``lastrowid``.
    Inside a pipeline (`PgConnection.pipeline`) the statement was only
    sent: reading its rows or its count waits for the results first."""

    def __init__(
        self,
        cur: psycopg.Cursor[Any],
        lastrowid: int | None = None,
        results: Callable[[], None] | None = None,
    ) -> None:
        self._cur = cur
        self.lastrowid = lastrowid
        self._results = results

    def _done(self) -> psycopg.Cursor[Any]:
        if self._results is not None:
            results, self._results = self._results, None
            results()
        return self._cur

    @property
    def rowcount(self) -> int:
        return self._done().rowcount

    def fetchone(self) -> Any:
        cur = self._done()
        return cur.fetchone() if cur.description else None

    def fetchall(self) -> list[Any]:
        cur = self._done()
        return cur.fetchall() if cur.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """One connection to PostgreSQL in autocommit mode; `Database`
    opens the transactions with ``BEGIN`` and the writer lock.

    A connection that breaks (the server restarted, failed over, or the
    network dropped it) is opened again by itself, with backoff, at the
    next statement outside a transaction; until then every statement
    raises `StoreUnreachable`. A transaction the break interrupted is
    lost whole (the server rolls it back, or it committed before the
    break and only the answer was lost): its caller gets the error.
    `on_reachable` is told each change, False at the break and True once
    connected again. Session state (advisory session locks) does not
    survive a new connection; `on_reconnect` may take it again."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Plans made once per statement, by key (`plan_by_key`).
        self._keyed_plans = False
        self.on_reachable: Callable[[bool], None] | None = None
        self.on_reconnect: Callable[[PgConnection], None] | None = None
        self._retry_at = 0.0
        # When `_retry_at` was set: a connect by another connection since
        # waives it (`_Reach`).
        self._failed_at = 0.0
        self._reach = _REACH.setdefault(url, _Reach())
        # What `on_reachable` heard last.
        self._told = True
        # Column types per table, for `executemany`'s arrays (`_unnest`).
        self._types: dict[str, dict[str, str]] = {}
        self._backoff = RECONNECT_FIRST
        self.conn = self._connect()
        # The pipeline statements are sent in (`pipeline`), if any.
        self._pipeline: psycopg.Pipeline | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                hosts.conninfo(self.url),
                autocommit=True,
                row_factory=_row_factory,
                connect_timeout=5,
            )
        except psycopg.Error as e:
            raise StoreUnreachable(
                f"cannot connect to the store at {redact(self.url)}: {_line(e)}"
            ) from None
        # The server this connection is on, tried first by the next ones,
        # and last once this one is lost (a multi-host URL, `hosts`).
        self._on = (conn.info.host, conn.info.port)
        self._losses = hosts.losses(self.url, *self._on)
        hosts.reached(self.url, *self._on)
        conn.adapters.register_dumper(bool, _BoolAsInt)
        conn.adapters.register_dumper(bool, _BoolAsIntBinary)
        try:
            plans = _KEYED_PLANS if self._keyed_plans else _CUSTOM_PLANS
            conn.execute(f"{_session_settings()}; {plans}")
            # Which start of the server this connection reached: commits
            # made without waiting for the WAL flush are durable after a
            # later flush only on that same start (`flush_since`).
            self.server_started = _server_started(conn)
        except psycopg.Error as e:
            conn.close()
            raise StoreUnreachable(
                f"cannot connect to the store at {redact(self.url)}: {_line(e)}"
            ) from None
        self._reach.connected = time.monotonic()
        return conn

    @property
    def reachable(self) -> bool:
        return not (self.conn.closed or self.conn.broken)

    @property
    def in_transaction(self) -> bool:
        if not self.reachable:
            return False  # nothing to roll back on a broken connection
        return self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def drop_if_ended(self) -> None:
        """Closes the connection if the server ended its session while it
        was idle (a restart, a failover, `pg_terminate_backend`), so that
        the next statement opens a new one (at once, unless the session
        held state) instead of failing on the old one: after an outage,
        the intake's connections, unused while intake was closed, failed
        the first batch with 451. No round trip: an idle session's socket
        turns readable only when the server says goodbye (its FATAL
        error, then the end of the stream; mxg listens for no
        notifications), which is all this asks."""
        if self._pipeline is not None or not self.reachable:
            return
        pgconn = self.conn.pgconn
        if pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return
        # poll, not select: a busy relay's descriptors pass FD_SETSIZE.
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        if not poller.poll(0):
            return
        self.conn.close()
        hosts.lost(self.url, *self._on)
        self._failed_at = time.monotonic()
        self._retry_at = self._failed_at + self._first_wait()
        self._backoff = RECONNECT_FIRST
        if self.on_reconnect is not None:
            self._tell(False)

    def _first_wait(self) -> float:
        """How long after a break the connection is opened again. At once
        when the session held no state: a batch right after a lost answer
        or an ended session must not get 451 from a server that is fine.
        The relay's own connection waits `RECONNECT_FIRST`: its session
        lock (the node's) is freed as the server's backend exits, just
        after its goodbye, and taking it again must not race that."""
        return 0.0 if self.on_reconnect is None else RECONNECT_FIRST

    def _ready(self) -> psycopg.Connection[Any]:
        """The connection, opened again if it broke (when the backoff
        allows, or another connection to the store got through since),
        if the server ended it while it was idle (`drop_if_ended`), or if
        it is idle on a server another connection of this
        process was lost on since it opened (`hosts.losses`): a server
        whose host vanished answers nothing, and this connection would
        learn it only when its own next statement timed out
        (`tcp_user_timeout`), each idle connection one after the other.
        Not a connection with session state (`on_reconnect`): the server
        may not have ended the old session yet when the new one takes
        its session locks again, and the relay would find its own node
        lock taken."""
        self.drop_if_ended()
        suspect = False
        if self.reachable:
            if (
                hosts.losses(self.url, *self._on) == self._losses
                or self.on_reconnect is not None
                or self.in_transaction
                or self._pipeline is not None
            ):
                return self.conn
            suspect = True
            self.conn.close()
        now = time.monotonic()
        retry_at = self._retry_at
        if self._reach.connected > self._failed_at:
            # Another connection got through since: the rest of a backoff
            # grown while the server was down is waived, not the first
            # wait after a break.
            retry_at = min(retry_at, self._failed_at + self._first_wait())
        if now < retry_at and not suspect:
            raise StoreUnreachable(f"the store at {redact(self.url)} is unreachable")
        try:
            conn = self._connect()
            self.conn = conn
            if self.on_reconnect is not None:
                self._again(conn)
        except StoreUnreachable:
            self._retry_at, self._failed_at = now + self._backoff, now
            self._backoff = min(self._backoff * 2, RECONNECT_LONGEST)
            self._tell(False)
            raise
        self._backoff = RECONNECT_FIRST
        self._tell(True)
        return conn

    def plan_by_key(self) -> None:
        """From now on, also after a reconnect, this connection plans its
        statements once, by key (`_KEYED_PLANS`): for one that runs the
        hot path's statements alone. Not for catalog queries: those plans
        are slow to run (the schema check at open took 80 ms)."""
        self._keyed_plans = True
        try:
            self._ready().execute(_KEYED_PLANS)
        except psycopg.Error as e:
            if (lost := self._broke(e)) is not None:
                raise lost from None
            raise

    def ready(self) -> None:
        """The connection usable (`_ready`), or StoreUnreachable: a caller
        that asks first can tell a statement that never went from one
        whose answer was lost."""
        self._ready()

    def _tell(self, reachable: bool) -> None:
        """`on_reachable`, at each change."""
        if reachable != self._told:
            self._told = reachable
            if self.on_reachable is not None:
                self.on_reachable(reachable)

    def _again(self, conn: psycopg.Connection[Any]) -> None:
        """`on_reconnect` on the new connection: one that breaks meanwhile
        (the server ends sessions again) is closed and the store stays
        unreachable, as when the connect failed; a psycopg error here
        ended the relay, which waits out only `StoreUnreachable`."""
        assert self.on_reconnect is not None
        try:
            self.on_reconnect(self)
        except psycopg.Error as e:
            conn.close()
            raise StoreUnreachable(
                f"cannot connect to the store at {redact(self.url)}: {_line(e)}"
            ) from None

    def _broke(self, e: psycopg.Error) -> StoreUnreachable | None:
        """A failed statement that broke the connection: tells
        `on_reachable` and returns the error to raise instead."""
        if self.reachable:
            return None  # a failed statement, the connection is fine
        hosts.lost(self.url, *self._on)
        self._failed_at = time.monotonic()
        self._retry_at = self._failed_at + self._first_wait()
        self._backoff = RECONNECT_FIRST
        self._tell(False)
        return StoreUnreachable(
            f"lost the connection to the store at {redact(self.url)}: {_line(e)}"
        )

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """Statements sent without waiting for each one's result (libpq's
        pipeline mode): a transaction's round trips are then only those
        whose results it reads before it commits, and the last one. An
        error is raised where a result is read, or at the end."""
        conn = self._ready()
        try:
            with conn.pipeline() as p:
                self._pipeline = p
                try:
                    yield
                finally:
                    self._pipeline = None
        except psycopg.Error as e:
            if (lost := self._broke(e)) is not None:
                raise lost from None
            raise

    def read_by_index(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """The rows of read-only `statements`, planned with bitmap and
        sequential scans off, in one round trip (a pipelined transaction
        whose SET LOCALs end with it): for a walk of an index in order
        that must stop at its limit, which a bitmap scan or a sequential
        one would read whole and sort (the due query, store/queue.py).
        Not inside a transaction: its COMMIT would end it."""
        assert not self.in_transaction, "read_by_index inside a transaction"
        try:
            with self.pipeline():
                self.execute("BEGIN")
                self.execute("SET LOCAL enable_bitmapscan = off")
                self.execute("SET LOCAL enable_seqscan = off")
                cursors = [self.execute(sql, params) for sql, params in statements]
                self.execute("COMMIT")
        except BaseException:
            if self.in_transaction:  # a statement failed: its transaction is aborted
                self.execute("ROLLBACK")
            raise
        return [cur.fetchall() for cur in cursors]

    def _results_of(self, p: psycopg.Pipeline) -> Callable[[], None]:
        """What a pipelined statement's cursor calls before its results
        are read: every result so far, unless its pipeline ended (which
        read them all)."""

        def results() -> None:
            if self._pipeline is not p:
                return
            try:
                p.sync()
            except psycopg.Error as e:
                if (lost := self._broke(e)) is not None:
                    raise lost from None
                raise

        return results

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        text, returns_id = to_postgres(sql, returning=True)
        cur = self._ready().cursor()
        try:
            # Always a tuple, also empty: psycopg then reads `%%` as `%`.
            cur.execute(text, tuple(params))
            lastrowid = None
            if returns_id:
                row = cur.fetchone()
                lastrowid = int(row[0]) if row is not None else None
        except psycopg.Error as e:
            if (lost := self._broke(e)) is not None:
                raise lost from None
            raise
        if returns_id:  # its result is read already
            return PgCursor(cur, lastrowid)
        return self._cursor(cur)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        """The statement for each row, in one statement per batch where
        the statement's shape allows (`batched`): a row each is a Bind
        and an Execute each, on the server and in psycopg, and the hot
        path runs these for every message."""
        text, _ = to_postgres(sql, returning=False)
        params = [tuple(r) for r in rows]
        cur = self._ready().cursor()
        try:
            shape = batched(text)
            if shape is None or not params:
                cur.executemany(text, params)
            elif isinstance(shape, str):  # one key per row: `= ANY` of them all
                cur.execute(shape, ([p[0] for p in params],))
            else:
                # One array per column: the same statement text whatever
                # the rows, which psycopg caches and PostgreSQL prepares.
                cur.execute(self._unnest(*shape), [list(c) for c in zip(*params, strict=True)])
        except psycopg.Error as e:
            if (lost := self._broke(e)) is not None:
                raise lost from None
            raise
        return self._cursor(cur)

    def _cursor(self, cur: psycopg.Cursor[Any]) -> PgCursor:
        """The statement's `PgCursor`; inside a pipeline, one that waits
        for the results when they are read."""
        if self._pipeline is not None:
            return PgCursor(cur, results=self._results_of(self._pipeline))
        return PgCursor(cur)

    def _unnest(self, table: str, columns: tuple[str, ...], tail: str) -> str:
        """A row INSERT as one statement over arrays (`unnest`)."""
        arrays = self.unnest(table, columns).replace("?b", "%b")
        return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM {arrays}{tail}"

    def unnest(self, table: str, columns: tuple[str, ...]) -> str:
        """``unnest`` over one array parameter per column of `table`, in
        the store's dialect (``?b``: sent in binary), each cast to its
        column's type (a parameter's own type says nothing of a NULL)."""
        types = self._types.get(table, {})
        if not all(c in types for c in columns):
            try:
                rows = (
                    self._ready()
                    .execute(
                        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                        (table,),
                    )
                    .fetchall()
                )
            except psycopg.Error as e:
                if (lost := self._broke(e)) is not None:
                    raise lost from None
                raise
            types = self._types[table] = {r[0]: r[1] for r in rows}
        # Arrays in binary: psycopg sends a list as text by escaping each
        # element with a regular expression (2.4 times the CPU for a batch
        # of messages), and a body would be hex-escaped to twice its size,
        # escaped again as an array element, and decoded by the server.
        return f"unnest({', '.join(f'?b::{types[c]}[]' for c in columns)})"

    def copy_row(self, copy: str, fields: Sequence[bytes]) -> None:
        """One row into a table with ``COPY ... FROM STDIN (FORMAT binary)``
        (`copy`), each field given as its binary representation (a text's
        UTF-8 bytes, a bytea's bytes), sent in pieces of `COPY_PIECE`: a
        large body is never copied whole once more, into one parameter or
        into libpq's buffer (rule 12b). Not in a pipeline (COPY is not
        pipelined)."""
        cur = self._ready().cursor()
        row = len(fields).to_bytes(2, "big")
        try:
            with cur.copy(copy) as out:
                out.write(_COPY_HEADER + row)
                for field in fields:
                    out.write(len(field).to_bytes(4, "big"))
                    view = memoryview(field)
                    for at in range(0, len(view), COPY_PIECE):
                        out.write(view[at : at + COPY_PIECE])
                out.write(_COPY_TRAILER)
        except psycopg.Error as e:
            if (lost := self._broke(e)) is not None:
                raise lost from None
            raise

    def executescript(self, script: str) -> None:
        conn = self._ready()
        try:
            conn.execute(ddl_to_postgres(script).encode())
        except psycopg.Error as e:
            if (lost := self._broke(e)) is not None:
                raise lost from None
            raise

    def close(self) -> None:
        self.conn.close()

    def flush_since(self, started: Iterable[datetime]) -> None:
        """Waits until the server's WAL is flushed up to now: one commit
        that wrote a WAL record waits for it, and every record before it,
        to be on disk (synchronous_commit on, `_FLUSH`), so every
        commit made without waiting (``synchronous_commit = off``) before
        this call is durable after it. Unless the server started again
        since those commits (`started`: the starts they were made on),
        which may have lost them: then OSError, as a failed fsync. A broken
        connection is opened again first."""
        try:
            row = self._ready().execute(_FLUSH).fetchone()
        except (psycopg.Error, StoreUnreachable) as e:
            if isinstance(e, psycopg.Error):
                self._broke(e)
            raise OSError(errno.EIO, f"cannot flush the store's WAL: {_line(e)}") from None
        assert row is not None  # a SELECT without FROM returns its one row
        _same_start(started, row[1])

    # `flush_since` in steps, for an event loop that waits on the socket
    # itself (`pipeline/groupflush.py`) rather than in a thread: there the
    # thread waited for the event loop's hold on the GIL after each round
    # trip (up to the 5 ms switch interval each time), and the 250s with it.

    def send_flush(self) -> int:
        """Sends `flush_since`'s statement; returns the socket to wait on
        (readable) until `flush_arrived`. Opens the connection again
        first if it broke (blocking: a connect)."""
        try:
            conn = self._ready()
            conn.pgconn.send_query(_FLUSH)
            return int(conn.pgconn.socket)
        except (psycopg.Error, StoreUnreachable) as e:
            raise self._flush_failed(e) from None

    def flush_arrived(self) -> bool:
        try:
            self.conn.pgconn.consume_input()
            return not self.conn.pgconn.is_busy()
        except psycopg.Error as e:
            raise self._flush_failed(e) from None

    def end_flush(self, started: Iterable[datetime]) -> None:
        """Reads the answer `send_flush` asked for: as `flush_since`."""
        pgconn = self.conn.pgconn
        results = []
        while (result := pgconn.get_result()) is not None:
            results.append(result)
        if not results or results[0].status != psycopg.pq.ExecStatus.TUPLES_OK:
            error = results[0].error_message if results else b""
            raise self._flush_failed(
                psycopg.OperationalError(error.decode(errors="replace") or "no answer")
            )
        loader = Transformer(self.conn)
        loader.set_pgresult(results[0])
        now = loader.load_row(0, tuple)[1]
        _same_start(started, now)

    def _flush_failed(self, e: BaseException) -> OSError:
        if isinstance(e, psycopg.Error) and self.conn.pgconn.status != psycopg.pq.ConnStatus.OK:
            self.conn.close()  # opened again at the next `send_flush`
            self._broke(e)
        return OSError(errno.EIO, f"cannot flush the store's WAL: {_line(e)}")


# PostgreSQL's binary COPY format: the signature, flags and header
# extension length before the rows, -1 fields after them.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
# The piece of a field `copy_row` sends at a time: libpq's buffer holds
# about this much, not the whole field.
COPY_PIECE = 1 << 20

# One statement, one round trip: it writes a WAL record in its transaction
# (an empty logical decoding message, which needs no privilege and no
# table), so its commit waits for the WAL flush (synchronous_commit on),
# every record before its own included; and it names the server start it
# ran on. A transaction id alone is not enough: PostgreSQL commits a
# transaction that wrote no WAL before its commit record without waiting
# for the flush (xact.c, RecordTransactionCommit), and a crash then lost
# commits this had reported durable.
_FLUSH = b"SELECT pg_logical_emit_message(true, 'mxg', ''), pg_postmaster_start_time()"


# A session of the relay's left idle inside a transaction is ended by the
# server after this long (`idle_in_transaction_session_timeout`). A
# network partition that cuts the relay off mid-transaction ends only its
# own side: the server keeps the session, and the writers' lock with it,
# until it hears from the client again, which with the system's TCP
# keepalive is hours, while every writer of the cluster waits. No
# transaction of mxg's idles between its statements for more than
# milliseconds; a ghost is gone within the default lease (15 s,
# `[cluster] lease`), so a takeover never waits for it either.
IDLE_IN_TRANSACTION_MS = 15_000
# The server's side of the relay's sessions probes as the relay's own
# connections do (the URL's keepalives, docs/cluster.md): a node whose
# host vanishes (powered off: nothing answers, nothing is reset) leaves
# sessions that the server keeps, with their locks (the node's, the
# housekeeper's), until TCP gives up: over two hours with the system's
# keepalive, 15 minutes of retransmissions for an answer under way. With
# these the server ends them after about 10 s of silence.
_SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2;"
    " SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000"
)


# No JIT compilation: it pays off for queries that run for seconds, and
# mxg's run for milliseconds, but PostgreSQL compiles any whose estimated
# cost passes jit_above_cost, which an index walk with a LIMIT on a large
# queue does: 11-17 ms of compiling for a due query of 3-5 ms.
_NO_JIT = "SET jit = off"


def _session_settings() -> str:
    """What every connection sets first (read at each connect, so that a
    test can shorten the timeout)."""
    return (
        f"SET idle_in_transaction_session_timeout = {int(IDLE_IN_TRANSACTION_MS)};"
        f" {_SERVER_KEEPALIVES}; {_NO_JIT}"
    )


# psycopg prepares a statement at its fifth run, and PostgreSQL then
# settles on a generic plan, costed against the tables as they were then:
# planned on a young, near-empty queue, the intake's key lookup scanned
# the whole table at every batch (3.6 ms each at 10,000 messages). So a
# plan per run, from the parameters and the table as it is.
_CUSTOM_PLANS = "SET plan_cache_mode = force_custom_plan"
# The hot path's statements (a batch of received messages, of results)
# find every row by its key, so the plan that is right is known without
# costing the tables: index scans joined by nested loops. Planned once per
# prepared statement, that plan is the same however young the tables (no
# sequential scan, hash or merge join to choose on a near-empty queue and
# keep), and the planning is saved: a quarter of PostgreSQL's CPU for the
# relay's statements was planning them anew at every run
# (pg_stat_statements, docs/benchmarks.md). Only for connections that run
# those statements alone (`Store.companion`).
_KEYED_PLANS = (
    "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off;"
    " SET enable_hashjoin = off; SET enable_mergejoin = off"
)


def _same_start(started: Iterable[datetime], now: datetime) -> None:
    """OSError when a commit was made on another start of the server than
    `now`'s: the server started again since, and it may be lost."""
    if any(t != now for t in started):
        raise OSError(
            errno.EIO,
            "the store's server started again since commits that did not wait"
            " for its WAL; they may be lost",
        )


def _server_started(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None  # a SELECT without FROM returns its one row
    return row[0]  # type: ignore[no-any-return]


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def _line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


_NOCASE = re.compile(r"([\w.]+) = \? COLLATE NOCASE")
_JSON_TEXT = re.compile(r"json_extract\(([\w.]+), '\$\.(\w+)'\)")
# SQLite's unary plus on a column keeps its planner off that column's
# index (store/queue.py); PostgreSQL has no such operator for text.
_UNARY_PLUS = re.compile(r"(?<=[\s(,])\+(?=[a-z_])")
_INSERT_ID = re.compile(r"^INSERT INTO (tlsrpt_requests|carriers|attempts|events)\b")
# Shapes `executemany` sends as one statement: an INSERT of one row of
# parameters (one array per column, `unnest`ed; not with DO UPDATE, which
# may not touch a row twice in one statement), and an UPDATE or DELETE of constants
# keyed by one parameter (repeating it changes nothing, so one `= ANY`).
_ROW_INSERT = re.compile(
    r"^INSERT INTO (\w+) \(([\w, ]+)\) VALUES \((?:%s,)*%s\)( ON CONFLICT DO NOTHING)?$"
)
_KEYED_CONSTANT = re.compile(
    r"^(?:UPDATE \w+ SET (?:\w+=(?:'\w*'|\d+|NULL)(?:, )?)+|DELETE FROM \w+) WHERE (\w+)=%s$"
)


@functools.lru_cache(maxsize=1024)
def to_postgres(sql: str, returning: bool) -> tuple[str, bool]:
    """The store's SQLite statement for PostgreSQL, and whether it
    returns the new row's id (what ``lastrowid`` gives in SQLite; asked
    for by ``execute``, never by ``executemany``)."""
    s = sql.replace("%", "%%")
    s = _NOCASE.sub(r"lower(\1) = lower(?)", s)
    s = _UNARY_PLUS.sub("", s)
    s = _JSON_TEXT.sub(r"(\1::jsonb ->> '\2')", s)
    if s.startswith("INSERT OR IGNORE INTO"):
        s = "INSERT INTO" + s[len("INSERT OR IGNORE INTO") :] + " ON CONFLICT DO NOTHING"
    returns_id = returning and bool(_INSERT_ID.match(s)) and "RETURNING" not in s
    if returns_id:
        s += " RETURNING id"
    # `?b`: a parameter sent in binary (the arrays of batched statements).
    return s.replace("?b", "%b").replace("?", "%s"), returns_id


@functools.lru_cache(maxsize=256)
def batched(text: str) -> tuple[str, tuple[str, ...], str] | str | None:
    """How `executemany` sends a translated statement in one: for a row
    INSERT, its table, its columns and its tail; for a keyed UPDATE or
    DELETE of constants, the statement on an array of keys; None when it
    goes a row at a time."""
    if m := _ROW_INSERT.match(text):
        columns = tuple(c.strip() for c in m[2].split(","))
        if len(columns) == m[0].count("%s"):
            return m[1], columns, m[3] or ""
        return None
    if m := _KEYED_CONSTANT.match(text):
        return text.removesuffix(f"{m[1]}=%s") + f"{m[1]} = ANY(%s)"
    return None


def ddl_to_postgres(script: str) -> str:
    """The schema's DDL for PostgreSQL: 64-bit integers (times are in
    milliseconds), identity ids, bytea, no SQLite table options."""
    s = re.sub(r"--[^\n]*", "", script)
    s = re.sub(
        r"\bid(\s+)INTEGER PRIMARY KEY",
        r"id\1BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        s,
    )
    s = re.sub(r"\bINTEGER\b", "BIGINT", s)
    s = re.sub(r"\bREAL\b", "DOUBLE PRECISION", s)
    s = re.sub(r"\bBLOB\b", "BYTEA", s)
    s = s.replace(" COLLATE NOCASE", "").replace(") WITHOUT ROWID;", ");")
    return s
