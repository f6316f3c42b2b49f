"""Postfix's verdict on the transport-security scenario table (issue 3):
``posttls-finger`` probes every row's domain in the same test world, at the
Postfix security level closest to the level the row requires. Its verdict
is checked, Postfix's resulting delivery decision is compared with mxg's
outcome (tests/e2e/test_scenarios.py), and every disagreement must carry
its explanation here and in docs/scenarios.md."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import SINK_PORT, SYSTEM_RESOLVER
from tests.e2e.test_scenarios import ROWS
from tests.support.dns import UnboundServer
from tests.support.https import PolicyServer
from tests.support.posttls import posttls_finger
from tests.support.sinks import Sink

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postfix,
    pytest.mark.skipif(
        shutil.which("posttls-finger") is None and not Path("/usr/sbin/posttls-finger").exists(),
        reason="needs the Debian postfix package",
    ),
]

# Postfix levels: mxg "opportunistic" ~ "dane" (DANE when usable TLSA
# exist, else "may"), "encrypted" ~ "encrypt", "qualified" ~ "dane-only"
# for DANE rows and "verify" (PKIX, name = MX host) for PKIX rows.
# row -> (Postfix level, posttls-finger verdict, Postfix delivers, why
# Postfix's decision differs from mxg's, or None when they agree)
POSTFIX: dict[str, tuple[str, str, bool, str | None]] = {
    "DANE-EE": ("dane-only", "verified", True, None),
    "DANE-EE, certificate for another name (must pass)": ("dane", "verified", True, None),
    "DANE-EE, certificate expired in 2020 (must pass)": ("dane-only", "verified", True, None),
    # posttls-finger reports the first MX only; Postfix's smtp moves on to
    # mx2 after mx1 fails DANE, as mxg does.
    "two MX hosts, only the second verifies": ("dane-only", "untrusted", True, None),
    "DANE-TA": ("dane-only", "verified", True, None),
    "MX host is a CNAME, TLSA at the expanded name": ("dane-only", "verified", True, None),
    "MX host is a CNAME, TLSA at the original name only": (
        "dane-only",
        "verified",
        True,
        None,
    ),
    "DANE-TA with a wrong name (must fail)": ("dane", "untrusted", False, None),
    "TLSA that matches nothing": ("dane", "untrusted", False, None),
    "TLSA but no STARTTLS": ("dane", "no-starttls", False, None),
    "MTA-STS enforce, good certificate": ("verify", "verified", True, None),
    "MTA-STS enforce, certificate for another name": (
        "dane",
        "untrusted",
        True,
        "Postfix has no MTA-STS (it needs an external policy server)",
    ),
    "MTA-STS enforce, no MX matches": (
        "dane",
        "verified",
        True,
        "Postfix has no MTA-STS (it needs an external policy server)",
    ),
    "MTA-STS enforce, self-signed certificate": (
        "dane",
        "untrusted",
        True,
        "Postfix has no MTA-STS (it needs an external policy server)",
    ),
    "MTA-STS testing, bad certificate (never blocks)": ("dane", "untrusted", True, None),
    "MTA-STS testing is not qualified": ("verify", "untrusted", False, None),
    "dnssec-pkix": ("verify", "verified", True, None),
    "PKIX only, unsigned zone: encrypted": ("encrypt", "trusted", True, None),
    "PKIX only, unsigned zone: not qualified": ("verify", "untrusted", False, None),
    "self-signed, signed zone without TLSA: encrypted": ("encrypt", "untrusted", True, None),
    "self-signed, signed zone without TLSA: not qualified": (
        "dane-only",
        "untrusted",
        False,
        None,
    ),
    "no STARTTLS: opportunistic": ("dane", "no-starttls", True, None),
    "no STARTTLS: not encrypted": ("encrypt", "no-starttls", False, None),
    "secure MX, host in an unsigned zone": ("dane-only", "no-starttls", False, None),
    "TLS 1.0/1.1 only": (
        "dane",
        "handshake-failed",
        True,
        "at an opportunistic level Postfix retries a failed handshake in plaintext; "
        "mxg never sends to the same MX in plaintext after TLS failed (ARCHITECTURE.md rule 1)",
    ),
    "RSA key exchange only": (
        "dane",
        "untrusted",
        True,
        "OpenSSL negotiates AES128-GCM-SHA256 without forward secrecy; rustls has no "
        "RSA key exchange, and mxg does not fall back to plaintext",
    ),
    "bogus zone": ("dane", "dns-failure", False, None),
}


def verdict(output: str) -> str:
    """posttls-finger's result in one word."""
    established = re.search(r"(\w+) TLS connection established", output)
    if established:
        return established.group(1).lower()
    if "SSL_connect error" in output:
        return "handshake-failed"
    if "lookup failed" in output:
        return "dns-failure"
    if "Connected to" in output and "STARTTLS" not in output:
        return "no-starttls"
    return "unknown"


def test_every_scenario_row_has_a_postfix_verdict() -> None:
    assert sorted(POSTFIX) == sorted(r[0] for r in ROWS)


def test_posttls_finger_on_the_scenario_table(
    sinks: dict[str, Sink],
    pkix_certs: dict[str, Path],
    sts_web: PolicyServer,
    dns_server: UnboundServer,
    tmp_path: Path,
) -> None:
    failures = []
    for name, domain, _level, mxg_status, _text in ROWS:
        level, expected, delivers, why = POSTFIX[name]
        out = posttls_finger(tmp_path, SYSTEM_RESOLVER, domain, SINK_PORT, level, pkix_certs["ca"])
        got = verdict(out)
        if got != expected:
            failures.append(f"{name}: posttls-finger -l {level} {domain}: {got}\n{out}")
        disagree = delivers != (mxg_status == "sent")
        if disagree != (why is not None):
            failures.append(f"{name}: Postfix delivers={delivers}, mxg {mxg_status}, why={why!r}")
    assert not failures, "\n".join(failures)
