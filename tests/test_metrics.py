"""Issue 17 item 1: what the pipeline counts and how the collector turns
it, the queue index and the engine's counters into Prometheus families.
The end-to-end scrape during real deliveries is tests/e2e/test_metrics.py."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mxg.boundary import AttemptNote, DeliveryDone, RecipientResult, TlsInfo
from mxg.config import Config
from mxg.decide import decide
from mxg.metrics import Counts, Histogram
from mxg.metrics.collector import Sources, registry
from mxg.pipeline.plan import JobInfo
from mxg.store import NewMessage, Store, now_ms
from tests.pipeline.fakes import envelope, received, serving, stages

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_registry(reg: CollectorRegistry) -> Samples:
    text = generate_latest(reg).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def engine_stats() -> dict[str, int]:
    # The shape Engine.stats returns (tests/test_inbound_events.py checks
    # the real engine's numbers).
    return {
        "inbound_sessions": 7,
        "inbound_sessions_open": 2,
        "inbound_refused:relay-denied": 3,
        "inbound_refused:size": 0,
        "outbound_connections_opened": 4,
        "outbound_connections_reused": 9,
        "outbound_connections_idle": 1,
    }


def every_source(counts: Counts, store: Store) -> Sources:
    return Sources(
        counts,
        store,
        engine_stats,
        dns_cache=lambda: (5, 2),
        sts_cache=lambda: (1, 1),
        jobs=lambda: (3, 0),
        unstored=lambda: 0,
    )


def test_the_histogram_counts_each_observation_in_its_bucket_and_below() -> None:
    h = Histogram((0.1, 1.0, 10.0))
    for v in (0.05, 0.1, 0.5, 20.0):
        h.observe(v)
    # Prometheus buckets are cumulative and `le` is inclusive.
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("10.0", 3), ("+Inf", 4)]
    assert h.sum == pytest.approx(20.65)


def test_failures_are_split_into_tls_and_others_by_their_typed_reason() -> None:
    c = Counts()
    for reason in ("certificate-expired", "tlsa-invalid", "tls-profile", "level-not-met"):
        c.failure(reason)
    for reason in ("connection-refused", "server-reply", "dns-failure", None):
        c.failure(reason)
    assert set(c.tls_failures) == {
        "certificate-expired",
        "tlsa-invalid",
        "tls-profile",
        "level-not-met",
    }
    assert c.other_failures == {
        "connection-refused": 1,
        "server-reply": 1,
        "dns-failure": 1,
        "unknown": 1,
    }


def test_the_pipeline_counts_where_it_logs(tmp_path: Path) -> None:
    st, _ = stages(tmp_path)

    async def body() -> None:
        await st.handle([received(envelope("Q1", ["a@plain.test", "b@other.test"]))])

    serving(st, body)
    counts = st.ctx.counts
    assert counts.received == {"normal": 1}

    info = JobInfo("Q1", "plain.test", "sender@internal.test", None, received_ms=now_ms() - 1500)
    info.indexes = {"a@plain.test": [0]}
    info.attempts = {0: 1}
    info.classes = {0: "normal"}
    info.level = "encrypted"
    tls = TlsInfo("TLSv1.3", "TLS13_AES_256_GCM_SHA384", "secp384r1", ["ab" * 32], method="dane-ee")
    sent = RecipientResult(
        "a@plain.test", "sent", 250, "2.0.0", "Ok", "mx.plain.test", "127.0.0.2", "qualified", tls
    )
    attempts = [
        AttemptNote("mx1.plain.test", "127.0.0.9", "certificate expired", "certificate-expired"),
        AttemptNote("mx2.plain.test", "127.0.0.8", "refused", "connection-refused"),
    ]

    async def results() -> None:
        done = DeliveryDone(1, "Q1", "plain.test", [sent], attempts, 0, 0)
        await st.outcomes.results([(info, done)])

    serving(st, results)
    assert counts.recipients == {("sent", "normal", "qualified", "dane-ee"): 1}
    assert counts.tls_failures == {"certificate-expired": 1}
    assert counts.other_failures == {"connection-refused": 1}
    assert sum(counts.latency.counts) == 1
    assert 1.4 < counts.latency.sum < 60


def test_the_collector_reports_counts_engine_queue_and_decisions(tmp_path: Path) -> None:
    store = Store(tmp_path / "queue.db")
    received_ms = now_ms() - 90_000
    store.add_messages(
        [
            NewMessage(envelope("Q1", ["a@x.test", "b@y.test"], received_ms=received_ms), "high"),
            NewMessage(envelope("Q2", ["c@x.test"]), "normal"),
        ]
    )
    counts = Counts()
    counts.message_received("high")
    counts.recipient("sent", "normal", "encrypted", "")
    counts.delivered_after(0.3)
    sources = every_source(counts, store)
    # Decisions before the collector was made (the relay's start) are not
    # counted: a counter starts at zero.
    store.hold("Q2", "operator", "check")
    reg = registry(sources)
    store.hold("Q1", "operator", "check")
    store.release("Q2", "operator", "ok")

    s = scrape_registry(reg)
    assert value(s, "mxg_messages_received_total", **{"class": "high"}) == 1
    # Every class is there from the start, for dashboards.
    assert value(s, "mxg_messages_received_total", **{"class": "secret"}) == 0
    assert (
        value(
            s,
            "mxg_recipients_total",
            status="sent",
            level="encrypted",
            method="",
            **{"class": "normal"},
        )
        == 1
    )
    assert value(s, "mxg_delivery_latency_seconds_bucket", le="0.5") == 1
    assert value(s, "mxg_delivery_latency_seconds_bucket", le="0.25") == 0
    assert value(s, "mxg_delivery_latency_seconds_count") == 1
    assert value(s, "mxg_inbound_sessions_total") == 7
    assert value(s, "mxg_inbound_sessions_open") == 2
    assert value(s, "mxg_inbound_refusals_total", reason="relay-denied") == 3
    assert value(s, "mxg_inbound_refusals_total", reason="size") == 0
    assert value(s, "mxg_outbound_connections_opened_total") == 4
    assert value(s, "mxg_outbound_connections_reused_total") == 9
    assert value(s, "mxg_outbound_connections_idle") == 1
    assert value(s, "mxg_cache_lookups_total", cache="dns", result="hit") == 5
    assert value(s, "mxg_cache_lookups_total", cache="mta-sts", result="miss") == 1
    assert value(s, "mxg_delivery_jobs", state="running") == 3
    assert value(s, "mxg_queue_messages", state="active") == 1
    assert value(s, "mxg_queue_messages", state="held") == 1
    assert value(s, "mxg_queue_recipients", status="pending") == 3
    assert 89 < value(s, "mxg_queue_oldest_message_age_seconds", state="held") < 150
    assert value(s, "mxg_queue_oldest_message_age_seconds", state="active") < 60
    assert value(s, "mxg_decisions_total", action="hold", **{"class": "high"}) == 1
    assert value(s, "mxg_decisions_total", action="release", **{"class": "normal"}) == 1
    hold_q2 = ("mxg_decisions_total", frozenset({("action", "hold"), ("class", "normal")}))
    assert hold_q2 not in s

    # Each scrape adds what is new since the last one.
    store.delete("Q2", "operator", "spam")
    s = scrape_registry(reg)
    assert value(s, "mxg_decisions_total", action="hold", **{"class": "high"}) == 1
    assert value(s, "mxg_decisions_total", action="delete", **{"class": "normal"}) == 1
    assert value(s, "mxg_queue_messages", state="active") == 1  # deleted, not yet done

    # A decision about parked recipients counts by its choice.
    store.db.execute("UPDATE recipients SET status='awaiting-sender' WHERE queue_id='Q1'")
    decide(store, Config(), "Q1", [0], "envelope", actor="sender", carrier=b"C")
    s = scrape_registry(reg)
    assert value(s, "mxg_decisions_total", action="decided-envelope", **{"class": "high"}) == 1


def test_every_queue_figure_is_read_from_an_index(tmp_path: Path) -> None:
    # Cheap at scrape time with any queue and history size: every query
    # of a scrape searches a partial index of what is still waiting, and
    # SQLite reads min() off (state, received_ms) in one lookup.
    store = Store(tmp_path / "queue.db")
    plans: list[str] = []
    traced = sqlite3.connect(tmp_path / "queue.db")

    def explain(sql: str, params: object) -> None:
        rows = traced.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        plans.append(" ".join(str(r[3]) for r in rows))

    real = store.db
    store.db = _Explaining(real, explain)
    store.depth()
    store.db = real
    assert len(plans) == 8, plans
    for plan in plans:
        assert "USING COVERING INDEX" in plan, plan
    assert any("messages_open_age (state=?)" in p for p in plans), plans
    indexes = {r[0] for r in traced.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    # It replaced the index on state alone: no extra write per message.
    assert "messages_open" not in indexes
    store.close()


class _Explaining:
    """A connection that explains each statement before it runs it."""

    def __init__(self, db: sqlite3.Connection, explain: Callable[[str, object], None]) -> None:
        self._db = db
        self._explain = explain

    def execute(self, sql: str, params: object = ()) -> sqlite3.Cursor:
        self._explain(sql, params)
        return self._db.execute(sql, params)


def test_the_docs_and_the_dashboard_name_exactly_the_metrics_there_are(tmp_path: Path) -> None:
    sources = every_source(Counts(), Store(tmp_path / "queue.db"))
    text = generate_latest(registry(sources)).decode()
    families = {f.name for f in text_string_to_metric_families(text)}

    def base(name: str) -> str:
        return re.sub(r"_(total|bucket|count|sum)$", "", name)

    root = Path(__file__).resolve().parent.parent
    ops = (root / "docs" / "operations.md").read_text()
    monitoring = ops.split("## Monitoring", 1)[1].split("\n## ", 1)[0]
    documented = {base(n) for n in re.findall(r"^\| `(mxg_[a-z_]+)`", monitoring, re.M)}
    assert documented == families
    dashboard = json.loads((root / "docs" / "grafana-mxg.json").read_text())
    exprs = " ".join(
        t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])
    ) + json.dumps(dashboard["templating"])
    used = {base(n) for n in re.findall(r"mxg_[a-z_]+", exprs)}
    assert used <= families, used - families
    # Every metric is on the dashboard except the start time.
    assert families - used == {"mxg_start_time_seconds"}
