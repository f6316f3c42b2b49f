"""The cluster on a PostgreSQL store (docs/cluster.md): each message has
an owner, the node that accepted it, and a node's scanner and recovery
see its own messages alone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import psycopg

from mxg.ops.cluster import share_of
from mxg.pipeline.controller import Stages
from mxg.pipeline.drain import drain
from mxg.pipeline.heartbeat import Heartbeat
from mxg.pipeline.storage import open_store
from mxg.pipeline.takeover import recover_node
from mxg.store import Outcome
from mxg.store.schema import SCHEMA_VERSION
from tests.pipeline.fakes import STORE_AT, FakeEngine, received, serving, stages
from tests.pipeline.fakes import envelope as fake_envelope
from tests.support.cli import mxg
from tests.support.pgproxy import cutting_proxy
from tests.support.postgres import Postgres, migrated
from tests.test_store import envelope
from tests.test_web_api import READER, run
from tests.test_web_api import config as web_config


def test_a_node_owns_what_it_indexes_and_its_queries_see_only_that(postgres: Postgres) -> None:
    url = migrated(postgres.new_database())
    n1, n2 = open_store(url, "n1"), open_store(url, "n2")
    try:
        n1.add_messages([envelope("Q1", ["a@x.test"])])
        n2.add_messages([envelope("Q2", ["b@y.test"])])
        with psycopg.connect(url) as c:
            owners = dict(c.execute("SELECT queue_id, node FROM messages").fetchall())
        assert owners == {"Q1": "n1", "Q2": "n2"}
        assert [d.queue_id for d in n1.due(10**15)] == ["Q1"]
        assert [d.queue_id for d in n2.due(10**15, limit=None, among=["Q1", "Q2"])] == ["Q2"]
        assert n1.resume_pending() == 1
        n2.record([Outcome("Q2", 0, "bounced", 550, "5.1.1", "no such user")])
        assert (n1.dsn_pending(), n2.dsn_pending()) == ([], ["Q2"])
        n1.record([Outcome("Q1", 0, "sent", 250, "2.0.0", "ok")])
        assert (n1.done_ids(), n2.done_ids()) == ({"Q1"}, set())
    finally:
        n1.close()
        n2.close()


# -- the heartbeat: shares, takeover, fencing, drain, housekeeper -----------

CLUSTER = '[cluster]\nheartbeat = "1s"\nlease = "3s"\n'


def test_share_of_a_limit_among_live_nodes() -> None:
    assert [share_of(20, ["a", "b", "c"], n) for n in "abc"] == [7, 7, 6]
    assert share_of(20, [], "a") == 20
    assert share_of(20, ["b"], "a") == 10  # this node counts, live or not yet
    # Below the number of nodes: at least 1 each (logged as a warning).
    assert [share_of(2, ["a", "b", "c"], n) for n in "abc"] == [1, 1, 1]


def _node(tmp_path: Path, url: str, name: str, toml: str = CLUSTER) -> tuple[Stages, FakeEngine]:
    STORE_AT["at"] = url
    try:
        st, engine = stages(tmp_path / name, toml)
    finally:
        STORE_AT.clear()
    st.ctx.store.claim_node(name, "the test store")
    return st, engine


def _stored_body(url: str, engine: FakeEngine, qid: str) -> None:
    """What pg-ack's intake stores with a message's index rows (the table
    made here if this schema does not have it yet)."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "CREATE TABLE IF NOT EXISTS spool_bodies"
            " (queue_id TEXT PRIMARY KEY, raw BYTEA NOT NULL)"
        )
        c.execute("INSERT INTO spool_bodies VALUES (%s, %s)", (qid, engine.read_raw(qid)))


def _expire(url: str, node: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("UPDATE nodes SET lease_until_ms = 0 WHERE name = %s", (node,))


def _heartbeat(st: Stages, clock: list[float] | None = None) -> Heartbeat:
    hb = Heartbeat(
        st,
        on_share=lambda share: None,
        on_drain=lambda: st.ctx.spawn(drain, st, hb.node, lambda: None),
        clock=(lambda: clock[0]) if clock else time.monotonic,
    )
    hb.join()
    return hb


def test_a_live_node_takes_over_a_dead_nodes_messages(postgres: Postgres, tmp_path: Path) -> None:
    url = migrated(postgres.new_database())
    n1, e1 = _node(tmp_path, url, "n1")
    n2, e2 = _node(tmp_path, url, "n2")
    hb1, hb2 = _heartbeat(n1), _heartbeat(n2)
    env = fake_envelope("Q1", ["a@plain.test", "b@other.test"])
    e1.spool["Q1"] = (env, b"Subject: hi\r\n\r\nbody\r\n")
    _stored_body(url, e1, "Q1")

    async def accepted_then_n1_dies() -> None:
        n1.ctx.tg = n2.ctx.tg
        await n1.handle([received(env)])
        assert len(e1.jobs) == 2  # in flight on n1, never reported back
        await hb2.beat()
        assert e2.jobs == []  # n1 is alive: nothing to take over
        _expire(url, "n1")
        await hb2.beat()

    serving(n2, accepted_then_n1_dies)
    assert e2.spool["Q1"][1] == b"Subject: hi\r\n\r\nbody\r\n"
    assert sorted(j["destination"] for j in e2.jobs) == ["other.test", "plain.test"]
    with psycopg.connect(url) as c:
        assert c.execute("SELECT node FROM messages").fetchall() == [("n2",)]
    audit = [r for r in n2.ctx.store.audit_records() if r.kind == "taken-over"]
    assert [(r.queue_id, r.actor, json.loads(r.data)) for r in audit] == [
        ("Q1", "n2", {"from": "n1", "to": "n2"})
    ]
    assert hb1.node == "n1"
    n1.ctx.store.close()
    n2.ctx.store.close()


def test_a_node_that_cannot_renew_for_half_a_lease_starts_no_delivery(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = migrated(postgres.new_database())
    n1, e1 = _node(tmp_path, url, "n1")
    clock = [100.0]
    hb = _heartbeat(n1, clock)
    store = n1.ctx.store
    renew = store.renew

    def unreachable(*args: object) -> None:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    async def partitioned() -> None:
        store.renew = unreachable  # type: ignore[method-assign]
        clock[0] += 1.0
        await hb.beat()
        assert not n1.ctx.fenced  # 1 s of a 3 s lease: not yet
        clock[0] += 0.6
        await hb.beat()
        assert n1.ctx.fenced
        await n1.handle([received(fake_envelope("Q1", ["a@plain.test"]))])
        assert e1.jobs == []  # accepted and indexed, not delivered
        store.renew = renew  # type: ignore[method-assign]
        clock[0] += 5
        await hb.beat()
        assert not n1.ctx.fenced

    e1.spool["Q1"] = (fake_envelope("Q1", ["a@plain.test"]), b"x")
    serving(n1, partitioned)
    assert [j["queue_id"] for j in e1.jobs] == ["Q1"]  # started once renewed
    store.close()


def test_a_node_whose_store_breaks_as_its_lease_is_renewed_keeps_running(
    postgres: Postgres, tmp_path: Path
) -> None:
    """Renewed after a while fenced, the node starts what is due; the
    store's connection breaking right then (PostgreSQL ending sessions
    again) waits, as any store outage, for the next beat or scan. It
    ended the heartbeat's task before, and with it the relay."""
    url = migrated(postgres.new_database())
    with cutting_proxy(postgres.port) as proxy:
        n1, e1 = _node(tmp_path, proxy.url(url), "n1")
        hb = _heartbeat(n1)
        e1.spool["Q1"] = (fake_envelope("Q1", ["a@plain.test"]), b"x")

        async def unfenced_as_the_store_breaks() -> None:
            n1.ctx.fenced = True
            await n1.handle([received(e1.spool["Q1"][0])])
            assert e1.jobs == []
            proxy.cut_when_sent(b"r.route != ''")  # the due query
            await hb.beat()
            assert proxy.cut.is_set(), "the connection broke at the due query"
            assert not n1.ctx.fenced
            assert e1.jobs == []
            deadline = time.monotonic() + 10
            while not e1.jobs:
                assert time.monotonic() < deadline, "Q1 not started within 10 s"
                await anyio.sleep(0.3)
                await hb.beat()
                n1.dispatch.dispatch_due()

        try:
            serving(n1, unfenced_as_the_store_breaks)
        finally:
            n1.ctx.store.close()
    assert [j["queue_id"] for j in e1.jobs] == ["Q1"]


def test_drain_stops_intake_hands_over_and_stops(postgres: Postgres, tmp_path: Path) -> None:
    url = migrated(postgres.new_database())
    n1, e1 = _node(tmp_path, url, "n1")
    n2, e2 = _node(tmp_path, url, "n2")
    hb1, hb2 = _heartbeat(n1), _heartbeat(n2)
    stopped: list[str] = []
    hb1._on_drain = lambda: n1.ctx.spawn(drain, n1, "n1", lambda: stopped.append("n1"))
    env = fake_envelope("Q1", ["a@plain.test"])
    e1.spool["Q1"] = (env, b"Subject: drained\r\n\r\n")
    _stored_body(url, e1, "Q1")

    async def drained() -> None:
        n1.ctx.fenced = True  # Q1 is indexed but not started on n1
        await n1.handle([received(env)])
        n1.ctx.fenced = False
        assert e1.jobs == []
        assert n2.ctx.store.set_node_state("n1", "draining", only_from=["running"])
        await hb1.beat()
        await anyio.sleep(0.1)
        assert stopped == ["n1"]
        assert e1.intake[0] == "closed"
        await hb2.beat()  # n2 claims the unowned message

    serving(n1, drained)
    rows, _ = n2.ctx.store.nodes()
    assert {r.name: r.state for r in rows} == {"n1": "stopped", "n2": "running"}
    assert e2.spool["Q1"][1] == b"Subject: drained\r\n\r\n"
    assert hb2.node == "n2"
    for st in (n1, n2):
        st.ctx.store.close()


def test_a_restarted_node_keeps_only_its_own_messages(postgres: Postgres, tmp_path: Path) -> None:
    url = migrated(postgres.new_database())
    n1, e1 = _node(tmp_path, url, "n1")
    n2, e2 = _node(tmp_path, url, "n2")
    for qid, st, eng in (("Q1", n1, e1), ("Q2", n2, e2)):
        env = fake_envelope(qid, ["a@plain.test"])
        eng.spool[qid] = (env, b"body " + qid.encode())
        st.ctx.store.add_messages([st.intake.classified(env, {})])
        _stored_body(url, eng, qid)
    # n1's spool holds a copy of Q2 (taken over from it while it was
    # dead), and lost Q1's file (a crash between a claim and its restore).
    e1.spool["Q2"] = e2.spool["Q2"]
    del e1.spool["Q1"]
    anyio.run(recover_node, n1.ctx, "n1")
    assert sorted(e1.spool) == ["Q1"]
    assert e1.spool["Q1"][1] == b"body Q1"
    for st in (n1, n2):
        st.ctx.store.close()


def test_one_housekeeper_per_cluster_and_a_successor_when_it_goes(postgres: Postgres) -> None:
    url = migrated(postgres.new_database())
    n1, n2 = open_store(url, "n1"), open_store(url, "n2")
    assert n1.try_housekeeper()
    assert n1.try_housekeeper()  # held: asked again every heartbeat
    assert not n2.try_housekeeper()
    n1.close()
    # The server ends n1's session (and its locks) just after the close
    # returns; n2 asks again at each heartbeat.
    deadline = time.monotonic() + 5
    while not n2.try_housekeeper():
        assert time.monotonic() < deadline, "the lock outlived its session"
        time.sleep(0.05)
    n2.close()


# -- mxg cluster status, drain; mxg queue list ------------------------------


def test_cluster_status_drain_and_the_whole_queue_from_the_command_line(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = migrated(postgres.new_database())
    cfg = tmp_path / "mxg.toml"
    cfg.write_text(
        f'[data]\ndirectory = "{tmp_path / "data"}"\nstore = "{url}"\n'
        '[cluster]\nnode = "n1"\n[delivery]\nmax_per_destination = 5\n'
    )
    n1, n2 = open_store(url, "n1"), open_store(url, "n2")
    for name, st in (("n1", n1), ("n2", n2)):
        st.join(
            name,
            host="box",
            pid=1,
            version="0.1.0",
            schema=SCHEMA_VERSION,
            lease_ms=60_000,
            key_id=name * 4,
        )
    n1.add_messages([envelope("Q1", ["a@x.test", "b@x.test"])])
    n2.add_messages([envelope("Q2", ["c@y.test"])])
    out = mxg(cfg, "cluster", "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["NODE", "STATE", "LEASE", "HOST"]
    assert lines[1].split()[:3] == ["n1", "running", "alive"]
    # n1: 3 of 5 per destination (the remainder goes to the first), 1
    # message with 2 recipients pending.
    assert lines[1].split()[-7:] == ["3", "0", "1", "2", "0", "0", "0"]
    assert lines[2].split()[-7:] == ["2", "0", "1", "1", "0", "0", "0"]
    assert lines[3] == (
        "warning: live nodes sign with different keys (copy one signing-key.pem to every"
        " node's data directory): n1n1n1n1, n2n2n2n2"
    )
    listing = mxg(cfg, "queue", "list")
    assert [line.split()[:2] for line in listing.stdout.splitlines()[1:]] == [
        ["Q1", "n1"],
        ["Q2", "n2"],
    ]
    assert mxg(cfg, "cluster", "drain").returncode == 0  # this config's node: n1
    bad = mxg(cfg, "cluster", "drain", "n9")
    assert (bad.returncode, bad.stderr.strip()) == (
        1,
        "mxg: no node 'n9' in the cluster (known: n1, n2)",
    )
    _expire(url, "n2")
    status = mxg(cfg, "cluster", "status", "--json")
    assert status.returncode == 3  # n2 is dead
    got = json.loads(status.stdout)
    assert [(n["name"], n["state"], n["alive"]) for n in got["nodes"]] == [
        ("n1", "draining", True),
        ("n2", "running", False),
    ]
    assert got["dead"] == ["n2"]
    n1.close()
    n2.close()


def test_cluster_commands_need_a_postgresql_store(tmp_path: Path) -> None:
    cfg = tmp_path / "mxg.toml"
    cfg.write_text(f'[data]\ndirectory = "{tmp_path / "data"}"\n')
    out = mxg(cfg, "cluster", "status")
    assert out.returncode == 1
    assert "data.store is the embedded SQLite store: one node, no cluster" in out.stderr


def test_the_admin_api_shows_the_cluster(postgres: Postgres, tmp_path: Path, backend: str) -> None:
    url = migrated(postgres.new_database())
    st, _ = _node(tmp_path, url, "n1", web_config(tmp_path) + CLUSTER)
    _heartbeat(st)
    sqlite, _ = stages(tmp_path / "sqlite", web_config(tmp_path / "sqlite"))

    async def cluster(call: Any) -> None:
        r = await call("GET", "/cluster", READER)
        assert r.status_code == 200, r.text
        got = r.json()
        assert [(n["name"], n["alive"], n["queue"]["messages"]) for n in got["nodes"]] == [
            ("n1", True, 0)
        ]
        assert got["dead"] == []
        r = await call("GET", "/cluster?node=n1", READER)
        assert (r.status_code, r.json()["error"]) == (400, "unknown query parameter 'node'")

    async def one_node(call: Any) -> None:
        r = await call("GET", "/cluster", READER)
        assert r.status_code == 400
        assert "one node, no cluster" in r.json()["error"]

    run(st, backend, cluster)
    run(sqlite, backend, one_node)
    st.ctx.store.close()
