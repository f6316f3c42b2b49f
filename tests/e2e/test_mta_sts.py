"""MTA-STS (RFC 8461) end to end: policies over HTTPS from a policy host,
enforce and testing modes, MX matching."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_dane import line_for
from tests.e2e.test_delivery import swaks, wait_for
from tests.e2e.test_dnssec import evidence_of
from tests.support.https import PolicyServer
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e


def test_enforce_policy_authenticates_restricts_and_blocks(
    make_mxg: Callable[..., MxgProcess],
    sinks: dict[str, Sink],
    pkix_certs: dict[str, Path],
    sts_web: PolicyServer,
) -> None:
    # Even mail that asks only for opportunistic TLS obeys an enforce policy.
    mxg = make_mxg(level="opportunistic", env={"MXG_DELIVERY__CA_FILE": f'"{pkix_certs["ca"]}"'})
    r = swaks(
        mxg.port,
        "alice@sender.test",
        ["a@sts.test", "b@stsbad.test", "c@stsnomatch.test", "d@ststesting.test"],
    )
    assert r.returncode == 0, r.stdout
    wait_for(lambda: sinks["sts"].recipients() == ["a@sts.test"], what="MTA-STS delivery")
    ev = evidence_of(mxg, "a@sts.test")
    assert ev["method"] == "mta-sts" and ev["mta_sts"] == "enforce id=1"
    # Opportunistic mail offers every cipher, so the session may fall
    # outside the parameter profile; the authentication is recorded anyway.
    assert "method=mta-sts" in line_for(mxg, "a@sts.test")
    wait_for(
        lambda: all(
            f"to=<{x}>" in mxg.log_text()
            for x in ("b@stsbad.test", "c@stsnomatch.test", "d@ststesting.test")
        ),
        what="the other attempts",
    )
    bad = line_for(mxg, "b@stsbad.test")  # certificate for another name
    assert "status=deferred" in bad and "certificate-host-mismatch" in bad
    nomatch = line_for(mxg, "c@stsnomatch.test")
    assert "status=deferred" in nomatch and "matches none of its MX hosts" in nomatch
    # testing never blocks: delivered although the certificate is wrong.
    wait_for(
        lambda: "d@ststesting.test" in sinks["pkixwrong"].recipients(), what="testing-mode delivery"
    )
    assert sinks["pkixwrong"].recipients() == ["d@ststesting.test"]
    assert "mta-sts.sts.test/.well-known/mta-sts.txt" in sts_web.requests


def test_enforce_policy_meets_the_qualified_level(
    make_mxg: Callable[..., MxgProcess],
    sinks: dict[str, Sink],
    pkix_certs: dict[str, Path],
    sts_web: PolicyServer,
) -> None:
    mxg = make_mxg(level="qualified", env={"MXG_DELIVERY__CA_FILE": f'"{pkix_certs["ca"]}"'})
    swaks(mxg.port, "alice@sender.test", ["q@sts.test", "t@ststesting.test"])
    wait_for(lambda: sinks["sts"].recipients() == ["q@sts.test"], what="qualified delivery")
    assert "level=qualified" in line_for(mxg, "q@sts.test")
    # A testing policy authenticates nothing: qualified mail is not sent.
    wait_for(lambda: "to=<t@ststesting.test>" in mxg.log_text(), what="testing attempt")
    assert "status=deferred" in line_for(mxg, "t@ststesting.test")
    assert sinks["pkixwrong"].mail_attempts == []
