"""Reports for the DPO (issue 16 item 5): per class, per domain and the
headline share, from a real store, in every format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from mxg import report
from mxg.config import Config
from mxg.decide import decide
from mxg.store import Outcome, ReportQuery, Store
from mxg.store.decisions import AWAITING
from tests.support.cli import mxg
from tests.test_evidence import dane_sent, deferred, message

DAY = 86_400_000


@pytest.fixture
def store(store_at: Path | str) -> Store:
    s = Store(store_at)
    s.add_messages(
        [
            message("H1", 10 * DAY, "a@s.test", ["a@dane.test", "b@slow.test"], "high"),
            message("H2", 11 * DAY, "a@s.test", ["c@dane.test"], "high"),
            message("N1", 12 * DAY, "a@s.test", ["d@plain.test", "e@plain.test"], "normal"),
            message("L1", 40 * DAY, "a@s.test", ["f@dane.test"], "high"),  # out of range
        ]
    )
    encrypted = Outcome(
        "N1", 0, "sent", 250, "2.0.0", "Ok", "mx.plain.test", "127.0.0.11",
        "TLSv1.3 X", "encrypted", 0, '{"version":"TLSv1.3"}',
    )  # fmt: skip
    s.record(
        [
            dane_sent("H1", 0),
            deferred("H1", 1, "no STARTTLS", 99),
            dane_sent("H2", 0),
            encrypted,
            Outcome("N1", 1, "held", None, "4.7.1", "held (class normal)", reason="dane-required"),
            dane_sent("L1", 0),
        ]
    )
    s.record(
        [
            Outcome(
                "H1", 1, "bounced", None, "5.7.5", "level not met", "mx.slow.test",
                "127.0.0.13", reason="starttls-not-supported",
            )
        ]
    )  # fmt: skip
    return s


def figures(store: Store, **kw: object) -> report.Report:
    return report.build(store, ReportQuery(5 * DAY, 20 * DAY, **kw))  # type: ignore[arg-type]


def test_per_class_per_domain_and_the_headline(store: Store) -> None:
    r = figures(store)
    assert (r.headline_recipients, r.headline_qualified) == (3, 2)
    assert r.headline_share == pytest.approx(2 / 3)
    high, normal = r.classes
    assert (high.risk_class, high.messages, high.recipients, high.delivered) == ("high", 2, 3, 2)
    assert (high.by_level, high.by_method, high.bounced) == ({"qualified": 2}, {"dane-ee": 2}, 1)
    assert (normal.messages, normal.delivered, normal.held) == (1, 1, 1)
    assert normal.by_level == {"encrypted": 1} and normal.by_method == {"none": 1}
    by_domain = {d.domain: d for d in r.domains}
    assert by_domain["dane.test"].best_level == "qualified"
    assert by_domain["dane.test"].recipients == 2, "L1 is outside the range"
    assert by_domain["slow.test"].best_level == ""
    assert by_domain["slow.test"].failures == {"server-reply": 1, "starttls-not-supported": 1}
    assert by_domain["plain.test"].best_level == "encrypted"


def test_class_and_domain_narrow_it(store: Store) -> None:
    assert [c.risk_class for c in figures(store, risk_class="normal").classes] == ["normal"]
    only = figures(store, domain="slow.test")
    assert [d.domain for d in only.domains] == ["slow.test"]
    assert only.headline_recipients == 1 and only.headline_qualified == 0


def test_formats(store: Store) -> None:
    r = figures(store)
    text = report.as_text(r)
    assert "high-risk recipients delivered qualified: 66.7 % (2 of 3)" in text
    doc = json.loads(report.as_json(r))
    assert doc["headline_share"] == pytest.approx(2 / 3) and len(doc["classes"]) == 2
    rows = list(csv.DictReader(io.StringIO(report.as_csv(r))))
    high = next(x for x in rows if x["kind"] == "class" and x["name"] == "high")
    assert (high["level_qualified"], high["method_dane-ee"], high["bounced"]) == ("2", "2", "1")
    slow = next(x for x in rows if x["name"] == "slow.test")
    assert slow["failed_starttls-not-supported"] == "1"
    page = report.as_html(r)
    assert "66.7 %" in page and "default-src 'none'" in page


def test_mxg_report_on_the_command_line(store: Store, store_at: Path | str, tmp_path: Path) -> None:
    url = store_at if isinstance(store_at, str) else ""
    conf = tmp_path / "mxg.toml"
    conf.write_text(f'[data]\ndirectory = "{tmp_path}"\nstore = "{url}"\n')
    out = mxg(conf, "report", "--from", "1970-01-06", "--to", "1970-01-21", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("kind,name,messages")
    bad = mxg(conf, "report", "--from", "1970-01-21", "--to", "1970-01-06")
    assert bad.returncode == 1 and "--to must come after --from" in bad.stderr


def test_sender_decisions_count_per_choice_once_not_at_the_carrier(store: Store) -> None:
    """Issue 16 item 5: the sender-decided counts per class, by choice; a
    secure envelope's carrier repeats its recipients' decision but is not
    counted again."""
    rcpts = [f"r{i}@plain.test" for i in range(5)]
    store.add_messages([message("D1", 13 * DAY, "a@s.test", rcpts, "high")])
    store.db.execute("UPDATE recipients SET status=? WHERE queue_id='D1'", (AWAITING,))
    cfg = Config()
    for idx, choice, extra in (
        (0, "normal", {}),
        (1, "envelope", {"carrier": b"C"}),
        (2, "cancel", {"dsn": True}),
        (3, "cancel", {}),
    ):
        decide(store, cfg, "D1", [idx], choice, actor="op", **extra)  # type: ignore[arg-type]
    carrier = message("C1", 13 * DAY, "a@s.test", ["r1@plain.test"], "high")
    carrier.envelope.origin = "local"
    store.carrier_spooled(store.pending_carriers()[0]["id"], carrier, ["encrypted"])

    high = next(c for c in figures(store).classes if c.risk_class == "high")
    assert high.by_decision == {"normal": 1, "envelope": 1, "cancel": 2}
    assert high.sender_decided == 4
    assert high.waiting == 3, "D1: r0 pending at normal's level, r4 parked; the carrier"
    assert high.bounced == 2, "H1's bounce and the cancel with a DSN"
    text = report.as_text(figures(store))
    assert "4 decided by the sender (normal 1, envelope 1, cancel 2)" in text
    rows = list(csv.DictReader(io.StringIO(report.as_csv(figures(store)))))
    row = next(x for x in rows if x["kind"] == "class" and x["name"] == "high")
    assert (row["decided_envelope"], row["decided_cancel"], row["decided_keep"]) == ("1", "2", "0")
    assert "normal 1, envelope 1, cancel 2" in report.as_html(figures(store))
