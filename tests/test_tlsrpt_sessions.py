"""Counting TLS sessions for the TLS reports (RFC 8460 §4.4): the
result-type mapping, the policy applied per host, and the aggregate in
the store (one row per key, counts added up across batches)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mxg.boundary import AttemptNote, RecipientResult, TlsInfo
from mxg.dns import Host, Policy, Route
from mxg.store import Outcome, Store
from mxg.store.tlsrpt import SentMark
from mxg.tlsrpt.results import result_type
from mxg.tlsrpt.sessions import SessionKey, Tally, count_job, count_unroutable, utc_day
from mxg.vocab import TLS_RPT_REASONS, Reason
from tests.test_store import envelope

# 2026-03-04 23:59:59.500 UTC and half a second later, the next day.
LATE = 1772668799500
NEXT = LATE + 1000

TLSA = {"usage": 3, "selector": 1, "mtype": 1, "data": "ab" * 32}
STS = Policy("x.test", "id1", "enforce", ("mx1.x.test", "*.x.test"), 86400)


def route(*hosts: Host) -> Route:
    return Route("x.test", list(hosts))


def sent(host: str, ip: str, *, tls: bool = True) -> RecipientResult:
    info = TlsInfo("TLSv1.3", "TLS13_AES_256_GCM_SHA384", "X25519", ["00"]) if tls else None
    return RecipientResult(
        "a@x.test", "sent", 250, "2.0.0", "ok", host, ip, "encrypted" if tls else "none", info
    )


def test_every_rfc8460_result_type_is_its_own_word() -> None:
    for r in TLS_RPT_REASONS:
        assert result_type(r) == (str(r), "")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("starttls-refused", ("starttls-not-supported", "starttls-refused")),
        ("tls-profile", ("validation-failure", "tls-profile")),
        ("tls-handshake-failure", ("validation-failure", "tls-handshake-failure")),
        ("level-not-met", ("validation-failure", "level-not-met")),
        # No TLS session at all: nothing to report.
        ("connection-refused", None),
        ("connection-timeout", None),
        ("server-reply", None),
        ("dns-failure", None),
        ("local-error", None),
        (None, None),
        ("no-such-reason", None),
    ],
)
def test_mxgs_own_reasons_map_to_a_result_type_or_to_no_session(
    reason: str | None, expected: tuple[str, str] | None
) -> None:
    assert result_type(reason) == expected


def test_every_reason_of_the_vocabulary_has_a_decided_mapping() -> None:
    # A reason added to the vocabulary later must be placed here on purpose.
    unmapped = {r for r in Reason if result_type(r) is None}
    assert unmapped == {
        Reason.DNS_FAILURE,
        Reason.CONNECTION_REFUSED,
        Reason.CONNECTION_TIMEOUT,
        Reason.CONNECTION_FAILED,
        Reason.SERVER_REPLY,
        Reason.REQUIRETLS_NOT_SUPPORTED,
        Reason.LOCAL_ERROR,
        Reason.E2E_REQUIRED,
    }


def policy(key: SessionKey) -> dict[str, object]:
    return dict(json.loads(key.policy))


def test_a_dane_host_reports_its_tlsa_records_and_an_sts_host_the_policy() -> None:
    dane = Host("mx1.x.test", ["127.0.0.1"], tlsa=(TLSA,))
    plain = Host("mx2.x.test", ["127.0.0.2"])
    tally = Tally()
    count_job(
        tally,
        domain="x.test",
        route=route(dane, plain),
        sts=STS,
        results=[sent("mx1.x.test", "127.0.0.1"), sent("mx1.x.test", "127.0.0.1")],
        attempts=[AttemptNote("mx2.x.test", "127.0.0.2", "bad cert", "certificate-expired")],
        finished_ms=LATE,
    )
    (ok, n_ok), (bad, n_bad) = sorted(tally.items(), key=lambda kv: kv[0].result)
    # Two recipients over one session: one session.
    assert n_ok == 1 and n_bad == 1
    assert ok.day == "2026-03-04" and ok.result == "" and ok.receiving_mx == ""
    assert policy(ok) == {
        "policy-type": "tlsa",
        "policy-string": [f"3 1 1 {'ab' * 32}"],
        "mx-host": ["mx1.x.test"],
    }
    assert bad.result == "certificate-expired" and bad.code == ""
    assert (bad.receiving_mx, bad.receiving_ip) == ("mx2.x.test", "127.0.0.2")
    # The kernel's source address towards the receiving address.
    assert bad.sending_ip == "127.0.0.1"
    assert policy(bad) == {
        "policy-type": "sts",
        "policy-string": [
            "version: STSv1",
            "mode: enforce",
            "mx: mx1.x.test",
            "mx: *.x.test",
            "max_age: 86400",
        ],
        "mx-host": ["mx1.x.test", "*.x.test"],
    }


def test_no_policy_plaintext_is_a_starttls_failure_and_non_tls_errors_are_no_session() -> None:
    tally = Tally()
    count_job(
        tally,
        domain="x.test",
        route=route(Host("mx.x.test", ["127.0.0.3"])),
        sts=Policy("x.test", "id0", "none", ("*.x.test",), 86400),  # mode none: no policy
        results=[sent("mx.x.test", "127.0.0.3", tls=False)],
        attempts=[
            AttemptNote("mx.x.test", "127.0.0.4", "refused", "connection-refused"),
            AttemptNote("mx.x.test", "127.0.0.5", "5xx to STARTTLS", "starttls-refused"),
        ],
        finished_ms=NEXT,
    )
    keys = sorted(tally, key=lambda k: k.receiving_ip)
    assert [(k.day, k.result, k.receiving_ip, k.code) for k in keys] == [
        ("2026-03-05", "starttls-not-supported", "127.0.0.3", ""),
        ("2026-03-05", "starttls-not-supported", "127.0.0.5", "starttls-refused"),
    ]
    assert {policy(k)["policy-type"] for k in keys} == {"no-policy-found"}


def test_a_failure_before_any_connection_counts_under_its_kind_of_policy() -> None:
    tally = Tally()
    count_unroutable(tally, domain="x.test", reason="dnssec-invalid", at_ms=LATE)
    count_unroutable(tally, domain="x.test", reason="sts-policy-invalid", at_ms=LATE)
    count_unroutable(tally, domain="x.test", reason="dns-failure", at_ms=LATE)
    # No MX host the enforce policy allows: reported under that policy.
    count_unroutable(tally, domain="x.test", reason="validation-failure", at_ms=LATE, sts=STS)
    assert {k.result: policy(k) for k in tally} == {
        "dnssec-invalid": {"policy-type": "tlsa"},
        "sts-policy-invalid": {"policy-type": "sts"},
        "validation-failure": {
            "policy-type": "sts",
            "policy-string": [
                "version: STSv1",
                "mode: enforce",
                "mx: mx1.x.test",
                "mx: *.x.test",
                "max_age: 86400",
            ],
            "mx-host": ["mx1.x.test", "*.x.test"],
        },
    }


def test_utc_day_turns_at_midnight_utc() -> None:
    assert (utc_day(LATE), utc_day(NEXT)) == ("2026-03-04", "2026-03-05")


def test_the_aggregate_adds_up_across_batches_one_row_per_key(tmp_path: Path) -> None:
    s = Store(tmp_path / "q.db")
    s.add_messages([envelope(f"Q{i}", ["a@x.test"]) for i in range(3)])
    host = Host("mx.x.test", ["127.0.0.1"])
    for i in range(3):
        tally = Tally()
        count_job(
            tally,
            domain="x.test",
            route=route(host),
            sts=None,
            results=[sent("mx.x.test", "127.0.0.1")],
            attempts=[AttemptNote("mx.x.test", "127.0.0.9", "x", "certificate-not-trusted")],
            finished_ms=LATE,
        )
        # In the batch's own transaction, with its results.
        s.record([Outcome(f"Q{i}", 0, "sent", 250, "2.0.0", "ok")], None, tally)
    rows = s.tlsrpt_rows("2026-03-04", "x.test")
    assert [(r["result"], r["sessions"]) for r in rows] == [
        ("", 3),
        ("certificate-not-trusted", 3),
    ]
    assert s.tlsrpt_domains("2026-03-04") == ["x.test"]
    assert s.tlsrpt_domains("2026-03-05") == []


def test_the_aggregate_commits_with_the_results_or_not_at_all(tmp_path: Path) -> None:
    s = Store(tmp_path / "q.db")
    s.add_messages([envelope("Q1", ["a@x.test"])])
    tally = Tally({SessionKey("2026-03-04", "x.test", '{"policy-type":"no-policy-found"}'): 1})
    # A batch whose transaction fails takes its counts with it.
    s.db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON attempts BEGIN SELECT RAISE(ABORT, 'x'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        s.record([Outcome("Q1", 0, "sent", 250, "2.0.0", "ok")], None, tally)
    assert s.tlsrpt_rows("2026-03-04", "x.test") == []


def test_pruning_drops_the_days_before_the_cutoff_with_their_marks(tmp_path: Path) -> None:
    s = Store(tmp_path / "q.db")
    nopol = '{"policy-type":"no-policy-found"}'
    s.add_tls_sessions(
        Tally({SessionKey(d, "x.test", nopol): 1 for d in ("2026-01-01", "2026-02-01")})
    )
    for d in ("2026-01-01", "2026-02-01"):
        s.mark_tlsrpt(d, "x.test", "mailto:r@x.test", report_id="r", status="sent")
        s.request_tlsrpt(d, "", "alice")
    assert s.prune_tlsrpt("2026-02-01") == 1
    assert [d for d, _, _ in s.tlsrpt_days()] == ["2026-02-01"]
    assert s.tlsrpt_marks("2026-01-01", "x.test") == {}
    assert list(s.tlsrpt_marks("2026-02-01", "x.test")) == ["mailto:r@x.test"]
    assert [r["day"] for r in s.tlsrpt_requests()] == ["2026-02-01"]


def test_marking_a_report_again_counts_the_try_on_both_stores(store_at: Path | str) -> None:
    """A report tried again is one row whose tries go up (its retry
    schedule reads them), on SQLite and on PostgreSQL alike."""
    s = Store(store_at)
    rua = "https://reports.x.test/tlsrpt"
    s.mark_tlsrpt("2026-01-01", "x.test", rua, report_id="r", status="failed", next_ms=5)
    s.mark_tlsrpt("2026-01-01", "x.test", rua, report_id="r", status="sent", detail="202")
    assert s.tlsrpt_marks("2026-01-01", "x.test") == {rua: SentMark("sent", 2, 0, "202")}
    s.close()
