"""Rule 9 across a PostgreSQL failover (docs/cluster.md, "What happens
during a failover"): a primary with one synchronous standby
(`synchronous_standby_names = 'ANY 1 (pg2)'`, the standby made with
pg_basebackup -R), and mxg on the multi-host URL the docs recommend.
Under load the primary dies for good and, a moment later, the standby is
promoted, as a failover manager would: killed (`pg_ctl -m immediate`)
on a host that stays up and resets its connections, or on a host of its
own that vanishes from the network (nothing answers, nothing is reset:
the relay learns it from its connections' `tcp_user_timeout`). The
relay must find the new primary by itself, answer only 4xx meanwhile,
and deliver every message it acknowledged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from mxg.store.db import NODE_LOCK
from tests.e2e.test_delivery import wait_for
from tests.support.load import Load
from tests.support.mxgproc import MxgProcess
from tests.support.outage import tally, through_outage
from tests.support.postgres import _AS, BIN, _free_port, migrated
from tests.support.sinks import Sink
from tests.test_store_postgres_ha import _TCP, _pg_ctl, _private_root, _start, _stop

pytestmark = pytest.mark.e2e

# At least 1,500 (issue 18); the test stays within the CI's time budget
# on a 2-core machine.
TOTAL = 1500
# How long the failover manager takes to see the primary gone and promote
# (Patroni: its leader key's TTL; here a pause the test chooses).
DETECTION = 2.0
# Of it, the time the answers sent before the primary died have to
# reach their clients, before the test counts 250s given without one.
SETTLE = 0.5


class Netns:
    """A network namespace joined to this one by a veth pair: a host of
    its own at `address`, reached from here at `peer`. Taking its end of
    the link down makes it vanish from the network as a powered-off host
    does: what is sent to it is dropped, nothing answers, no connection
    is reset (a killed process on a live host resets them at once)."""

    def __init__(self) -> None:
        n = os.getpid() % 10000
        self.name = f"mxgfo{n}"
        self.outside, self.inside = f"mxgfo{n}a", f"mxgfo{n}b"
        self.peer, self.address = "10.203.0.1", "10.203.0.2"
        self._ip("netns", "add", self.name)
        try:
            self._ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
            self._ip("link", "set", self.inside, "netns", self.name)
            self._ip("addr", "add", f"{self.peer}/30", "dev", self.outside)
            self._ip("link", "set", self.outside, "up")
            self._ip("addr", "add", f"{self.address}/30", "dev", self.inside, inside=True)
            self._ip("link", "set", self.inside, "up", inside=True)
        except subprocess.CalledProcessError:
            self.remove()
            raise

    def run(self) -> list[str]:
        """The prefix that runs a command in the namespace."""
        return ["ip", "netns", "exec", self.name]

    def _ip(self, *args: str, inside: bool = False) -> None:
        prefix = self.run() if inside else []
        subprocess.run([*prefix, "ip", *args], check=True, capture_output=True)

    def vanish(self) -> None:
        self._ip("link", "set", self.inside, "down", inside=True)

    def appear(self) -> None:
        """Back on the network, as after a partition heals."""
        self._ip("link", "set", self.inside, "up", inside=True)

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.outside], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)


@dataclass
class Pair:
    """The primary, which dies, and the synchronous standby, which takes
    its place; each on its own port, the standby on 127.0.0.1, the
    primary there too or on a host of its own (`netns`)."""

    root: Path
    primary: int
    standby: int
    netns: Netns | None = None

    @property
    def primary_data(self) -> Path:
        return self.root / "primary"

    @property
    def standby_data(self) -> Path:
        return self.root / "standby"

    def host(self, port: int) -> str:
        if port == self.primary and self.netns is not None:
            return self.netns.address
        return "127.0.0.1"

    def url(self, port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host(port)}:{port}/{database}"

    def fail(self) -> None:
        """The primary is gone for good: killed, or (with `netns`) its
        host vanishes first, so that nobody hears of the kill."""
        if self.netns is not None:
            self.netns.vanish()
        _pg_ctl(self.primary_data, "-m", "immediate", "stop")


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """``killed``: both servers on 127.0.0.1, the primary killed;
    ``vanished``: the primary on a host of its own that vanishes."""
    if not (BIN / "pg_basebackup").exists():
        pytest.skip("PostgreSQL 15 is not installed")
    netns = None
    if request.param == "vanished":
        if os.geteuid() != 0:
            pytest.skip("a host that vanishes is a network namespace: needs root")
        netns = Netns()
    pair = Pair(_private_root("mxg-failover-"), _free_port(), _free_port(), netns)
    try:
        initdb = [str(BIN / "initdb"), "-D", str(pair.primary_data), "-U", "postgres"]
        _run_as_postgres([*initdb, "-A", "trust", "-E", "UTF8", "-N"])
        host = pair.host(pair.primary)
        with (pair.primary_data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {host}/24 trust\nhost replication all {host}/24 trust\n")
        opts = f"-c listen_addresses={host} -p {pair.primary} -c unix_socket_directories=''"
        opts += " -c fsync=off -c synchronous_standby_names='ANY 1 (pg2)' -c synchronous_commit=on"
        start = [str(BIN / "pg_ctl"), "-D", str(pair.primary_data), "-o", opts]
        start += ["-l", f"{pair.primary_data}.log", "-w", "start"]
        _run_as_postgres(start, prefix=netns.run() if netns else [])
        backup = [str(BIN / "pg_basebackup"), "-D", str(pair.standby_data), "-R"]
        backup += ["-X", "stream", "-c", "fast", "-h", host, "-p", str(pair.primary)]
        _run_as_postgres([*backup, "-U", "postgres"])
        # Its application_name, which the primary's list names.
        _start(pair.standby_data, pair.standby, "-c cluster_name=pg2")
        yield pair
    finally:
        _stop(pair.standby_data)
        _stop(pair.primary_data)
        if netns is not None:
            netns.remove()
        shutil.rmtree(pair.root, ignore_errors=True)


def _run_as_postgres(argv: list[str], prefix: list[str] | None = None) -> None:
    subprocess.run([*(prefix or []), *_AS, *argv], check=True, capture_output=True)


def _one(url: str, sql: str) -> object:
    """The first column of the first row, None also when the server does
    not have the database yet (a standby still replaying it)."""
    try:
        with psycopg.connect(url, connect_timeout=3) as c:
            row = c.execute(sql).fetchone()
    except psycopg.OperationalError:
        return None
    return row[0] if row else None


@pytest.fixture
def mxg_store(pair: Pair) -> str:
    """The multi-host URL of docs/cluster.md: the primary first, the
    standby second, read-write sessions only, a dead host's connection
    given up in seconds."""
    database = "mxg"
    with psycopg.connect(pair.url(pair.primary), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {database}")
    migrated(pair.url(pair.primary, database))
    # The standby is synchronous and has replayed the schema: a commit
    # acknowledged on the primary is on its disk from here on.
    wait_for(
        lambda: (
            _one(pair.url(pair.primary), "SELECT sync_state FROM pg_stat_replication") == "quorum"
        ),
        timeout=30,
        what="the standby synchronous",
    )
    wait_for(
        lambda: (
            _one(pair.url(pair.standby, database), "SELECT to_regclass('messages')") is not None
        ),
        timeout=30,
        what="the standby has the schema",
    )
    hosts = f"{pair.host(pair.primary)}:{pair.primary},127.0.0.1:{pair.standby}"
    return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write&{_TCP}"


@pytest.mark.parametrize("pair", ["killed", "vanished"], indirect=True)
def test_rule9_a_postgresql_failover_under_load_loses_no_acknowledged_message(
    make_mxg: Callable[..., MxgProcess],
    sinks: dict[str, Sink],
    pair: Pair,
    mxg_store: str,
) -> None:
    """Duplicates, and why they are bounded: the relay commits delivery
    results and done marks without waiting for the WAL flush
    (`synchronous_commit = off`; one synchronous commit makes them
    durable before a spool file goes), and a primary streams to its
    standby only the WAL it has flushed: the WAL writer's round
    (`wal_writer_delay`, 200 ms) or the relay's last sync, whichever came
    later. The results committed after that are on no standby when the
    primary dies. The new primary shows another start time than the one
    those commits were made on, so the relay repairs its queue from what
    the new primary shows (`pipeline/repair.py`), and a recipient whose
    result it lacks is delivered again. Each message here has one
    recipient: a message arrives twice only if it was re-queued by that
    repair (the log's `re-queued after the store restarted
    recipients=N`), and only messages acknowledged before the primary
    died can be."""
    mxg = make_mxg()

    def failover(load: Load) -> tuple[int, int, float]:
        pair.fail()  # it never comes back
        # 250s on their way as it died (their flush answered, so on the
        # synchronous standby too) reach their clients first: once in CI
        # three came in after `pg_ctl` had returned.
        time.sleep(SETTLE)
        down_at = len(load.acked)
        time.sleep(DETECTION - SETTLE)
        during = len(load.acked)
        promoted = time.monotonic()
        _pg_ctl(pair.standby_data, "-w", "promote")
        wait_for(lambda: len(load.acked) > during, timeout=60, what="a 250 after the promotion")
        return down_at, during, time.monotonic() - promoted

    load, (down_at, during, recovered) = through_outage(
        mxg, sinks, TOTAL, failover, recovery=120, delivery=120
    )
    spool = mxg.workdir / "data" / "spool" / "queue"
    wait_for(lambda: not any(spool.iterdir()), timeout=60, what="the spool emptied")
    time.sleep(1)  # stragglers, before counting duplicates
    log = mxg.log_text()
    counted = tally(sinks, log)
    got, duplicates, requeued = counted.got, counted.duplicates, counted.requeued
    report = (
        f"PostgreSQL failover report: sent {TOTAL}, acknowledged {len(load.acked)}"
        f" ({down_at} before the primary died, {during - down_at} while no primary),"
        f" 4xx replies {dict(sorted(load.replies.items()))}, connections cut {load.cut_off},"
        f" first 250 {recovered:.2f} s after the promotion,"
        f" delivered {len(got)} distinct, duplicates {duplicates}"
        f" (re-queued after the failover {requeued}, repaired {'repairing the queue' in log}),"
        f" delivered without acknowledgement {len(set(got) - load.acked)}, lost 0"
    )
    print(report)
    (mxg.workdir / "failover-report.txt").write_text(report + "\n")
    assert "store unreachable: refusing mail with 451" in log
    assert "store reachable again" in log
    assert during == down_at, "no 250 while there was no primary"
    assert load.replies and all(400 <= code < 500 for code in load.replies), load.replies
    assert not load.refused and not load.unsent
    assert len(load.acked) == TOTAL, "the relay recovered by itself"
    assert load.acked <= set(got)
    assert set(got) <= load.acked
    assert duplicates <= requeued <= down_at
    assert mxg.proc is not None and mxg.proc.poll() is None, "no restart of mxg"
    # Everything now lives on the promoted standby.
    with psycopg.connect(pair.url(pair.standby, "mxg")) as c:
        (pending,) = c.execute(
            "SELECT count(*) FROM recipients WHERE status IN ('pending', 'deferred')"
        ).fetchone() or (0,)
    assert pending == 0
    # The audit trail continues on the new primary: the relay re-read its
    # tail there rather than append after one the standby may lack.
    verified = mxg.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


# Longer than the relay's `tcp_user_timeout` (10 s, `_TCP`): its side of
# every connection ends while the server's sessions live on.
PARTITION = 14.0


@pytest.mark.parametrize("pair", ["vanished"], indirect=True)
def test_rule10_a_partition_from_postgresql_that_heals_needs_no_restart(
    make_mxg: Callable[..., MxgProcess],
    sinks: dict[str, Sink],
    pair: Pair,
    mxg_store: str,
) -> None:
    """The primary's host drops off the network under load and comes back
    unchanged: no failover. The relay gives up its connections on its
    side meanwhile; the server keeps its sessions, and any lock one held,
    until it hears from their client again. The relay answers 4xx while
    cut off and takes mail again by itself once the network is back."""
    netns = pair.netns
    assert netns is not None
    mxg = make_mxg()

    def partition(load: Load) -> float:
        netns.vanish()
        time.sleep(PARTITION)
        during = len(load.acked)
        netns.appear()
        healed = time.monotonic()
        wait_for(lambda: len(load.acked) > during, timeout=60, what="a 250 after the partition")
        return time.monotonic() - healed

    load, recovered = through_outage(mxg, sinks, TOTAL, partition, recovery=120, delivery=120)
    print(
        f"partition report: acknowledged {len(load.acked)}, first 250 {recovered:.2f} s"
        f" after the network came back, 4xx replies {dict(sorted(load.replies.items()))}"
    )
    log = mxg.log_text()
    assert "store unreachable: refusing mail with 451" in log
    assert "store reachable again" in log
    assert len(load.acked) == TOTAL, "the relay recovered by itself"
    assert mxg.proc is not None and mxg.proc.poll() is None, "no restart of mxg"


# Holds the housekeeper's lock on a store until killed; prints "held".
_HOLDER = """
import sys, time
from mxg.store import Store
store = Store(sys.argv[1])
assert store.try_housekeeper()
print("held", flush=True)
time.sleep(600)
"""


def test_rule11a_a_node_whose_host_vanishes_leaves_its_session_locks_in_seconds() -> None:
    """A node's session locks (its name's, the housekeeper's) end with its
    session. A host that vanishes (powered off) says nothing, so the
    server would keep its sessions until TCP gave up on them: over two
    hours with the system's keepalive, and no other node could become the
    housekeeper meanwhile. The relay's sessions ask the server to probe
    as its own connections do, and the lock is free in seconds."""
    if os.geteuid() != 0:
        pytest.skip("a host that vanishes is a network namespace: needs root")
    if not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 is not installed")
    netns = Netns()
    root = _private_root("mxg-vanish-")
    data, port = root / "data", _free_port()
    holder = None
    try:
        _run_as_postgres([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"])
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {netns.address}/32 trust\n")
        _start(data, port, f"-c listen_addresses='127.0.0.1,{netns.peer}'")
        url = migrated(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        holder = subprocess.Popen(
            [*netns.run(), sys.executable, "-c", _HOLDER, url.replace("127.0.0.1", netns.peer)],
            stdout=subprocess.PIPE,
        )
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        netns.vanish()
        vanished = time.monotonic()
        with psycopg.connect(url, autocommit=True) as other:
            take = f"SELECT pg_try_advisory_lock({NODE_LOCK}, 0)"
            wait_for(
                lambda: bool(other.execute(take).fetchone()[0]),  # type: ignore[index]
                timeout=60,
                what="the housekeeper's lock given up by the vanished node's session",
            )
        print(f"the vanished node's lock was free {time.monotonic() - vanished:.1f} s after")
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        _stop(data)
        netns.remove()
        shutil.rmtree(root, ignore_errors=True)
