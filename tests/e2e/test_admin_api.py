"""Issue 17 item 2, end to end: the admin API inside a real `mxg run`,
with a wrong token (401), a read-only token (reads work, every change is
403 and nothing changes) and an admin token (hold and release by
selector, recorded with the token's name and the reason in the audit
trail, which `mxg audit verify` still finds intact). The scanner runs
once a minute here, so the deliveries after the release show that an
action through the API is carried out at once, in the relay's process."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mxg.web.auth import new_token, token_sha256
from tests.e2e.test_delivery import wait_for
from tests.e2e.test_queue_ops import queue_json, send
from tests.support.dns import free_port
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e

ADMIN, READER = new_token(), new_token()


def web_config(port: int) -> str:
    return f'[web]\nlisten = ["127.0.0.1:{port}"]\n' + "".join(
        f'[[web.token]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{token_sha256(token)}"\n'
        for name, role, token in (("ops-alice", "admin", ADMIN), ("monitor", "read", READER))
    )


class Api:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"

    def __call__(self, method: str, path: str, token: str | None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.base + path, headers=headers, timeout=10, **kw)


def test_the_admin_api_with_a_wrong_a_read_and_an_admin_token(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    slow_ok = {"value": False}
    sinks["slow"].rcpt_policy = lambda r: None if slow_ok["value"] else "451 4.3.2 later"
    port = free_port()
    mxg = make_mxg(
        extra=web_config(port),
        env={"MXG_QUEUE__RETRY_SCHEDULE": '["1h"]', "MXG_QUEUE__SCAN_INTERVAL": "60s"},
    )
    api = Api(port)
    first, second = (send(mxg, "alice@sender.test", [f"s{i}@slow.test"]) for i in (1, 2))
    wait_for(lambda: len(sinks["slow"].rcpt_attempts) >= 2, what="first attempts")
    wait_for(
        lambda: all(m["reason"] for m in queue_json(mxg, "list")),
        what="both deferred",
    )
    before = queue_json(mxg, "list")

    # A wrong token: 401, nothing read, nothing changed.
    for token in ("mxg_wrong", None):
        assert api("GET", "/queue", token).status_code == 401
        r = api("POST", "/queue/hold", token, json={"all": True, "reason": "x"})
        assert r.status_code == 401 and r.json()["error"]

    # A read token: reads work, every change is 403.
    listing = api("GET", "/queue", READER, params={"domain": "slow.test"})
    assert listing.status_code == 200
    assert sorted(m["queue_id"] for m in listing.json()["messages"]) == sorted([first, second])
    assert api("GET", f"/messages/{first}", READER).json()["sender"] == "alice@sender.test"
    evidence = api("GET", f"/messages/{first}/evidence", READER).json()["evidence"]
    assert [(e["recipient"], e["status"]) for e in evidence] == [("s1@slow.test", "deferred")]
    summary = api("GET", "/queue/summary", READER).json()
    assert [(d["domain"], d["total"]) for d in summary["domains"]] == [("slow.test", 2)]
    for action in ("hold", "release", "flush", "delete", "bounce"):
        r = api("POST", f"/queue/{action}", READER, json={"all": True, "reason": "x"})
        assert r.status_code == 403, r.text
    assert queue_json(mxg, "list") == before

    # An admin token: a dry run, then hold and release by selector.
    dry = api("POST", "/queue/hold", ADMIN, json={"domains": ["slow.test"], "dry_run": True})
    assert dry.json()["messages"] == 2 and dry.json()["dry_run"]
    assert queue_json(mxg, "list") == before
    held = api(
        "POST",
        "/queue/hold",
        ADMIN,
        json={"domains": ["slow.test"], "states": ["deferred"], "reason": "partner down"},
    )
    assert held.status_code == 200, held.text
    assert sorted(c["queue_id"] for c in held.json()["changes"]) == sorted([first, second])
    assert {m["state"] for m in queue_json(mxg, "list")} == {"held"}
    slow_ok["value"] = True
    released = api(
        "POST", "/queue/release", ADMIN, json={"states": ["held"], "reason": "partner is back"}
    )
    assert released.json()["messages"] == 2
    # Delivered now, although the next scan is a minute away.
    wait_for(
        lambda: sorted(sinks["slow"].recipients()) == ["s1@slow.test", "s2@slow.test"],
        timeout=20,
        what="the released deliveries",
    )
    events = [
        (e["actor"], e["action"], e["detail"]) for e in queue_json(mxg, "show", first)["events"]
    ]
    assert events == [
        ("ops-alice (token)", "hold", "partner down"),
        ("ops-alice (token)", "release", "partner is back"),
    ]
    shown = mxg.cli("audit", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    trail = [json.loads(line) for line in shown.stdout.splitlines()]
    assert sorted(
        (r["kind"], r["queue_id"], r["actor"], r["data"]["detail"])
        for r in trail
        if r["actor"] != "mxg"
    ) == sorted(
        [
            ("hold", first, "ops-alice (token)", "partner down"),
            ("hold", second, "ops-alice (token)", "partner down"),
            ("release", first, "ops-alice (token)", "partner is back"),
            ("release", second, "ops-alice (token)", "partner is back"),
        ]
    )
    audit = mxg.cli("audit", "verify")
    assert audit.returncode == 0 and "audit trail intact" in audit.stdout, audit.stdout
    assert mxg.stop() == 0
    assert "web authentication failed" in mxg.log_text()
    assert "operator action" in mxg.log_text() and "via=api" in mxg.log_text()
    assert ADMIN not in mxg.log_text() and READER not in mxg.log_text()


def test_a_flush_through_the_api_delivers_now(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    """A deferred message whose next attempt is an hour away, with the
    next queue scan a minute away: a flush through the API delivers it
    at once; a read token's flush is refused and delivers nothing."""
    slow_ok = {"value": False}
    sinks["slow"].rcpt_policy = lambda r: None if slow_ok["value"] else "451 4.3.2 later"
    port = free_port()
    mxg = make_mxg(
        extra=web_config(port),
        env={"MXG_QUEUE__RETRY_SCHEDULE": '["1h"]', "MXG_QUEUE__SCAN_INTERVAL": "60s"},
    )
    api = Api(port)
    qid = send(mxg, "alice@sender.test", ["late@slow.test"])
    wait_for(lambda: all(m["reason"] for m in queue_json(mxg, "list")), what="deferred")
    slow_ok["value"] = True
    assert api("POST", "/queue/flush", READER, json={"all": True, "reason": "x"}).status_code == 403
    dry = api("POST", "/queue/flush", ADMIN, json={"domains": ["slow.test"], "dry_run": True})
    assert [c["queue_id"] for c in dry.json()["changes"]] == [qid]
    flushed = api("POST", "/queue/flush", ADMIN, json={"domains": ["slow.test"], "reason": "now"})
    assert flushed.json()["recipients"] == 1
    wait_for(
        lambda: sinks["slow"].recipients() == ["late@slow.test"], timeout=20, what="the delivery"
    )
    # One attempt before the flush, one after it: the dry run and the
    # read token's refused flush made none.
    assert len(sinks["slow"].rcpt_attempts) == 2
    assert mxg.stop() == 0
