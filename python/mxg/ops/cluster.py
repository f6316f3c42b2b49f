"""The cluster as an operator sees it (docs/cluster.md), shared by `mxg
cluster` and the admin API: each node with its lease and queue, the
unowned messages, each node's share of `max_per_destination`, and the
drain request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mxg.errors import OperatorError
from mxg.store import Store
from mxg.store.cluster import DRAINING, RUNNING, STOPPED


@dataclass(frozen=True)
class NodeStatus:
    name: str
    state: str
    host: str
    pid: int
    version: str
    schema_version: int
    heartbeat_age_ms: int
    lease_left_ms: int  # negative: ran out that long ago
    alive: bool
    in_flight: int
    # The id of the key it signs checkpoints and proofs with.
    key_id: str
    # Its share of delivery.max_per_destination (alive nodes only).
    max_per_destination: int | None
    queue: dict[str, int]


@dataclass(frozen=True)
class ClusterStatus:
    nodes: list[NodeStatus]
    unowned: dict[str, int]
    warnings: list[str]

    @property
    def dead(self) -> list[str]:
        """Nodes whose lease ran out without a drain: their messages wait
        for (or are under) a takeover."""
        return [n.name for n in self.nodes if not n.alive and n.state != STOPPED]

    def as_json(self) -> dict[str, Any]:
        return {
            "nodes": [asdict(n) for n in self.nodes],
            "unowned": self.unowned,
            "dead": self.dead,
            "warnings": self.warnings,
        }


def share_of(limit: int, live: Sequence[str], node: str) -> int:
    """This node's part of a cluster-wide limit among the live nodes
    (`node` counted among them): floor division, the remainder to the
    first nodes by name, and at least 1 (so a limit below the number of
    nodes is exceeded, by design: every node must be able to deliver)."""
    nodes = sorted({*live, node})
    base, rest = divmod(limit, len(nodes))
    return max(1, base + (1 if nodes.index(node) < rest else 0))


_EMPTY = {"messages": 0, "pending": 0, "deferred": 0, "awaiting": 0, "held": 0}


def cluster_status(store: Store, max_per_destination: int) -> ClusterStatus:
    if not store.dialect.postgres:
        raise OperatorError("the store is the embedded SQLite one: one node, no cluster")
    rows, now = store.nodes()
    queues = {q.pop("node"): q for q in store.queue_by_node()}
    live = [r.name for r in rows if r.lease_until_ms >= now and r.state != STOPPED]
    nodes = [
        NodeStatus(
            name=r.name,
            state=r.state,
            host=r.host,
            pid=r.pid,
            version=r.version,
            schema_version=r.schema_version,
            heartbeat_age_ms=now - r.heartbeat_ms,
            lease_left_ms=r.lease_until_ms - now,
            alive=r.name in live,
            in_flight=r.in_flight if r.name in live else 0,
            key_id=r.key_id,
            max_per_destination=(
                share_of(max_per_destination, live, r.name) if r.name in live else None
            ),
            queue=queues.get(r.name, dict(_EMPTY)),
        )
        for r in rows
    ]
    warnings = []
    if live and max_per_destination < len(live):
        warnings.append(
            f"delivery.max_per_destination ({max_per_destination}) is below the number of"
            f" live nodes ({len(live)}): each delivers to a destination once at a time"
        )
    keys = {n.key_id for n in nodes if n.alive and n.key_id}
    if len(keys) > 1:
        warnings.append(
            "live nodes sign with different keys (copy one signing-key.pem to every"
            f" node's data directory): {', '.join(sorted(keys))}"
        )
    versions = {n.version for n in nodes if n.alive}
    if len(versions) > 1:
        warnings.append(f"live nodes run different versions: {', '.join(sorted(versions))}")
    return ClusterStatus(nodes, queues.get(None, dict(_EMPTY)), warnings)


def request_drain(store: Store, node: str) -> None:
    """Asks `node` to drain; it notices at its next heartbeat."""
    rows, now = store.nodes()
    row = next((r for r in rows if r.name == node), None)
    if row is None:
        known = ", ".join(r.name for r in rows) or "none"
        raise OperatorError(f"no node {node!r} in the cluster (known: {known})")
    if row.state == DRAINING:
        return  # asked already: the same request again changes nothing
    if row.state != RUNNING or row.lease_until_ms < now:
        raise OperatorError(f"node {node!r} is not running (state {row.state}, lease over)")
    store.set_node_state(node, DRAINING, only_from=[RUNNING])
