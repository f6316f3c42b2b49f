"""The queue index's tables and their migrations: the DDL every start
runs (``CREATE ... IF NOT EXISTS``) and the columns later versions added,
which an older store gets on open.

PostgreSQL (a server other nodes and tools share) is not changed by a
start: `mxg store migrate` applies its numbered migrations, and a start
on an older schema is refused (`check_postgres`)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from mxg.errors import StoreError, StoreOutdated
from mxg.store.postgres import redact

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    queue_id     TEXT PRIMARY KEY,
    received_ms  INTEGER NOT NULL,
    sender       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    message_id   TEXT,
    envid        TEXT,
    ret          TEXT,
    body         TEXT,
    smtputf8     INTEGER NOT NULL DEFAULT 0,
    origin       TEXT NOT NULL,
    client_addr  TEXT,
    state        TEXT NOT NULL DEFAULT 'active',  -- active | held | done
    delay_warned INTEGER NOT NULL DEFAULT 0,
    hold_reason  TEXT,
    class        TEXT,  -- normal | high | secret (the highest of its recipients')
    classification TEXT,  -- JSON: the rules that fired, and with what
    requiretls   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS recipients (
    queue_id     TEXT NOT NULL REFERENCES messages(queue_id),
    idx          INTEGER NOT NULL,
    address      TEXT NOT NULL,
    domain       TEXT NOT NULL,
    notify       TEXT NOT NULL DEFAULT '',
    orcpt        TEXT,
    status       TEXT NOT NULL DEFAULT 'pending', -- mxg.vocab.RecipientState
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_ms      INTEGER NOT NULL DEFAULT 0,
    code         INTEGER,
    enhanced     TEXT,
    text         TEXT,
    host         TEXT,
    ip           TEXT,
    tls          TEXT,
    level        TEXT,
    evidence     TEXT,  -- JSON: what the last session proved (ARCHITECTURE.md, vocabulary)
    updated_ms   INTEGER,
    dsn_sent     INTEGER NOT NULL DEFAULT 0,
    class        TEXT,
    override_level TEXT,  -- set by an operator's release: the level for this message
    route        TEXT NOT NULL DEFAULT '',  -- '' or 'reroute' (the class's fallback relay)
    reason       TEXT,  -- the typed failure reason of the last attempt (mxg.vocab.Reason)
    asked        INTEGER NOT NULL DEFAULT 0,  -- awaiting-sender: the notice is queued
    decision     TEXT,  -- the sender's (or an operator's) decision: keep|normal|envelope|cancel
    decided      TEXT,  -- JSON of the decision: at_ms, by (actor), token (link id), client
    PRIMARY KEY (queue_id, idx)
);
-- Partial indexes: only what is still waiting, so that the scheduler's
-- queries do not slow down as finished history grows. A query uses them
-- only when its WHERE holds the same term (store/queue.py, store/depth.py).
CREATE INDEX IF NOT EXISTS recipients_waiting ON recipients(status, next_ms)
    WHERE status IN ('pending','deferred');
-- By state, and within a state by age: /metrics reads the oldest message of
-- a state in one lookup. It replaces messages_open(state) with the same
-- rows, so a message costs no more index writes than before.
CREATE INDEX IF NOT EXISTS messages_open_age ON messages(state, received_ms)
    WHERE state IN ('active','held');
-- Recipients a class's on_unmet held: few, counted for /metrics.
CREATE INDEX IF NOT EXISTS recipients_held ON recipients(status)
    WHERE status = 'held';
-- Recipients parked for the sender's decision (on_unmet = "ask-sender"):
-- few; the scanner asks for unsent notices and expired ones every scan.
CREATE INDEX IF NOT EXISTS recipients_awaiting_sender ON recipients(status, queue_id)
    WHERE status = 'awaiting-sender';
-- The links of decision notices (mxg.decide.tokens): issued with the
-- notice, used once (store/decisions.py).
CREATE TABLE IF NOT EXISTS decision_tokens (
    token_id     TEXT PRIMARY KEY,  -- hex, the token's nonce
    queue_id     TEXT NOT NULL,
    recipients   TEXT NOT NULL,  -- JSON list of the recipient indexes it decides
    issued_ms    INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    used_ms      INTEGER,  -- set once: a second use is refused
    choice       TEXT,
    client       TEXT,  -- the address the decision came from
    result       TEXT   -- JSON: what the decision changed
);
-- Secure-envelope carrier mails a decision made, waiting for the relay to
-- spool them (they hold no plaintext and no password).
CREATE TABLE IF NOT EXISTS carriers (
    id           INTEGER PRIMARY KEY,
    queue_id     TEXT NOT NULL,  -- the original message
    recipients   TEXT NOT NULL,  -- JSON list of its recipient indexes
    data         BLOB NOT NULL,  -- the carrier mail (mxg.envelope.seal)
    made_ms      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id           INTEGER PRIMARY KEY,
    queue_id     TEXT NOT NULL,
    address      TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    status       TEXT NOT NULL,
    code         INTEGER,
    enhanced     TEXT,
    text         TEXT,
    host         TEXT,
    ip           TEXT,
    tls          TEXT,
    level        TEXT,
    evidence     TEXT,
    reason       TEXT
);
CREATE INDEX IF NOT EXISTS attempts_queue ON attempts(queue_id);
-- Bounced recipients whose DSN is not yet queued: the scanner asks every
-- scan (operator bounces, DSNs a full disk held back); partial, so the
-- query reads only those few, never every bounce the store remembers.
CREATE INDEX IF NOT EXISTS recipients_dsn_pending ON recipients(queue_id)
    WHERE status = 'bounced' AND dsn_sent = 0;
CREATE TABLE IF NOT EXISTS sts_policies (
    domain       TEXT PRIMARY KEY,
    id           TEXT NOT NULL,
    mode         TEXT NOT NULL,
    mx           TEXT NOT NULL,  -- JSON list of patterns
    max_age      INTEGER NOT NULL,
    expires      REAL NOT NULL   -- Unix time
);
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY,
    queue_id     TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    detail       TEXT,
    domain       TEXT  -- the domain of a suspend or resume (queue_id '')
);
-- Domains an operator suspended (mxg queue suspend): their recipients are
-- not dispatched until resumed.
CREATE TABLE IF NOT EXISTS suspended_domains (
    domain       TEXT PRIMARY KEY,
    since_ms     INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT ''
);
-- The tamper-evident audit trail (store/audit.py): a hash chain of
-- blocks, one per transaction, each holding that transaction's records.
CREATE TABLE IF NOT EXISTS audit_blocks (
    last_seq     INTEGER PRIMARY KEY,  -- the number of the block's last record
    first_seq    INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL,
    records      BLOB NOT NULL,  -- zlib: JSON array of [kind, queue_id, actor, data]
    locators     BLOB NOT NULL,  -- CRC-32 of each record's JSON: which one changed
    prev         BLOB NOT NULL,  -- the hash of the block before
    hash         BLOB NOT NULL
);
-- Which blocks hold a message's records (its proof lists them).
CREATE TABLE IF NOT EXISTS audit_messages (
    queue_id     TEXT NOT NULL,
    last_seq     INTEGER NOT NULL,
    PRIMARY KEY (queue_id, last_seq)
) WITHOUT ROWID;
-- The partner ledger (store/partners.py): the best level and method
-- each recipient domain was delivered at, and its last failure.
CREATE TABLE IF NOT EXISTS partners (
    domain          TEXT PRIMARY KEY COLLATE NOCASE,
    first_ms        INTEGER NOT NULL,
    last_ms         INTEGER NOT NULL,
    best_level      TEXT,
    best_method     TEXT,
    best_ms         INTEGER,
    failure_ms      INTEGER,
    failure_reason  TEXT,
    failure_text    TEXT,
    accepted_ms     INTEGER,  -- an operator accepted a drop (mxg partners accept)
    accepted_by     TEXT,
    accepted_reason TEXT
);
-- TLS reports (RFC 8460, store/tlsrpt.py): sessions per UTC day, policy
-- domain, policy (JSON) and failure; result '' counts successes.
CREATE TABLE IF NOT EXISTS tlsrpt_sessions (
    day          TEXT NOT NULL,
    domain       TEXT NOT NULL,
    policy       TEXT NOT NULL,
    result       TEXT NOT NULL,
    sending_ip   TEXT NOT NULL,
    receiving_mx TEXT NOT NULL,
    receiving_ip TEXT NOT NULL,
    code         TEXT NOT NULL,
    sessions     INTEGER NOT NULL,
    PRIMARY KEY (day, domain, policy, result, sending_ip, receiving_mx, receiving_ip, code)
) WITHOUT ROWID;
-- Each day's report per destination: sent once, also across restarts.
CREATE TABLE IF NOT EXISTS tlsrpt_sent (
    day          TEXT NOT NULL,
    domain       TEXT NOT NULL,
    rua          TEXT NOT NULL,
    report_id    TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    status       TEXT NOT NULL,  -- sent | failed (tried again at next_ms) | gave-up
    tries        INTEGER NOT NULL,
    next_ms      INTEGER NOT NULL DEFAULT 0,
    detail       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (day, domain, rua)
);
-- Runs an operator asked for (mxg tlsrpt send); the relay serves them.
CREATE TABLE IF NOT EXISTS tlsrpt_requests (
    id           INTEGER PRIMARY KEY,
    day          TEXT NOT NULL,
    domain       TEXT NOT NULL,  -- '' for every domain of the day
    at_ms        INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    done_ms      INTEGER,
    result       TEXT,  -- JSON: what happened per destination
    error        TEXT
);
"""

# Signed (Ed25519) statements that the chain's record seq (a block's last)
# had this hash. Apart, so that a store with the first, unreleased trail
# format can start a new chain (`migrate`).
CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq          INTEGER PRIMARY KEY,
    hash         BLOB NOT NULL,
    at_ms        INTEGER NOT NULL,
    key_id       TEXT NOT NULL,
    signature    BLOB NOT NULL
);
"""

# (table, column, declaration) added after the first schema.
_ADDED_COLUMNS = (
    ("recipients", "reason", "TEXT"),
    ("attempts", "reason", "TEXT"),
    ("messages", "class", "TEXT"),
    ("messages", "classification", "TEXT"),
    ("messages", "requiretls", "INTEGER NOT NULL DEFAULT 0"),
    ("recipients", "class", "TEXT"),
    ("recipients", "override_level", "TEXT"),
    ("recipients", "route", "TEXT NOT NULL DEFAULT ''"),
    ("events", "domain", "TEXT"),
    ("recipients", "asked", "INTEGER NOT NULL DEFAULT 0"),
    ("recipients", "decision", "TEXT"),
    ("recipients", "decided", "TEXT"),
    # The owner of a message in a cluster (CLUSTER below); always NULL
    # on SQLite, whose store is one node's: the shared SQL names it.
    ("messages", "node", "TEXT"),
)


# Indexes of earlier versions, replaced by the partial ones above.
_DROPPED_INDEXES = ("recipients_due", "messages_state", "messages_open", "recipients_awaiting")


def migrate(db: sqlite3.Connection) -> None:
    """Adds columns that later versions introduced to an older store
    (CREATE TABLE IF NOT EXISTS leaves existing tables as they are), and
    drops the indexes they replaced."""
    _set_aside_record_chain(db)
    db.executescript(CHECKPOINTS)
    for index in _DROPPED_INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {index}")
    for table, column, decl in _ADDED_COLUMNS:
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def _set_aside_record_chain(db: sqlite3.Connection) -> None:
    """Development builds chained one row per record (table ``audit``);
    never released. Their records and checkpoints are kept, renamed, and
    the block chain starts anew: rewriting them into blocks would
    recompute every hash, which is what the trail exists to reveal."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "audit" in tables:
        db.execute("ALTER TABLE audit RENAME TO audit_records_v0")
        if "audit_checkpoints" in tables:
            db.execute("ALTER TABLE audit_checkpoints RENAME TO audit_checkpoints_v0")


# Version 2, the cluster (docs/cluster.md): the nodes and their leases,
# and each message's owner. Times are PostgreSQL's clock, in ms.
CLUSTER = """
CREATE TABLE IF NOT EXISTS nodes (
    name           TEXT PRIMARY KEY,
    state          TEXT NOT NULL,  -- running | draining | stopped
    pid            INTEGER NOT NULL,
    host           TEXT NOT NULL,
    version        TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    started_ms     INTEGER NOT NULL,
    heartbeat_ms   INTEGER NOT NULL,
    lease_until_ms INTEGER NOT NULL
);
-- The node that delivers the message; NULL: unowned, any node may claim
-- it (a drained node released it).
ALTER TABLE messages ADD COLUMN node TEXT;
-- Unfinished messages by owner: a node's own queue, and the takeover's
-- claim of a dead node's (or unowned) messages, read only these rows.
CREATE INDEX IF NOT EXISTS messages_node ON messages(node, state)
    WHERE state IN ('active','held');
"""

# Version 3, bodies before the 250 (docs/cluster.md): each unfinished
# message's spool file, byte for byte, committed with its index rows
# before the client gets its 250 and deleted in the transaction that
# marks it done, so an acknowledged message outlives the node that took
# it. PostgreSQL only: an SQLite store is one node's, and its spool is on
# the same disk.
SPOOL_BODIES = """
CREATE TABLE IF NOT EXISTS spool_bodies (
    queue_id TEXT PRIMARY KEY,
    raw      BLOB NOT NULL
);
"""

# Version 4: what a node reports for `mxg cluster status`: its delivery
# jobs in flight at the last heartbeat, and the id of the key it signs
# checkpoints and proofs with (every node should have the same).
NODE_STATUS = """
ALTER TABLE nodes ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
"""

# Version 5, the relay's hot path on PostgreSQL (docs/benchmarks.md):
# - bodies compressed with LZ4 rather than the default pglz when they are
#   large enough to be compressed (over about 2 kB): storing a 5 kB body
#   cost the server 134 us of CPU with pglz and 48 with LZ4, in a quarter
#   more space. Skipped by a server built without LZ4, which keeps pglz;
# - one block per first record number: a writer may append after the
#   tail it wrote last without reading it (`Database.retrying`), and this
#   refuses its block when another writer appended since.
HOT_PATH = """
DO $$ BEGIN
    ALTER TABLE spool_bodies ALTER COLUMN raw SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN NULL;
END $$;
CREATE UNIQUE INDEX IF NOT EXISTS audit_blocks_first ON audit_blocks(first_seq);
"""

# PostgreSQL's schema versions: each migration brings the store from the
# version before it to its own. Version 1 is SCHEMA and CHECKPOINTS as of
# the first PostgreSQL store; a later schema change appends a step (its
# DDL in SQLite's dialect, translated like SCHEMA) and SQLite's
# `_ADDED_COLUMNS` or DDL gets the same change.
#
# Rolling upgrades (docs/cluster.md) are expand/contract: each step says
# which nodes still run on the schema it leaves, so that nodes of the
# version before keep working while the others are upgraded one by one.


@dataclass(frozen=True)
class Migration:
    """One step of PostgreSQL's schema.

    ``ddl``: the change, in SQLite's dialect. ``readable_by``: the oldest
    schema version whose *code* still runs correctly on the schema this
    step leaves, beside nodes of newer code (its SQL and its behaviour).
    An expanding step that older code ignores (a new table, a nullable or
    defaulted column, an index) is ``readable_by=1``: every version. A
    contracting one (a drop, a rename, a new NOT NULL without a default,
    or anything older code would have to do for newer code to be right)
    is the first version whose code no longer needs what it takes away:
    at most the step's own version."""

    ddl: str
    readable_by: int


_PG_MIGRATIONS: tuple[Migration, ...] = (
    Migration(SCHEMA + CHECKPOINTS, readable_by=1),
    # Contracting although it only adds: version 1 indexes messages
    # without an owner (NULL: any node may claim them) and knows no nodes.
    Migration(CLUSTER, readable_by=2),
    # Contracting: older code would give a 250 without storing the body
    # (the message would not outlive its node) and would leave the body
    # rows of the messages it finishes behind.
    Migration(SPOOL_BODIES, readable_by=3),
    Migration(NODE_STATUS, readable_by=1),
    Migration(HOT_PATH, readable_by=1),
)
SCHEMA_VERSION = len(_PG_MIGRATIONS)

# One row per applied step. Every version of mxg reads this table the
# same way (it is how an older node learns whether it may run on a newer
# schema): never change it in a migration.
_PG_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, readable_by INTEGER);
ALTER TABLE schema_version ADD COLUMN IF NOT EXISTS readable_by INTEGER;
"""

# A live node (the cluster's `nodes` table, when there is one): its lease
# has not run out by PostgreSQL's clock, and it has not stopped.
_LIVE_NODES = """
SELECT name, host, schema_version FROM nodes
WHERE state <> 'stopped'
  AND lease_until_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint
ORDER BY name
"""


@dataclass(frozen=True)
class LiveNode:
    name: str
    host: str
    schema_version: int

    def __str__(self) -> str:
        return f"{self.name} (schema {self.schema_version}, host {self.host})"


@dataclass(frozen=True)
class Step:
    """A migration the store lacks, and the live nodes whose code could
    not run on the schema it leaves."""

    version: int
    readable_by: int
    blockers: tuple[LiveNode, ...]

    @property
    def contracts(self) -> bool:
        return self.readable_by > 1

    def describe(self) -> str:
        if not self.contracts:
            return f"version {self.version}: expands (every version runs on it)"
        text = (
            f"version {self.version}: contracts (mxg of schema version"
            f" {self.readable_by} or later runs on it)"
        )
        if self.blockers:
            text += ", blocked by live nodes: " + ", ".join(map(str, self.blockers))
        return text


class MigrationBlocked(StoreError):
    """A contracting step would break live nodes of older code."""

    def __init__(self, step: Step, start: int, at: int) -> None:
        self.step = step
        self.start = start  # the version the store had before this run
        self.at = at  # the version it stays at
        super().__init__(
            f"store migrate: schema version {step.version} contracts the schema (only mxg"
            f" of schema version {step.readable_by} or later runs on it) and live nodes run"
            f" older code: {', '.join(map(str, step.blockers))}; upgrade them first (drain,"
            f" upgrade, start; docs/cluster.md), or --force. The store stays at version {at}"
        )


def postgres_version(db: Any) -> int:
    """The schema version of a PostgreSQL store; 0 when empty."""
    row = db.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _unreadable(db: Any, ours: int) -> list[int]:
    """The applied steps after ``ours`` that code of version ``ours``
    cannot run on (a row without ``readable_by`` counts as contracting)."""
    rows = db.execute(
        "SELECT version FROM schema_version WHERE version > ?"
        " AND coalesce(readable_by, version) > ? ORDER BY version",
        (ours, ours),
    ).fetchall()
    return [int(r[0]) for r in rows]


def check_postgres(db: Any, where: str, ours: int = SCHEMA_VERSION) -> int:
    """Refuses a PostgreSQL store this mxg (of schema version ``ours``)
    cannot run on, naming what to do: an older schema (`mxg store
    migrate`), or a newer one with a contracting step after this mxg's
    version (upgrade mxg). Returns the store's version: newer than
    ``ours`` when every newer step expands it. A start checks at open;
    a node checks again when it joins the cluster (`ClusterQueries.join`),
    under the lock `migrate_postgres` takes, since a step may have been
    applied in between."""
    have = postgres_version(db)
    if have < ours:
        raise StoreOutdated(
            f"the store at {redact(where)} has schema version {have}, this mxg needs"
            f" {ours}: run `mxg store migrate`"
        )
    if have > ours:
        unreadable = _unreadable(db, ours)
        if unreadable:
            raise StoreOutdated(
                f"the store at {redact(where)} has schema version {have}, newer than this"
                f" mxg's {ours}, and version {unreadable[0]} contracted it:"
                " upgrade mxg"
            )
    return have


def live_nodes(db: Any) -> list[LiveNode]:
    """The cluster's live nodes; none on a store without a `nodes` table."""
    row = db.execute("SELECT to_regclass('nodes') IS NOT NULL").fetchone()
    if not row[0]:
        return []
    return [LiveNode(r[0], r[1] or "", int(r[2] or 0)) for r in db.execute(_LIVE_NODES)]


@dataclass(frozen=True)
class Plan:
    """What `mxg store migrate` would do (`mxg store status`)."""

    have: int  # the store's version
    target: int  # this mxg's
    steps: tuple[Step, ...]  # the ones the store lacks
    nodes: tuple[LiveNode, ...]


def pending_postgres(db: Any) -> Plan:
    """The store's version and the steps it lacks, each with the live
    nodes it would break."""
    have = postgres_version(db)
    nodes = tuple(live_nodes(db))
    steps = tuple(
        Step(v, m.readable_by, tuple(n for n in nodes if n.schema_version < m.readable_by))
        for v, m in enumerate(_PG_MIGRATIONS, start=1)
        if v > have
    )
    return Plan(have, len(_PG_MIGRATIONS), steps, nodes)


def migrate_postgres(db: Any, lock: int, *, force: bool = False) -> tuple[int, int]:
    """Applies the migrations a PostgreSQL store lacks, each in its own
    transaction under the writers' lock (a second `mxg store migrate`
    waits, then finds nothing to do). A contracting step is refused while
    a live node runs code that cannot run on it (`MigrationBlocked`;
    the steps before it stay applied), unless ``force``. Nodes register
    under the same lock, so none starts unseen between the check and the
    step. Returns (from, to): ``from`` is higher on a newer store."""
    db.execute(f"BEGIN; SELECT pg_advisory_xact_lock({lock})")
    try:
        db.executescript(_PG_VERSION_TABLE)
        start = postgres_version(db)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    target = len(_PG_MIGRATIONS)
    for version in range(start + 1, target + 1):
        step = _PG_MIGRATIONS[version - 1]
        db.execute(f"BEGIN; SELECT pg_advisory_xact_lock({lock})")
        try:
            if postgres_version(db) < version:
                blockers = tuple(n for n in live_nodes(db) if n.schema_version < step.readable_by)
                if blockers and not force:
                    raise MigrationBlocked(
                        Step(version, step.readable_by, blockers), start, version - 1
                    )
                db.executescript(step.ddl)
                db.execute(
                    "INSERT INTO schema_version (version, readable_by) VALUES (?, ?)",
                    (version, step.readable_by),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return start, target
