"""The transport-security scenario table (issue 3): every row a domain of
the test world, the level a message requires, and the outcome expected.
docs/scenarios.md shows the same table for people."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_dane import line_for
from tests.e2e.test_delivery import swaks, wait_for
from tests.support.https import PolicyServer
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e

# (row, domain, required level, expected status, text the log line must hold)
ROWS = [
    ("DANE-EE", "dane.test", "qualified", "sent", "method=dane-ee"),
    (
        "DANE-EE, certificate for another name (must pass)",
        "dane.test",
        "encrypted",
        "sent",
        "method=dane-ee",
    ),
    (
        "DANE-EE, certificate expired in 2020 (must pass)",
        "daneexpired.test",
        "qualified",
        "sent",
        "method=dane-ee",
    ),
    (
        "two MX hosts, only the second verifies",
        "danetwo.test",
        "qualified",
        "sent",
        "relay=mx2.danetwo.test",
    ),
    ("DANE-TA", "daneta.test", "qualified", "sent", "method=dane-ta"),
    (
        "MX host is a CNAME, TLSA at the expanded name",
        "danecname.test",
        "qualified",
        "sent",
        "method=dane-ta",
    ),
    (
        "MX host is a CNAME, TLSA at the original name only",
        "danecname2.test",
        "qualified",
        "sent",
        "method=dane-ee",
    ),
    (
        "DANE-TA with a wrong name (must fail)",
        "danetawrong.test",
        "opportunistic",
        "deferred",
        "certificate-host-mismatch",
    ),
    ("TLSA that matches nothing", "danebad.test", "opportunistic", "deferred", "tlsa-invalid"),
    (
        "TLSA but no STARTTLS",
        "danenotls.test",
        "opportunistic",
        "deferred",
        "starttls-not-supported",
    ),
    ("MTA-STS enforce, good certificate", "sts.test", "qualified", "sent", "method=mta-sts"),
    (
        "MTA-STS enforce, certificate for another name",
        "stsbad.test",
        "opportunistic",
        "deferred",
        "certificate-host-mismatch",
    ),
    (
        "MTA-STS enforce, no MX matches",
        "stsnomatch.test",
        "opportunistic",
        "deferred",
        "matches none of its MX hosts",
    ),
    (
        "MTA-STS enforce, self-signed certificate",
        "stsself.test",
        "opportunistic",
        "deferred",
        "certificate-not-trusted",
    ),
    (
        "MTA-STS testing, bad certificate (never blocks)",
        "ststesting.test",
        "opportunistic",
        "sent",
        "status=sent",
    ),
    (
        "MTA-STS testing is not qualified",
        "ststesting.test",
        "qualified",
        "deferred",
        "qualified not met",
    ),
    ("dnssec-pkix", "pkix.test", "qualified", "sent", "method=dnssec-pkix"),
    (
        "PKIX only, unsigned zone: encrypted",
        "pkixplain.test",
        "encrypted",
        "sent",
        "level=encrypted",
    ),
    (
        "PKIX only, unsigned zone: not qualified",
        "pkixplain.test",
        "qualified",
        "deferred",
        "validation-failure",
    ),
    (
        "self-signed, signed zone without TLSA: encrypted",
        "notlsa.test",
        "encrypted",
        "sent",
        "level=encrypted",
    ),
    (
        "self-signed, signed zone without TLSA: not qualified",
        "notlsa.test",
        "qualified",
        "deferred",
        "validation-failure",
    ),
    ("no STARTTLS: opportunistic", "good.test", "opportunistic", "sent", "tls=none"),
    ("no STARTTLS: not encrypted", "good.test", "encrypted", "deferred", "starttls-not-supported"),
    (
        "secure MX, host in an unsigned zone",
        "mixed.test",
        "qualified",
        "deferred",
        "qualified not met",
    ),
    (
        "TLS 1.0/1.1 only",
        "tls10.test",
        "opportunistic",
        "deferred",
        "shares no TLS version or cipher suite",
    ),
    (
        "RSA key exchange only",
        "rsakx.test",
        "opportunistic",
        "deferred",
        "shares no TLS version or cipher suite",
    ),
    ("bogus zone", "bogus.test", "opportunistic", "deferred", "SERVFAIL"),
]


@pytest.mark.parametrize("level", ["opportunistic", "encrypted", "qualified"])
def test_scenario_table(
    make_mxg: Callable[..., MxgProcess],
    sinks: dict[str, Sink],
    pkix_certs: dict[str, Path],
    sts_web: PolicyServer,
    level: str,
) -> None:
    rows = [r for r in ROWS if r[2] == level]
    mxg = make_mxg(level=level, env={"MXG_DELIVERY__CA_FILE": f'"{pkix_certs["ca"]}"'})
    rcpts = [f"row{i}@{r[1]}" for i, r in enumerate(rows)]
    result = swaks(mxg.port, "alice@sender.test", rcpts)
    assert result.returncode == 0, result.stdout
    wait_for(
        lambda: all(f"to=<{a}>" in mxg.log_text() for a in rcpts),
        timeout=60,
        what="an attempt for every row",
    )
    failures = []
    for rcpt, (name, _domain, _level, status, text) in zip(rcpts, rows, strict=True):
        line = line_for(mxg, rcpt)
        if f"status={status}" not in line or text not in line:
            failures.append(f"{name}: expected {status} with {text!r}, got: {line}")
    assert not failures, "\n".join(failures)
