"""Evidence lookups (issue 16 item 1): by queue ID, Message-ID,
recipient, sender, domain, time, class and outcome, with flat fields in
every format (no JSON inside JSON)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import msgspec
import pytest

from mxg.boundary import Envelope
from mxg.cli.evidence import when_ms
from mxg.config import load_config
from mxg.errors import MxgError
from mxg.evidence import FIELDS, as_csv, as_json_lines, as_table, flatten
from mxg.store import EvidenceQuery, NewMessage, Outcome, Store

PROVED = json.dumps(
    {
        "version": "TLSv1.3",
        "cipher": "TLS13_AES_256_GCM_SHA384",
        "group": "X25519",
        "peer_certs_sha256": ["aa" * 32, "bb" * 32],
        "method": "dane-ee",
        "tlsa": "3 1 1 " + "cc" * 32,
        "mx_dnssec": "secure",
        "host_dnssec": "secure",
    }
)


def message(qid: str, received_ms: int, sender: str, rcpts: list[str], cls: str) -> NewMessage:
    env = msgspec.convert(
        {
            "queue_id": qid,
            "received_ms": received_ms,
            "sender": sender,
            "recipients": [{"address": r} for r in rcpts],
            "origin": "smtp",
            "size": 10,
            "message_id": f"<{qid}@sender.test>",
        },
        Envelope,
    )
    return NewMessage(env, cls, None, [cls] * len(rcpts))


def dane_sent(qid: str, idx: int, reply: str = "Ok queued as 7") -> Outcome:
    """A delivery over DANE-verified TLS 1.3, as the engine reports it."""
    return Outcome(
        qid,
        idx,
        "sent",
        250,
        "2.0.0",
        reply,
        "mx.dane.test",
        "127.0.0.17",
        "TLSv1.3 TLS13_AES_256_GCM_SHA384",
        "qualified",
        0,
        PROVED,
    )


def deferred(qid: str, idx: int, reply: str, next_ms: int, host: str = "mx.slow.test") -> Outcome:
    """A 451 from the server: tried again at `next_ms`."""
    ip = "127.0.0.13" if host == "mx.slow.test" else "127.0.0.17"
    return Outcome(
        qid,
        idx,
        "deferred",
        451,
        "4.3.2",
        reply,
        host,
        ip,
        "",
        "none",
        next_ms,
        "",
        "server-reply",
    )


@pytest.fixture
def store(store_at: Path | str) -> Store:
    s = Store(store_at)
    day = 86_400_000
    s.add_messages(
        [
            message("A1", 10 * day, "alice@sender.test", ["x@dane.test", "y@slow.test"], "high"),
            message("B2", 20 * day, "bob@sender.test", ["z@dane.test"], "normal"),
        ]
    )
    s.record(
        [
            dane_sent("A1", 0),
            deferred("A1", 1, "later", 99),
            dane_sent("B2", 0, "Ok"),
        ]
    )
    s.record([deferred("A1", 1, "still later", 199)])
    return s


def look(store: Store, **kw: object) -> list[dict[str, object]]:
    cfg = load_config(None, environ={})
    return [flatten(r, cfg) for r in store.evidence(EvidenceQuery(**kw))]  # type: ignore[arg-type]


def test_each_selector_narrows_the_answer(store: Store) -> None:
    everyone = look(store)
    assert [(r["queue_id"], r["recipient"]) for r in everyone] == [
        ("A1", "x@dane.test"),
        ("A1", "y@slow.test"),
        ("B2", "z@dane.test"),
    ]
    assert {r["recipient"] for r in look(store, queue_id="B2")} == {"z@dane.test"}
    assert len(look(store, message_id="<A1@sender.test>")) == 2
    assert len(look(store, message_id="A1@sender.test")) == 2, "brackets optional"
    assert [r["queue_id"] for r in look(store, recipient="Y@SLOW.test")] == ["A1"]
    assert {r["queue_id"] for r in look(store, sender="bob@sender.test")} == {"B2"}
    assert len(look(store, domain="dane.test")) == 2
    assert {r["queue_id"] for r in look(store, since_ms=15 * 86_400_000)} == {"B2"}
    assert {r["queue_id"] for r in look(store, until_ms=15 * 86_400_000)} == {"A1"}
    assert {r["recipient"] for r in look(store, risk_class="high")} == {
        "x@dane.test",
        "y@slow.test",
    }
    assert [r["recipient"] for r in look(store, outcome="deferred")] == ["y@slow.test"]
    assert look(store, queue_id="A1", outcome="bounced") == []
    assert len(look(store, limit=1)) == 1


def test_a_record_is_flat_and_says_how_the_mail_was_protected(store: Store) -> None:
    (rec,) = look(store, recipient="x@dane.test")
    assert list(rec) == list(FIELDS)
    assert all(not isinstance(v, dict | list) for v in rec.values()), "no nesting"
    assert rec["required"] == "qualified", "class high's level in the default configuration"
    assert (rec["level"], rec["method"], rec["tls_version"]) == ("qualified", "dane-ee", "TLSv1.3")
    assert rec["peer_cert_sha256"] == f"{'aa' * 32} {'bb' * 32}"
    assert rec["tlsa"].startswith("3 1 1 ") and rec["mx_dnssec"] == "secure"
    assert rec["reply"] == "Ok queued as 7" and rec["code"] == 250
    assert str(rec["received"]).endswith("Z") and str(rec["received"]).startswith("1970-01-11T")
    (deferred,) = look(store, recipient="y@slow.test")
    assert (deferred["status"], deferred["reason"], deferred["reply"]) == (
        "deferred",
        "server-reply",
        "still later",
    )


def test_attempts_shows_every_attempt(store: Store) -> None:
    tries = look(store, recipient="y@slow.test", attempts=True)
    assert [r["reply"] for r in tries] == ["later", "still later"]


def test_formats(store: Store) -> None:
    records = look(store)
    lines = as_json_lines(records).splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["method"] == "dane-ee"
    rows = list(csv.DictReader(io.StringIO(as_csv(records))))
    assert rows[0]["peer_cert_sha256"].startswith("aa") and rows[1]["reason"] == "server-reply"
    assert "{" not in as_csv(records), "no JSON inside a CSV field"
    table = as_table(records)
    assert table.splitlines()[0].split()[:3] == ["RECEIVED", "QUEUE", "ID"]


def test_times_on_the_command_line() -> None:
    assert when_ms("1970-01-02") == 86_400_000
    assert when_ms("1970-01-01T01:00:00+01:00") == 0
    assert when_ms("36h", now=200_000) == (200_000 - 36 * 3600) * 1000
    with pytest.raises(MxgError, match="no time"):
        when_ms("yesterday")
