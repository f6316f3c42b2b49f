"""``mxg cluster status`` and ``mxg cluster drain`` (docs/cluster.md):
the nodes of a cluster on a PostgreSQL store, read and asked through the
store, from any host with the configuration."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mxg.cli.common import _load
from mxg.errors import MxgError

# `mxg cluster status` exits 3 when a node is dead: its lease ran out
# without a drain (killed, or cut off from PostgreSQL); its messages are
# taken over by the live nodes, or wait for one when none is left.
DEAD_NODE = 3


def _store(args: argparse.Namespace) -> Any:
    from mxg.store import Store

    cfg = _load(args)
    if not cfg.data.store:
        raise MxgError(
            "cluster: data.store is the embedded SQLite store: one node, no cluster"
            " (a cluster needs a postgresql:// store)"
        )
    return cfg, Store(cfg.data.store)


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.1f}s"


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from mxg.cli.queue import _table
    from mxg.ops.cluster import cluster_status

    cfg, store = _store(args)
    try:
        status = cluster_status(store, cfg.delivery.max_per_destination)
    finally:
        store.close()
    if args.json:
        print(json.dumps(status.as_json()))
        return DEAD_NODE if status.dead else 0
    if not status.nodes:
        print("no node has joined this store yet")
    else:
        rows = [
            [
                n.name,
                n.state,
                "alive" if n.alive else "dead" if n.state != "stopped" else "-",
                n.host,
                str(n.pid),
                n.version,
                str(n.schema_version),
                f"{_seconds(n.heartbeat_age_ms)} ago",
                _seconds(n.lease_left_ms) if n.lease_left_ms > 0 else "over",
                str(n.max_per_destination or "-"),
                str(n.in_flight),
                str(n.queue["messages"]),
                str(n.queue["pending"]),
                str(n.queue["deferred"]),
                str(n.queue["awaiting"]),
                str(n.queue["held"]),
            ]
            for n in status.nodes
        ]
        u = status.unowned
        if u["messages"]:
            rows.append(
                [
                    "(unowned)",
                    *["-"] * 10,
                    *(str(u[k]) for k in ("messages", "pending")),
                    str(u["deferred"]),
                    str(u["awaiting"]),
                    str(u["held"]),
                ]
            )
        header = [
            "NODE",
            "STATE",
            "LEASE",
            "HOST",
            "PID",
            "VERSION",
            "SCHEMA",
            "HEARTBEAT",
            "LEASE LEFT",
            "PER DEST",
            "IN FLIGHT",
            "MESSAGES",
            "PENDING",
            "DEFERRED",
            "AWAITING",
            "HELD",
        ]
        print(_table(rows, header, right=7))
    for w in status.warnings:
        print(f"warning: {w}")
    return DEAD_NODE if status.dead else 0


def cmd_cluster_drain(args: argparse.Namespace) -> int:
    from mxg.ops.cluster import request_drain

    cfg, store = _store(args)
    node = args.node or cfg.cluster.node
    try:
        request_drain(store, node)
    finally:
        store.close()
    print(
        f"node {node}: draining (it stops taking mail at its next heartbeat, hands over"
        " what it cannot finish, and exits)"
    )
    return 0


def add_cluster_parser(sub: Any) -> None:
    p = sub.add_parser("cluster", help="the nodes of a cluster on a PostgreSQL store")
    csub = p.add_subparsers(dest="cluster_cmd", required=True)
    st = csub.add_parser(
        "status",
        help="nodes, leases and queue per node",
        description="Each node of the cluster: its state, lease, version, jobs in flight"
        " and queue; the unowned messages. Exits 3 when a node is dead (its lease ran"
        " out without a drain).",
    )
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.set_defaults(fn=cmd_cluster_status)
    dr = csub.add_parser(
        "drain",
        help="stop a node taking mail, hand over its work, and end it",
        description="Asks NODE (default: this configuration's [cluster] node) to drain:"
        " at its next heartbeat it refuses new mail with 421 4.3.2, lets its deliveries"
        " in flight finish (up to [cluster] drain_timeout), hands its other messages to"
        " the cluster and exits 0.",
    )
    dr.add_argument("node", nargs="?", help="the node's name")
    dr.set_defaults(fn=cmd_cluster_drain)
