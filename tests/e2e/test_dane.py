"""DANE for SMTP (RFC 7672) end to end: TLSA records in signed zones, a
validating resolver, receiving servers with and without matching keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_delivery import swaks, wait_for
from tests.e2e.test_dnssec import evidence_of
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e


def line_for(mxg: MxgProcess, rcpt: str) -> str:
    """The relay's delivery log line for `rcpt`. A receiving server has the
    message before the relay logs its reply, so a test that waited for the
    server waits here for the line too."""
    wait_for(lambda: f"to=<{rcpt}>" in mxg.log_text(), timeout=10, what=f"the log line of {rcpt}")
    return next(line for line in mxg.log_text().splitlines() if f"to=<{rcpt}>" in line)


def test_dane_ee_meets_the_qualified_level(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(level="qualified")
    r = swaks(mxg.port, "alice@sender.test", ["a@dane.test", "b@secure.test", "e@notlsa.test"])
    assert r.returncode == 0, r.stdout
    wait_for(lambda: sinks["dane"].recipients() == ["a@dane.test"], what="DANE delivery")
    ev = evidence_of(mxg, "a@dane.test")
    assert ev["method"] == "dane-ee"
    assert ev["tlsa"].startswith("3 1 1 ")
    assert "level=qualified" in line_for(mxg, "a@dane.test")
    # A signed zone without TLSA (and a server without STARTTLS): the
    # qualified level cannot be reached, so no delivery.
    wait_for(lambda: "to=<b@secure.test>" in mxg.log_text(), what="attempt on secure.test")
    no_tlsa = line_for(mxg, "b@secure.test")
    assert "status=deferred" in no_tlsa
    assert "required transport level qualified not met" in no_tlsa
    assert "b@secure.test" not in sinks["good1"].recipients()
    assert sinks["good1"].mail_attempts == []  # rule 1: no MAIL FROM below the level
    wait_for(lambda: "to=<e@notlsa.test>" in mxg.log_text(), what="attempt on notlsa.test")
    unauthenticated = line_for(mxg, "e@notlsa.test")
    assert "status=deferred" in unauthenticated and "validation-failure" in unauthenticated
    assert sinks["dane"].mail_attempts == ["alice@sender.test"]  # only the DANE delivery


def test_usable_tlsa_makes_authentication_mandatory_even_for_opportunistic_mail(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(level="opportunistic")
    r = swaks(mxg.port, "alice@sender.test", ["c@danebad.test", "d@danenotls.test"])
    assert r.returncode == 0, r.stdout
    wait_for(
        lambda: (
            "to=<c@danebad.test>" in mxg.log_text() and "to=<d@danenotls.test>" in mxg.log_text()
        ),
        what="both attempts",
    )
    bad = line_for(mxg, "c@danebad.test")
    assert "status=deferred" in bad and "tlsa-invalid" in bad
    notls = line_for(mxg, "d@danenotls.test")
    assert "status=deferred" in notls and "starttls-not-supported" in notls
    assert sinks["dane"].mail_attempts == []
    assert sinks["good1"].mail_attempts == []


def test_dnssec_pkix_meets_the_qualified_level(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], pkix_certs: dict[str, Path]
) -> None:
    mxg = make_mxg(level="qualified", env={"MXG_DELIVERY__CA_FILE": f'"{pkix_certs["ca"]}"'})
    r = swaks(
        mxg.port, "alice@sender.test", ["a@pkix.test", "b@pkixwrong.test", "c@pkixplain.test"]
    )
    assert r.returncode == 0, r.stdout
    wait_for(lambda: sinks["pkix"].recipients() == ["a@pkix.test"], what="dnssec-pkix delivery")
    assert evidence_of(mxg, "a@pkix.test")["method"] == "dnssec-pkix"
    assert "level=qualified" in line_for(mxg, "a@pkix.test")
    wait_for(
        lambda: (
            "to=<b@pkixwrong.test>" in mxg.log_text() and "to=<c@pkixplain.test>" in mxg.log_text()
        ),
        what="the other attempts",
    )
    wrong = line_for(mxg, "b@pkixwrong.test")
    assert "status=deferred" in wrong and "certificate-host-mismatch" in wrong
    plain = line_for(mxg, "c@pkixplain.test")  # unsigned zone: the MX answer proves nothing
    assert "status=deferred" in plain and "validation-failure" in plain
    assert sinks["pkixwrong"].mail_attempts == []
    assert sinks["pkix"].mail_attempts == ["alice@sender.test"]


def test_qualified_methods_are_configurable(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], pkix_certs: dict[str, Path]
) -> None:
    mxg = make_mxg(
        level="qualified",
        env={
            "MXG_DELIVERY__CA_FILE": f'"{pkix_certs["ca"]}"',
            "MXG_DELIVERY__QUALIFIED_METHODS": '["dane-ee", "dane-ta"]',
        },
    )
    swaks(mxg.port, "alice@sender.test", ["a@pkix.test"])
    wait_for(lambda: "to=<a@pkix.test>" in mxg.log_text(), what="attempt")
    assert "status=deferred" in line_for(mxg, "a@pkix.test")
    assert sinks["pkix"].mail_attempts == []


def test_dane_ta_checks_the_chain_and_the_name(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(level="qualified")
    r = swaks(mxg.port, "alice@sender.test", ["a@daneta.test", "b@danetawrong.test"])
    assert r.returncode == 0, r.stdout
    wait_for(lambda: sinks["pkix"].recipients() == ["a@daneta.test"], what="DANE-TA delivery")
    ev = evidence_of(mxg, "a@daneta.test")
    assert ev["method"] == "dane-ta" and ev["tlsa"].startswith("2 1 1 ")
    assert len(ev["peer_certs_sha256"]) == 2  # the chain with the trust anchor
    wait_for(lambda: "to=<b@danetawrong.test>" in mxg.log_text(), what="wrong-name attempt")
    wrong = line_for(mxg, "b@danetawrong.test")
    assert "status=deferred" in wrong and "certificate-host-mismatch" in wrong
    assert sinks["pkixwrong"].mail_attempts == []
