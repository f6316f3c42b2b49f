"""Issue 17 item 1, end to end: /metrics scraped while a real relay
receives and delivers (the counters move as they should, the queue
depth goes back to 0), /health and /ready from inside `mxg run`,
/ready 503 naming a resolver that does not answer, inbound events in the
log with the client's address and RFC 3339 UTC time stamps, and no HTTP
port opened unless configured."""

from __future__ import annotations

import json
import os
import re
import smtplib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import fill_disk
from tests.e2e.test_delivery import wait_for
from tests.support.dns import free_port, free_udp_tcp_port
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink
from tests.support.smtp import RawSmtp

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def scrape(port: int) -> Samples:
    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert r.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def get(s: Samples, name: str, **labels: str) -> float:
    return s.get((name, frozenset(labels.items())), 0.0)


def total(s: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in s.items() if n == name and want <= ls)


def send(port: int, rcpts: list[str], subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("alice@sender.test", rcpts, f"Subject: {subject}\r\n\r\nbody\r\n")


def test_metrics_move_with_an_end_to_end_delivery(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    slow_ok = {"value": False}
    sinks["slow"].rcpt_policy = lambda r: None if slow_ok["value"] else "451 4.3.2 try later"
    metrics, web = free_port(), free_port()
    mxg = make_mxg(
        extra=f'[metrics]\nlisten = ["127.0.0.1:{metrics}"]\n[web]\nlisten = ["127.0.0.1:{web}"]\n'
    )
    before = scrape(metrics)
    assert get(before, "mxg_messages_received_total", **{"class": "normal"}) == 0
    assert total(before, "mxg_queue_messages") == 0

    send(mxg.port, ["g0@good.test", "g1@good.test"], "two")
    send(mxg.port, ["g2@good.test"], "one")
    send(mxg.port, ["a@dane.test"], "dane")
    send(mxg.port, ["s0@slow.test"], "slow")
    delivered = lambda: sinks["good1"].recipients() + sinks["good2"].recipients()  # noqa: E731
    wait_for(lambda: len(delivered()) == 3, what="good.test delivery")
    wait_for(lambda: sinks["dane"].recipients() == ["a@dane.test"], what="DANE delivery")
    wait_for(
        lambda: total(scrape(metrics), "mxg_recipients_total", status="deferred") >= 1,
        what="slow.test deferred",
    )
    _during_delivery(scrape(metrics))
    _a_decision_is_counted(mxg, metrics)
    slow_ok["value"] = True
    _release(mxg, metrics)
    wait_for(lambda: sinks["slow"].recipients() == ["s0@slow.test"], what="slow delivery")

    # Afterwards: everything delivered, the queue empty again.
    wait_for(lambda: total(scrape(metrics), "mxg_queue_messages") == 0, what="an empty queue")
    after = scrape(metrics)
    assert total(after, "mxg_recipients_total", status="sent") == 5
    assert total(after, "mxg_queue_recipients") == 0
    assert get(after, "mxg_queue_oldest_message_age_seconds", state="active") == 0
    assert get(after, "mxg_decisions_total", action="release", **{"class": "normal"}) == 1

    _a_refusal_is_counted_and_logged(mxg, metrics)
    for port in (metrics, web):
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
    # The operator's surface does not serve metrics.
    assert httpx.get(f"http://127.0.0.1:{web}/metrics", timeout=10).status_code == 404
    assert mxg.stop() == 0


def _during_delivery(during: Samples) -> None:
    """Four messages in, four recipients delivered (one by DANE), one
    deferred and still in the queue."""
    assert get(during, "mxg_messages_received_total", **{"class": "normal"}) == 4
    assert get(during, "mxg_queue_messages", state="active") == 1
    assert get(during, "mxg_queue_recipients", status="deferred") == 1
    assert get(during, "mxg_queue_oldest_message_age_seconds", state="active") > 0
    assert total(during, "mxg_recipients_total", status="sent") == 4
    assert total(during, "mxg_recipients_total", status="deferred", **{"class": "normal"}) >= 1
    # By method: the DANE-authenticated delivery (at the level the job
    # asked for, opportunistic here), and the plain ones with none.
    assert total(during, "mxg_recipients_total", status="sent", method="dane-ee") == 1
    assert total(during, "mxg_recipients_total", status="sent", level="none", method="") == 3
    assert get(during, "mxg_delivery_latency_seconds_count") == 4
    # One session per message (and the harness's check that the port answers).
    assert get(during, "mxg_inbound_sessions_total") >= 4
    assert total(during, "mxg_inbound_refusals_total") == 0
    # Each job opened a connection or took an idle one.
    jobs = get(during, "mxg_outbound_connections_opened_total") + get(
        during, "mxg_outbound_connections_reused_total"
    )
    assert jobs >= 4
    assert get(during, "mxg_cache_lookups_total", cache="dns", result="miss") >= 3


def _listing(mxg: MxgProcess) -> list[dict[str, Any]]:
    """`mxg queue list --json`: one JSON object a line."""
    listing = mxg.cli("queue", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    return [json.loads(line) for line in listing.stdout.splitlines()]


def _deferred_id(mxg: MxgProcess) -> str:
    [qid] = [m["queue_id"] for m in _listing(mxg) if "451" in (m["reason"] or "")]
    return str(qid)


def _a_decision_is_counted(mxg: MxgProcess, metrics: int) -> None:
    assert mxg.cli("queue", "hold", _deferred_id(mxg), "--reason", "look").returncode == 0
    wait_for(lambda: get(scrape(metrics), "mxg_queue_messages", state="held") == 1, what="held")
    decided = scrape(metrics)
    assert get(decided, "mxg_decisions_total", action="hold", **{"class": "normal"}) == 1
    assert get(decided, "mxg_queue_messages", state="active") == 0


def _release(mxg: MxgProcess, metrics: int) -> None:
    [qid] = [m["queue_id"] for m in _listing(mxg)]
    assert mxg.cli("queue", "release", qid, "--reason", "fine").returncode == 0


def _a_refusal_is_counted_and_logged(mxg: MxgProcess, metrics: int) -> None:
    c = RawSmtp(mxg.port)
    c.reply()
    assert c.cmd("BOGUS").startswith("50")
    c.close()
    wait_for(
        lambda: get(scrape(metrics), "mxg_inbound_refusals_total", reason="protocol-error") == 1,
        what="the refusal counted",
    )
    wait_for(lambda: "inbound refused" in mxg.log_text(), what="the refusal logged")
    log = mxg.log_text()
    refused = next(line for line in log.splitlines() if "inbound refused" in line)
    assert "client=127.0.0.1" in refused and "reason=protocol-error" in refused
    connect = next(line for line in log.splitlines() if "inbound connect" in line)
    assert "client=127.0.0.1" in connect and "relay=allowed" in connect
    assert STAMP.match(connect), connect
    metrics_line = next(line for line in log.splitlines() if "metrics listening" in line)
    assert f"addresses=http://127.0.0.1:{metrics}" in metrics_line


def test_ready_is_503_naming_a_resolver_that_does_not_answer(
    make_mxg: Callable[..., MxgProcess],
) -> None:
    metrics = free_port()
    make_mxg(
        extra=f'[metrics]\nlisten = ["127.0.0.1:{metrics}"]\n',
        # Nothing answers DNS on this port.
        env={"MXG_DNS__PORT": str(free_udp_tcp_port())},
    )
    ready = httpx.get(f"http://127.0.0.1:{metrics}/ready", timeout=15)
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["spool"] == "ok" and checks["store"] == "ok"
    assert checks["resolver"].startswith("secure.test SOA") or "no answer" in checks["resolver"]
    assert httpx.get(f"http://127.0.0.1:{metrics}/health", timeout=10).status_code == 200


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_ready_is_503_naming_a_full_spool_disk(
    make_mxg: Callable[..., MxgProcess], small_disk: Path
) -> None:
    metrics = free_port()
    mxg = make_mxg(start=False, extra=f'[metrics]\nlisten = ["127.0.0.1:{metrics}"]\n')
    mxg.config_path.write_text(
        mxg.config_path.read_text().replace(str(mxg.workdir / "data"), str(small_disk / "data"))
    )
    mxg.start()
    url = f"http://127.0.0.1:{metrics}/ready"
    assert httpx.get(url, timeout=15).status_code == 200
    filler = fill_disk(small_disk)
    full = httpx.get(url, timeout=15)
    assert full.status_code == 503
    checks = full.json()["checks"]
    assert checks["spool"] == f"no space left on the file system of {small_disk}/data/spool"
    assert checks["resolver"] == "ok"
    filler.unlink()
    wait_for(lambda: httpx.get(url, timeout=15).status_code == 200, what="ready again")


def test_no_http_port_is_opened_unless_configured(
    make_mxg: Callable[..., MxgProcess],
) -> None:
    mxg = make_mxg()
    assert mxg.proc is not None
    assert _listening_ports(mxg.proc.pid) == {mxg.port}
    assert "listening" in mxg.log_text()
    assert "metrics listening" not in mxg.log_text()
    assert "web listening" not in mxg.log_text()


def _listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on, from /proc (no ss needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            # st 0A: LISTEN
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
