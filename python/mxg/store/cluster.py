"""The cluster's SQL (PostgreSQL only, docs/cluster.md): the nodes and
their leases, on PostgreSQL's clock so that the nodes' own clocks never
decide who is dead; claiming the messages of dead nodes and unowned ones
(`FOR UPDATE SKIP LOCKED`, so that two live nodes claiming at once split
them instead of waiting on each other); releasing a drained node's; and
what `mxg cluster status` shows.

A node's lease is its row in `nodes`: renewed every heartbeat to
`lease_until_ms = now + lease`. A node whose lease ran out is dead,
whatever its state says: a relay ended by SIGTERM or `kill -9` keeps its
messages (state `running`) until its lease expires, then any live node
takes them over. A drained node released them first (state `stopped`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mxg.store.audit import AuditEntry, AuditTrail
from mxg.store.db import _MAX_PARAMS, NODE_LOCK, _chunks
from mxg.store.schema import check_postgres

# PostgreSQL's clock in milliseconds: a lease's start, end and age are
# measured by the one clock every node shares.
NOW_MS = "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)"

# The states of a node (`nodes.state`).
RUNNING, DRAINING, STOPPED = "running", "draining", "stopped"


@dataclass(frozen=True)
class Renewal:
    """What a heartbeat learnt: the node's state (an operator may have
    set `draining`), PostgreSQL's time, and whether the lease had run out
    before this renewal (others may have taken over meanwhile)."""

    state: str
    now_ms: int
    lapsed: bool


@dataclass(frozen=True)
class Claimed:
    """Messages a takeover claimed: their ids, the owners they had (None:
    unowned), their stored bodies, and the recipients made due again."""

    queue_ids: list[str]
    owners: dict[str | None, int]
    bodies: dict[str, bytes]
    due_again: int


@dataclass(frozen=True)
class NodeRow:
    name: str
    state: str
    host: str
    pid: int
    version: str
    schema_version: int
    started_ms: int
    heartbeat_ms: int
    lease_until_ms: int
    in_flight: int
    key_id: str


class ClusterQueries(AuditTrail):
    """The cluster's part of the store (a mixin of `Store`, on PostgreSQL)."""

    def join(
        self,
        node: str,
        *,
        host: str,
        pid: int,
        version: str,
        schema: int,
        lease_ms: int,
        key_id: str = "",
    ) -> int:
        """This relay is `node`, running, with a fresh lease (its row is
        made or taken over from an earlier run of the same name: the node
        lock says no other process has it). Under the writers' lock, so
        that no takeover is half-way through claiming this node's
        messages as those of a dead one. Returns PostgreSQL's time.

        The schema is checked again first, under that lock: `mxg store
        migrate` takes it too and holds back a contracting step only
        while a live node of older code is registered here, so a step it
        applied since this node's start check would otherwise let code of
        version `schema` run on a schema it cannot read (`StoreOutdated`,
        the start check's line; nothing is registered)."""
        with self.transaction() as db:
            check_postgres(db, self.url, schema)
            row = db.execute(
                "INSERT INTO nodes (name, state, pid, host, version, schema_version,"
                " key_id, in_flight, started_ms, heartbeat_ms, lease_until_ms)"
                f" VALUES (?,?,?,?,?,?,?,0, {NOW_MS}, {NOW_MS}, {NOW_MS} + ?)"
                " ON CONFLICT (name) DO UPDATE SET"
                " state=excluded.state, pid=excluded.pid, host=excluded.host,"
                " version=excluded.version, schema_version=excluded.schema_version,"
                " key_id=excluded.key_id, in_flight=0,"
                " started_ms=excluded.started_ms, heartbeat_ms=excluded.heartbeat_ms,"
                " lease_until_ms=excluded.lease_until_ms RETURNING heartbeat_ms",
                (node, RUNNING, pid, host, version, schema, key_id, lease_ms),
            ).fetchone()
        return int(row[0])

    def renew(self, node: str, lease_ms: int, in_flight: int = 0) -> Renewal | None:
        """Renews `node`'s lease (and reports its jobs in flight); None
        when its row is gone. One statement, outside the writers' lock: a
        heartbeat never waits behind a batch."""
        row = self.db.execute(
            "WITH old AS (SELECT lease_until_ms FROM nodes WHERE name=? FOR UPDATE)"
            f" UPDATE nodes SET heartbeat_ms={NOW_MS}, lease_until_ms={NOW_MS} + ?,"
            " in_flight=? FROM old WHERE name=?"
            " RETURNING state, heartbeat_ms, old.lease_until_ms < heartbeat_ms",
            (node, lease_ms, in_flight, node),
        ).fetchone()
        if row is None:
            return None
        return Renewal(str(row[0]), int(row[1]), bool(row[2]))

    def set_node_state(self, node: str, state: str, *, only_from: Sequence[str] = ()) -> bool:
        """Sets `node`'s state (when it is one of `only_from`, if given);
        False when there is no such node (or it was in another state)."""
        where, params = "name=?", [state, node]
        if only_from:
            where += f" AND state IN ({','.join('?' * len(only_from))})"
            params += list(only_from)
        return bool(self.db.execute(f"UPDATE nodes SET state=? WHERE {where}", params).rowcount)

    def nodes(self) -> tuple[list[NodeRow], int]:
        """Every node the store knows, by name, and PostgreSQL's time."""
        rows = self.db.execute(
            "SELECT name, state, host, pid, version, schema_version, started_ms,"
            " heartbeat_ms, lease_until_ms, in_flight, key_id,"
            f" {NOW_MS} AS now FROM nodes ORDER BY name"
        ).fetchall()
        now = int(rows[0][11]) if rows else int(self.db.execute(f"SELECT {NOW_MS}").fetchone()[0])
        return [NodeRow(*r[:11]) for r in rows], now

    def live_nodes(self) -> list[str]:
        """The nodes whose lease runs, by name (draining ones too: they
        still deliver)."""
        rows = self.db.execute(
            f"SELECT name FROM nodes WHERE lease_until_ms >= {NOW_MS} AND state != ? ORDER BY name",
            (STOPPED,),
        ).fetchall()
        return [r[0] for r in rows]

    def claim(self, node: str, batch: int) -> Claimed:
        """Takes over up to `batch` unfinished messages of dead nodes and
        unowned ones: owned by `node` from now, their recipients that
        were in flight (pending) due at once, their stored bodies read,
        an audit record each, in one transaction. `SKIP LOCKED`: rows
        another claimer holds are left to it."""
        with self.transaction() as db:
            dead = [
                r[0]
                for r in db.execute(
                    f"SELECT name FROM nodes WHERE lease_until_ms < {NOW_MS} AND name != ?",
                    (node,),
                )
            ]
            owners = "m.node IS NULL"
            if dead:
                owners += f" OR m.node IN ({','.join('?' * len(dead))})"
            rows = db.execute(
                "SELECT m.queue_id, m.node FROM messages m"
                f" WHERE m.state IN ('active','held') AND ({owners})"
                " ORDER BY m.received_ms LIMIT ? FOR UPDATE SKIP LOCKED",
                (*dead, batch),
            ).fetchall()
            if not rows:
                return Claimed([], {}, {}, 0)
            ids = [r[0] for r in rows]
            marks = ",".join("?" * len(ids))
            db.execute(f"UPDATE messages SET node=? WHERE queue_id IN ({marks})", (node, *ids))
            due_again = db.execute(
                f"UPDATE recipients SET next_ms=0 WHERE status='pending' AND queue_id IN ({marks})",
                ids,
            ).rowcount
            bodies = {
                r[0]: bytes(r[1])
                for r in db.execute(
                    f"SELECT queue_id, raw FROM spool_bodies WHERE queue_id IN ({marks})", ids
                )
            }
            counts: dict[str | None, int] = {}
            for r in rows:
                counts[r[1]] = counts.get(r[1], 0) + 1
            self.append_audit(
                db,
                [AuditEntry("taken-over", r[0], node, {"from": r[1], "to": node}) for r in rows],
            )
        return Claimed(ids, counts, bodies, due_again)

    def stored_bodies(self, queue_ids: Sequence[str]) -> dict[str, bytes]:
        """The stored bodies of `queue_ids` (those that have one)."""
        return {
            r[0]: bytes(r[1])
            for chunk in _chunks(list(queue_ids), _MAX_PARAMS)
            for r in self.db.execute(
                "SELECT queue_id, raw FROM spool_bodies"
                f" WHERE queue_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
        }

    def owned_unfinished(self, node: str) -> list[str]:
        """`node`'s unfinished messages (a restart restores those whose
        spool file is missing)."""
        rows = self.db.execute(
            "SELECT queue_id FROM messages WHERE node=? AND state IN ('active','held')", (node,)
        ).fetchall()
        return [r[0] for r in rows]

    def owners(self, queue_ids: Sequence[str]) -> dict[str, str | None]:
        """The owners of those of `queue_ids` the store knows."""
        return {
            r[0]: r[1]
            for chunk in _chunks(list(queue_ids), _MAX_PARAMS)
            for r in self.db.execute(
                "SELECT queue_id, node FROM messages"
                f" WHERE queue_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
        }

    def release_owned(self, node: str) -> int:
        """A drained node hands its unfinished messages to the cluster
        (unowned: the next live node's heartbeat claims them), its
        recipients still pending made due, an audit record each."""
        with self.transaction() as db:
            rows = db.execute(
                "UPDATE messages SET node=NULL WHERE node=? AND state IN ('active','held')"
                " RETURNING queue_id",
                (node,),
            ).fetchall()
            self.append_audit(
                db, [AuditEntry("released", r[0], node, {"from": node}) for r in rows]
            )
        return len(rows)

    def try_housekeeper(self) -> bool:
        """Whether this connection holds (or now takes) the housekeeper's
        session lock: the one node that does the once-per-cluster duties.
        PostgreSQL ends the lock with the session, so another node takes
        over when the holder dies (and this node learns that it lost it
        when its connection was replaced)."""
        row = self.db.execute(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
            f" AND pid = pg_backend_pid() AND granted AND classid = {NODE_LOCK} AND objid = 0"
            f" AND objsubid = 2) THEN true ELSE pg_try_advisory_lock({NODE_LOCK}, 0) END"
        ).fetchone()
        return bool(row[0])

    def queue_by_node(self) -> list[dict[str, Any]]:
        """Unfinished messages and their recipients by state, per owner
        (None: unowned). `pending` counts recipients due and those in
        flight (the index does not tell them apart; a node reports its
        jobs at each heartbeat: `NodeRow.in_flight`)."""
        rows = self.db.execute(
            "SELECT m.node, count(DISTINCT m.queue_id),"
            " sum(CASE WHEN r.status='pending' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN r.status='deferred' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN r.status='awaiting-sender' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN r.status='held' THEN 1 ELSE 0 END)"
            " FROM messages m JOIN recipients r ON r.queue_id = m.queue_id"
            " WHERE m.state IN ('active','held') GROUP BY m.node ORDER BY m.node"
        ).fetchall()
        keys = ("messages", "pending", "deferred", "awaiting", "held")
        return [
            {"node": r[0], **{k: int(v or 0) for k, v in zip(keys, r[1:], strict=True)}}
            for r in rows
        ]
