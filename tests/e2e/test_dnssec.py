"""DNSSEC status of routes against a validating Unbound (ARCHITECTURE.md
rule 3): secure, insecure and bogus answers, and the AD bit ignored from
a resolver the operator did not declare trusted."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.e2e.test_delivery import swaks, wait_for
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e


def sent_line(mxg: MxgProcess, rcpt: str) -> str:
    """The delivery's log line; the receiving server may have the message
    before the relay has logged the reply (on PostgreSQL, before its
    result is stored: the line follows the store)."""

    def sent() -> list[str]:
        return [
            line
            for line in mxg.log_text().splitlines()
            if f"to=<{rcpt}>" in line and "status=sent" in line
        ]

    wait_for(lambda: bool(sent()), timeout=10, what=f"the delivery line of {rcpt}")
    return sent()[0]


def evidence_of(mxg: MxgProcess, rcpt: str) -> dict[str, str]:
    """The stored evidence of `rcpt`'s delivery, once its line is logged."""
    line = sent_line(mxg, rcpt)
    qid = line.split("queue_id=", 1)[1].split()[0]
    shown = json.loads(mxg.cli("queue", "show", qid, "--json").stdout)
    row = next(r for r in shown["recipients"] if r["address"] == rcpt)
    return dict(json.loads(row["evidence"] or "{}"))


def test_rule3_secure_insecure_and_bogus_answers(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg()
    assert "the resolver validates DNSSEC (AD on secure.test)" in mxg.log_text()
    r = swaks(mxg.port, "alice@sender.test", ["a@secure.test", "b@mixed.test", "c@bogus.test"])
    assert r.returncode == 0, r.stdout
    got = lambda: sinks["good1"].recipients() + sinks["good2"].recipients()  # noqa: E731
    wait_for(lambda: sorted(got()) == ["a@secure.test", "b@mixed.test"], what="deliveries")
    secure = evidence_of(mxg, "a@secure.test")
    assert (secure["mx_dnssec"], secure["host_dnssec"]) == ("secure", "secure")
    mixed = evidence_of(mxg, "b@mixed.test")
    assert (mixed["mx_dnssec"], mixed["host_dnssec"]) == ("secure", "insecure")
    log = mxg.log_text()
    assert "to=<a@secure.test>" in log and "dnssec=secure" in log
    # A bogus zone is a failure to retry, never an insecure route.
    wait_for(lambda: "to=<c@bogus.test>" in mxg.log_text(), what="bogus attempt")
    bogus = next(line for line in mxg.log_text().splitlines() if "to=<c@bogus.test>" in line)
    assert "status=deferred" in bogus
    assert "answered SERVFAIL (DNSSEC validation failure or server failure)" in bogus
    assert "c@bogus.test" not in got()


def test_rule3_ad_bit_ignored_from_an_untrusted_resolver(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(env={"MXG_DNS__TRUST_AD": "false"})
    assert "DNSSEC answers are not trusted (dns.trust_ad = false)" in mxg.log_text()
    swaks(mxg.port, "alice@sender.test", ["a@secure.test"])
    wait_for(lambda: "a@secure.test" in sinks["good1"].recipients(), what="delivery")
    ev = evidence_of(mxg, "a@secure.test")
    assert (ev["mx_dnssec"], ev["host_dnssec"]) == ("insecure", "insecure")
