"""Three mxg nodes on one PostgreSQL (issue 18, docs/cluster.md): every
message any node acknowledged is delivered when one of them is killed
with SIGKILL under load; a drained node hands its work over and exits
0; a second relay with a node's name refuses to start; `mxg cluster
status` shows every node. The nodes run on different anyio backends
(asyncio and trio), so that one cluster covers both.

Duplicates, and why they are bounded: a node killed mid-load leaves two
kinds of work in doubt. (1) Recipients it had handed to a delivery job
(status `pending` in the store) whose result it never recorded: the node
that takes the message over delivers them again, and those the dead
node had already delivered arrive twice. (2) A message whose commit (and
so its acknowledgement) happened just as the node died, the `250` lost
on the wire: the sender sends it again to another node, which accepts
it as a new message. So duplicates are at most the recipients the dead
node had pending when it died plus the sessions it had open (the
sender's threads); the test counts both and asserts the bound. No
acknowledged message is lost: its body was in PostgreSQL before the
`250` (docs/cluster.md, "Bodies before the 250")."""

from __future__ import annotations

import json
import smtplib
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import mxg_config
from tests.e2e.test_delivery import wait_for
from tests.support.dns import UnboundServer
from tests.support.load import Load
from tests.support.mxgproc import MxgProcess
from tests.support.postgres import RELAY_ROLE, Postgres
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e

TOTAL = 2100
THREADS = 9
# Short leases, so that a takeover comes within seconds.
CLUSTER = '[cluster]\nnode = "{node}"\nheartbeat = "0.5s"\nlease = "3s"\ndrain_timeout = "20s"\n'


def _node(tmp_path: Path, dns: UnboundServer, store: str, name: str, backend: str) -> MxgProcess:
    work = tmp_path / name
    work.mkdir(parents=True)
    config = mxg_config(dns, work / "data", CLUSTER.format(node=name), store=store)
    return MxgProcess(work, config, backend)


def _message(i: int) -> tuple[str, str]:
    mid = f"<cluster-{i}@internal.test>"
    return mid, f"Message-ID: {mid}\r\nSubject: load {i}\r\n\r\n" + "x" * 900 + "\r\n"


def _delivered(sinks: dict[str, Sink]) -> Counter[str]:
    return Counter(m.message_id for s in (sinks["good1"], sinks["good2"]) for m in list(s.messages))


def _status(node: MxgProcess) -> tuple[int, dict[str, Any]]:
    out = node.cli("cluster", "status", "--json")
    assert out.returncode in (0, 3), out.stderr
    return out.returncode, json.loads(out.stdout)


def test_three_nodes_lose_no_acknowledged_message_when_one_is_killed(
    tmp_path: Path, dns_server: UnboundServer, sinks: dict[str, Sink], postgres: Postgres
) -> None:
    store = postgres.migrated_database(RELAY_ROLE)
    nodes = [
        _node(tmp_path, dns_server, store, name, backend)
        for name, backend in (("n1", "asyncio"), ("n2", "trio"), ("n3", "asyncio"))
    ]
    load: Load | None = None
    try:
        for n in nodes:
            n.start()
        code, status = _status(nodes[0])
        assert code == 0
        assert [(n["name"], n["alive"]) for n in status["nodes"]] == [
            ("n1", True),
            ("n2", True),
            ("n3", True),
        ]
        # A second relay named n2 (its own data directory) stops at start.
        twin = _node(tmp_path / "twin", dns_server, store, "n2", "asyncio")
        with pytest.raises(RuntimeError, match="a relay named 'n2' already uses the store"):
            twin.start()

        load = Load(
            [n.port for n in nodes],
            TOTAL,
            _message,
            lambda i: f"u{i % 7}@good.test",
            threads=THREADS,
            give_up_after=120,
            retry_pause=0.1,
        )
        sending = threading.Thread(target=load.run, daemon=True)
        sending.start()
        wait_for(lambda: len(load.acked) >= TOTAL // 3, timeout=180, what="a third acknowledged")
        victim = nodes[1]
        victim.kill9()
        killed_at = len(load.acked)
        with psycopg.connect(store) as db:
            in_doubt = db.execute(
                "SELECT count(*) FROM recipients r JOIN messages m ON m.queue_id = r.queue_id"
                " WHERE m.node = 'n2' AND m.state = 'active' AND r.status = 'pending'"
            ).fetchone()[0]
            owned = db.execute(
                "SELECT count(*) FROM messages WHERE node = 'n2' AND state = 'active'"
            ).fetchone()[0]
        sending.join(600)
        wait_for(
            lambda: load.acked <= set(_delivered(sinks)),
            timeout=300,
            what="every acknowledged message delivered",
        )
        time.sleep(2)  # stragglers, before counting duplicates
        got = _delivered(sinks)
        duplicates = sum(c - 1 for c in got.values() if c > 1)
        survivors = [nodes[0], nodes[2]]
        taken = "".join(n.log_text() for n in survivors)
        report = (
            f"cluster kill -9 report: sent {TOTAL} over 3 nodes, acknowledged"
            f" {len(load.acked)} ({killed_at} before the kill), n2 owned {owned} unfinished"
            f" messages with {in_doubt} recipients in flight at the kill, connections cut"
            f" {load.cut_off}, delivered {len(got)} distinct, duplicates {duplicates}, lost 0"
        )
        print(report)
        (tmp_path / "cluster-report.txt").write_text(report + "\n")
        assert "taken over" in taken
        assert not load.unsent and not load.refused
        assert len(load.acked) == TOTAL
        assert load.acked <= set(got), "an acknowledged message was lost"
        assert duplicates <= in_doubt + THREADS, report
        code, status = _status(nodes[0])
        assert code == 3, "n2 is dead"
        assert status["dead"] == ["n2"]
        n2 = next(n for n in status["nodes"] if n["name"] == "n2")
        assert n2["queue"]["messages"] == 0, "everything n2 had was taken over"
    finally:
        if load is not None:
            load.stop()
        for n in nodes:
            n.stop()


def test_a_drained_node_hands_its_work_over_and_exits_0(
    tmp_path: Path, dns_server: UnboundServer, sinks: dict[str, Sink], postgres: Postgres
) -> None:
    store = postgres.migrated_database(RELAY_ROLE)
    n1 = _node(tmp_path, dns_server, store, "n1", "trio").start()
    n2 = _node(tmp_path, dns_server, store, "n2", "asyncio").start()
    # The receiving servers defer hold* for now: n1's messages stay queued.
    for name in ("good1", "good2"):
        sinks[name].rcpt_policy = lambda r: "450 4.2.0 busy" if r.startswith("hold") else None
    try:
        mids = [f"<drain-{i}@internal.test>" for i in range(20)]
        with smtplib.SMTP("127.0.0.1", n1.port, timeout=30) as c:
            for mid in mids:
                c.sendmail("a@internal.test", ["hold@good.test"], f"Message-ID: {mid}\r\n\r\nx\r\n")
        drain = n1.cli("cluster", "drain")
        assert drain.returncode == 0, drain.stderr
        assert n1.proc is not None
        assert n1.proc.wait(60) == 0, n1.log_text()
        assert "drained: unfinished messages handed to the cluster" in n1.log_text()
        with pytest.raises(ConnectionRefusedError), smtplib.SMTP("127.0.0.1", n1.port, timeout=5):
            pass  # n1 is gone
        wait_for(lambda: "taken over" in n2.log_text(), what="n2 taking n1's messages")
        for name in ("good1", "good2"):
            sinks[name].rcpt_policy = lambda r: None
        wait_for(
            lambda: set(mids) <= set(_delivered(sinks)), timeout=60, what="the drained messages"
        )
        code, status = _status(n2)
        assert code == 0
        assert [(n["name"], n["state"]) for n in status["nodes"]] == [
            ("n1", "stopped"),
            ("n2", "running"),
        ]
    finally:
        n1.stop()
        n2.stop()
