"""Rolling upgrades of a PostgreSQL store (issue 18 item 4, docs/cluster.md):
expand/contract schema steps. A node of older code runs on a newer schema
whose newer steps only expanded it, refuses one a step contracted, and
`mxg store migrate` holds a contracting step back while live nodes run
code that cannot run on it.

"Newer mxg" is this mxg with steps appended to its migrations; the node
of "older code" is this mxg as it is (its `SCHEMA_VERSION`), run as a
separate process on the store the newer one migrated."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from mxg.cli import main
from mxg.errors import StoreOutdated
from mxg.pipeline.storage import open_store
from mxg.store import Store, schema
from mxg.store.schema import SCHEMA_VERSION, Migration
from tests.support.cli import mxg
from tests.support.mxgproc import MxgProcess
from tests.support.postgres import Postgres

N = SCHEMA_VERSION
# What newer versions might add: a table older code ignores, and the drop
# of a column older code reads (its code stopped reading it at N + 2).
EXPAND = Migration("CREATE TABLE IF NOT EXISTS later_notes (id INTEGER PRIMARY KEY);", 1)
CONTRACT = Migration("ALTER TABLE messages DROP COLUMN delay_warned;", readable_by=N + 2)

# The cluster's node lease table as docs/cluster.md describes it; the
# cluster's own migration creates it when it is part of the schema.
NODES = """
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, pid BIGINT, host TEXT,
    version TEXT, schema_version BIGINT, started_ms BIGINT, heartbeat_ms BIGINT,
    lease_until_ms BIGINT
)
"""


def _config(tmp_path: Path, url: str, listen: str = "127.0.0.1:0") -> str:
    return (
        f'[server]\nhostname = "mx.example.test"\nlisten = ["{listen}"]\n'
        f'[data]\ndirectory = "{tmp_path / "data"}"\nstore = "{url}"\n'
    )


def _config_file(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "mxg.toml"
    cfg.write_text(_config(tmp_path, url))
    return cfg


def _newer(monkeypatch: pytest.MonkeyPatch, *steps: Migration) -> None:
    """This process becomes a newer mxg with ``steps`` after its own."""
    monkeypatch.setattr(schema, "_PG_MIGRATIONS", schema._PG_MIGRATIONS + steps)


def _versions(url: str) -> list[tuple[int, int | None]]:
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT version, readable_by FROM schema_version ORDER BY version")
        return [(int(v), r) for v, r in rows.fetchall()]


def _node(url: str, name: str, schema_version: int, lease_s: float, state: str = "running") -> None:
    """A node row as the cluster's heartbeat writes it, its lease running
    ``lease_s`` seconds from now by PostgreSQL's clock (negative: out)."""
    with psycopg.connect(url) as c:
        c.execute(NODES)
        c.execute(
            "INSERT INTO nodes (name, state, pid, host, version, schema_version, started_ms,"
            " heartbeat_ms, lease_until_ms) VALUES (%s, %s, 1, %s, 'test', %s,"
            " 0, 0, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + %s)"
            " ON CONFLICT (name) DO UPDATE SET state = excluded.state,"
            " schema_version = excluded.schema_version, lease_until_ms = excluded.lease_until_ms",
            (name, state, f"{name}.example", schema_version, int(lease_s * 1000)),
        )


def test_an_older_node_starts_on_a_newer_expanded_schema(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.new_database()
    _newer(monkeypatch, EXPAND)
    assert main(["-c", str(_config_file(tmp_path, url)), "store", "migrate"]) == 0
    assert _versions(url)[-1] == (N + 1, 1)
    # This mxg (schema N) opens it: every step after N only expanded it.
    store = Store(url)
    assert store.schema_version == N + 1
    store.close()
    checked = mxg(_config_file(tmp_path, url), "config", "check")
    assert checked.returncode == 0, checked.stderr
    node = MxgProcess(tmp_path, _config(tmp_path, url, "@LISTEN@"))
    node.start()
    try:
        log = node.log_text()
    finally:
        assert node.stop() == 0
    assert "running on a newer compatible schema" in log
    assert f"store_schema={N + 1}" in log and f"mxg_schema={N}" in log


def test_an_older_node_refuses_a_contracted_schema_naming_the_upgrade(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.new_database()
    _newer(monkeypatch, EXPAND, CONTRACT)
    assert main(["-c", str(_config_file(tmp_path, url)), "store", "migrate"]) == 0
    line = (
        f"the store at {url} has schema version {N + 2}, newer than this mxg's {N},"
        f" and version {N + 2} contracted it: upgrade mxg"
    )
    with pytest.raises(StoreOutdated) as e:
        Store(url)
    assert str(e.value) == line
    cfg = _config_file(tmp_path, url)
    checked = mxg(cfg, "config", "check")
    assert checked.returncode == 78
    assert checked.stderr == f"mxg: {cfg}: data.store: {line}\n"
    started = subprocess.run(
        [sys.executable, "-m", "mxg", "-c", str(cfg), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "Traceback" not in started.stderr
    assert "upgrade mxg" in started.stderr


def test_migrate_holds_a_contracting_step_while_an_older_node_is_live(
    postgres: Postgres,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = postgres.new_database()
    cfg = str(_config_file(tmp_path, url))
    assert main(["-c", cfg, "store", "migrate"]) == 0
    _node(url, "old-a", N, lease_s=15)
    _node(url, "gone", N, lease_s=-1)  # its lease ran out: dead, blocks nothing
    _node(url, "drained", N, lease_s=15, state="stopped")
    _node(url, "new-b", N + 2, lease_s=15)
    _newer(monkeypatch, EXPAND, CONTRACT)
    capsys.readouterr()

    # What would happen, and who blocks it; nothing changes.
    for args in (["store", "status"], ["store", "migrate", "--dry-run"]):
        assert main(["-c", cfg, *args]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == f"{url}: schema version {N}, this mxg's {N + 2}"
        assert out[1] == f"  pending version {N + 1}: expands (every version runs on it)"
        assert out[2] == (
            f"  pending version {N + 2}: contracts (mxg of schema version {N + 2} or later"
            f" runs on it), blocked by live nodes: old-a (schema {N}, host old-a.example)"
        )
        assert out[3].startswith("live nodes: new-b (schema")
        assert _versions(url)[-1][0] == N

    # The expanding step goes; the contracting one waits, naming the node.
    assert main(["-c", cfg, "store", "migrate"]) == 1
    out, err = capsys.readouterr()
    assert out == f"{url}: schema version {N} -> {N + 1}\n"
    assert err.startswith(f"mxg: store migrate: schema version {N + 2} contracts the schema")
    assert "live nodes run older code: old-a (schema" in err
    assert "gone" not in err and "drained" not in err and "new-b" not in err
    assert err.endswith(f"or --force. The store stays at version {N + 1}\n")
    assert len(err.splitlines()) == 1
    assert [v for v, _ in _versions(url)] == list(range(1, N + 2))
    with psycopg.connect(url) as c:  # the column older code reads is still there
        c.execute("SELECT delay_warned FROM messages")

    # Once that node is upgraded (or drained and stopped), it goes.
    _node(url, "old-a", N + 2, lease_s=15)
    assert main(["-c", cfg, "store", "migrate"]) == 0
    assert capsys.readouterr().out == f"{url}: schema version {N + 1} -> {N + 2}\n"
    assert _versions(url)[-1] == (N + 2, N + 2)


def test_migrate_force_applies_a_contracting_step_despite_live_nodes(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.new_database()
    cfg = str(_config_file(tmp_path, url))
    assert main(["-c", cfg, "store", "migrate"]) == 0
    _node(url, "old-a", N, lease_s=15)
    _newer(monkeypatch, CONTRACT)
    assert main(["-c", cfg, "store", "migrate"]) == 1
    assert _versions(url)[-1][0] == N
    assert main(["-c", cfg, "store", "migrate", "--force"]) == 0
    assert _versions(url)[-1] == (N + 1, N + 2)


# Two `mxg store migrate` processes started at the same instant, each a
# newer mxg whose extra steps are slow, so that their transactions overlap.
_RACER = """
import sys, time
from mxg.store import schema
from mxg.store.schema import Migration
schema._PG_MIGRATIONS += tuple(
    Migration(f"SELECT pg_sleep(0.2); CREATE TABLE slow_{i} (id INTEGER PRIMARY KEY);", 1)
    for i in range(3)
)
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
from mxg.cli import main
sys.exit(main(["-c", sys.argv[1], "store", "migrate"]))
"""


def test_two_concurrent_migrations_apply_each_step_once(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.new_database()
    cfg = str(_config_file(tmp_path, url))
    at = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, cfg, at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert [v for v, _ in _versions(url)] == list(range(1, N + 4))
    outs = sorted(out for out, _ in results)
    # One applied them all (or the two split them); neither failed.
    assert any(out.startswith(f"{url}: schema version 0 -> ") for out in outs), outs
    with psycopg.connect(url) as c:
        tables = {r[0] for r in c.execute("SELECT tablename FROM pg_tables").fetchall()}
    assert {"slow_0", "slow_1", "slow_2", "messages"} <= tables


def test_an_older_mxg_leaves_a_newer_store_alone_and_says_so(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.new_database()
    cfg = _config_file(tmp_path, url)
    _newer(monkeypatch, EXPAND)
    assert main(["-c", str(cfg), "store", "migrate"]) == 0
    # This mxg as it is, in its own process: nothing to apply, nothing changed.
    migrated = mxg(cfg, "store", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == f"{url}: schema version {N + 1}, newer than this mxg's {N}\n"
    status = mxg(cfg, "store", "status")
    assert status.stdout.splitlines() == [
        f"{url}: schema version {N + 1}, this mxg's {N}",
        "  the store is newer than this mxg: nothing to apply",
    ]
    assert [v for v, _ in _versions(url)] == list(range(1, N + 2))


def _node_state(url: str, name: str) -> str | None:
    with psycopg.connect(url) as c:
        row = c.execute("SELECT state FROM nodes WHERE name = %s", (name,)).fetchone()
    return None if row is None else str(row[0])


def test_migrate_names_a_running_node_of_older_code(
    postgres: Postgres,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A real node (`mxg run` of this mxg, registered by its heartbeat),
    # not a row written by the test: migrate sees it and holds the step.
    url = postgres.new_database()
    cfg = str(_config_file(tmp_path, url))
    assert main(["-c", cfg, "store", "migrate"]) == 0
    node = MxgProcess(
        tmp_path,
        _config(tmp_path, url, "@LISTEN@")
        + '[cluster]\nnode = "old-a"\nheartbeat = 1\nlease = 3\n',
    )
    node.start()
    try:
        deadline = time.monotonic() + 30
        while _node_state(url, "old-a") != "running":
            assert time.monotonic() < deadline, node.log_text()
            time.sleep(0.1)
        _newer(monkeypatch, CONTRACT)
        capsys.readouterr()
        assert main(["-c", cfg, "store", "migrate"]) == 1
        err = capsys.readouterr().err
        assert f"live nodes run older code: old-a (schema {N}, host " in err
        assert _versions(url)[-1][0] == N
    finally:
        assert node.stop() == 0
    # Stopped (or, killed, once its lease ran out): the step goes.
    deadline = time.monotonic() + 10
    while main(["-c", cfg, "store", "migrate"]) != 0:
        assert time.monotonic() < deadline, capsys.readouterr().err
        time.sleep(0.5)
    assert _versions(url)[-1] == (N + 1, N + 2)


def test_a_node_does_not_join_a_schema_contracted_since_its_start_check(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node of this mxg opens the store as `mxg run` does (its start
    # check passes: the store is at its version) but has not joined yet,
    # so `nodes` shows no live node of older code and a newer mxg's
    # migrate applies a contracting step in between. Joining must check
    # again, under the lock migrate takes, and refuse as the start would.
    url = postgres.migrated_database()
    cfg = str(_config_file(tmp_path, url))
    store = open_store(url, "old-a")
    try:
        assert store.schema_version == N
        _newer(monkeypatch, EXPAND, CONTRACT)
        assert main(["-c", cfg, "store", "migrate"]) == 0
        assert _versions(url)[-1] == (N + 2, N + 2)
        with pytest.raises(StoreOutdated) as e:
            store.join(
                "old-a", host="old-a.example", pid=1, version="old", schema=N, lease_ms=15_000
            )
        assert str(e.value) == (
            f"the store at {url} has schema version {N + 2}, newer than this mxg's {N},"
            f" and version {N + 2} contracted it: upgrade mxg"
        )
        assert _node_state(url, "old-a") is None
        # The code of the step's version joins the same store.
        store.join("old-a", host="old-a.example", pid=1, version="new", schema=N + 2, lease_ms=1)
        assert _node_state(url, "old-a") == "running"
    finally:
        store.close()
