"""The partner ledger's ratchet against a partner whose TLSA records
disappear (issue 16 item 7): the zone stays signed and the server keeps its
certificate, but DANE is gone, the way an attacker who strips TLSA from the
answers, or an operator's mistake, would leave it. With ``enforce`` the
partner is held to DANE until an operator accepts the new state; with
``warn`` the message goes at its class's level and the drop is logged.

Each test runs its own Knot and Unbound: the zone is edited and reloaded
mid-test, which the session's shared test world must not see."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import TLSA, mxg_config
from tests.e2e.test_delivery import swaks, wait_for
from tests.e2e.test_dnssec import sent_line
from tests.support.certs import spki_sha256
from tests.support.dns import KnotServer, UnboundServer
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e

ZONE = "partner.test"
# The DANE sink of the test world (tests/e2e/conftest.py `sinks`) serves
# 127.0.0.17 with the certificate the TLSA record pins.
HOSTS = ["@ MX 10 mx", "mx A 127.0.0.17"]

RelayFactory = Callable[[str], MxgProcess]


@pytest.fixture
def partner_dns(tmp_path: Path, dane_cert: tuple[Path, Path]) -> Iterator[UnboundServer]:
    tlsa = f"{TLSA}.mx TLSA 3 1 1 {spki_sha256(dane_cert[0])}"
    knot = KnotServer(tmp_path / "knot", {ZONE: [*HOSTS, tlsa]}, signed=[ZONE]).start()
    unbound = UnboundServer(tmp_path / "unbound", knot, trust_anchors=[knot.ksk(ZONE)]).start()
    yield unbound
    unbound.stop()
    knot.stop()


@pytest.fixture
def relay(
    tmp_path: Path, partner_dns: UnboundServer, backend: str, mxg_store: str
) -> Iterator[RelayFactory]:
    """Starts mxg on the partner's resolver with the given ratchet; stops
    it at the end, whatever the test did."""
    started: list[MxgProcess] = []

    def start(ratchet: str) -> MxgProcess:
        # Class normal at "encrypted": without the ratchet, a partner
        # without TLSA gets its mail over any current TLS.
        config = mxg_config(partner_dns, tmp_path / "data", level="encrypted", store=mxg_store)
        config = config.replace('dnssec_probe = "secure.test"', f'dnssec_probe = "{ZONE}"')
        config = config.replace("[delivery]\n", f'[delivery]\nratchet = "{ratchet}"\n', 1)
        started.append(MxgProcess(tmp_path, config, backend).start())
        return started[-1]

    yield start
    for p in started:
        p.stop()


def ledger(mxg: MxgProcess) -> dict[str, str]:
    out = mxg.cli("partners", "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return next(r for r in rows if r["domain"] == ZONE)


def strip_tlsa(dns: UnboundServer) -> None:
    """The partner's zone loses its TLSA record; the resolver forgets."""
    dns.knot.replace_zone(ZONE, HOSTS, serial=2)
    dns.flush(ZONE)


def remember_dane(mxg: MxgProcess, sink: Sink) -> None:
    assert swaks(mxg.port, "alice@sender.test", [f"a@{ZONE}"]).returncode == 0
    wait_for(lambda: sink.recipients() == [f"a@{ZONE}"], what="the DANE delivery")
    assert "method=dane-ee" in sent_line(mxg, f"a@{ZONE}")
    wait_for(lambda: ledger(mxg)["best_method"] == "dane-ee", what="the ledger entry")


def test_enforce_holds_a_partner_that_loses_tlsa_until_an_operator_accepts(
    tmp_path: Path, partner_dns: UnboundServer, sinks: dict[str, Sink], relay: RelayFactory
) -> None:
    mxg = relay("enforce")
    remember_dane(mxg, sinks["dane"])
    # The relay's own DNS cache goes with a restart; the ledger stays.
    mxg.stop()
    strip_tlsa(partner_dns)
    mxg.start()

    assert swaks(mxg.port, "alice@sender.test", [f"b@{ZONE}"]).returncode == 0
    wait_for(lambda: f"to=<b@{ZONE}>" in mxg.log_text(), what="the attempt without TLSA")
    held = next(line for line in mxg.log_text().splitlines() if f"to=<b@{ZONE}>" in line)
    assert "status=deferred" in held, held
    # Rule 1: nothing is sent below the level the partner is held to.
    assert sinks["dane"].mail_attempts == ["alice@sender.test"]
    assert ledger(mxg)["best_method"] == "dane-ee"

    accepted = mxg.cli("partners", "accept", ZONE, "--reason", "partner dropped DANE, ticket 42")
    assert accepted.returncode == 0, accepted.stderr
    wait_for(lambda: f"b@{ZONE}" in sinks["dane"].recipients(), what="delivery after accept")
    line = sent_line(mxg, f"b@{ZONE}")
    assert "method=dane-ee" not in line, line

    # The acceptance is in the audit trail, with its reason, and the trail
    # still verifies.
    mxg.stop()
    shown = mxg.cli("audit", "show", "--json")
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    accepts = [r["data"] for r in records if r["kind"] == "partner-accept"]
    assert [a["reason"] for a in accepts] == ["partner dropped DANE, ticket 42"]
    assert [a["was_method"] for a in accepts] == ["dane-ee"]
    verified = mxg.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_warn_delivers_a_partner_that_loses_tlsa_and_logs_the_drop(
    partner_dns: UnboundServer, sinks: dict[str, Sink], relay: RelayFactory
) -> None:
    mxg = relay("warn")
    remember_dane(mxg, sinks["dane"])
    mxg.stop()
    strip_tlsa(partner_dns)
    mxg.start()

    assert swaks(mxg.port, "alice@sender.test", [f"b@{ZONE}"]).returncode == 0
    wait_for(lambda: f"b@{ZONE}" in sinks["dane"].recipients(), what="the delivery without TLSA")
    assert "method=dane-ee" not in sent_line(mxg, f"b@{ZONE}")
    wait_for(
        lambda: "ratchet: partner delivered below its remembered method" in mxg.log_text(),
        what="the ratchet warning",
    )
    warning = next(line for line in mxg.log_text().splitlines() if "ratchet:" in line)
    assert f"domain={ZONE}" in warning and "remembered=dane-ee" in warning, warning
