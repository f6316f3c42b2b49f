"""Per-domain policy from the configuration: minimum level, methods,
operator pins (method ``pinned``) and MX restrictions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_dane import line_for
from tests.e2e.test_delivery import swaks, wait_for
from tests.e2e.test_dnssec import evidence_of
from tests.support.certs import spki_sha256
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e


def test_domain_policies(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], dane_cert: tuple[Path, Path]
) -> None:
    pin = f"spki-sha256:{spki_sha256(dane_cert[0])}"
    mxg = make_mxg(
        extra=f"""
[[policy]]
domain = "notlsa.test"
min_level = "qualified"
methods = ["pinned"]
pins = ["{pin}"]

[[policy]]
domain = "pkixplain.test"
pins = ["{pin}"]

[[policy]]
domain = "good.test"
mx = ["mx9.good.test"]

[[policy]]
domain = "implicit.test"
min_level = "encrypted"
"""
    )
    r = swaks(
        mxg.port,
        "alice@sender.test",
        ["a@notlsa.test", "b@pkixplain.test", "c@good.test", "d@implicit.test"],
    )
    assert r.returncode == 0, r.stdout
    wait_for(lambda: sinks["dane"].recipients() == ["a@notlsa.test"], what="pinned delivery")
    assert evidence_of(mxg, "a@notlsa.test")["method"] == "pinned"
    assert "level=qualified" in line_for(mxg, "a@notlsa.test")
    wait_for(
        lambda: all(
            f"to=<{x}>" in mxg.log_text()
            for x in ("b@pkixplain.test", "c@good.test", "d@implicit.test")
        ),
        what="the other attempts",
    )
    wrong_pin = line_for(mxg, "b@pkixplain.test")
    assert "status=deferred" in wrong_pin and "no operator pin matched" in wrong_pin
    restricted = line_for(mxg, "c@good.test")
    assert "status=deferred" in restricted and "allows only MX mx9.good.test" in restricted
    raised = line_for(mxg, "d@implicit.test")
    assert "status=deferred" in raised and "starttls-not-supported" in raised
    for name in ("pkix", "good1", "good2", "implicit"):
        assert sinks[name].mail_attempts == []


def test_private_ca_pin(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], pkix_certs: dict[str, Path]
) -> None:
    """A pinned private CA (``ca_file``) with the names its certificates
    may carry: pkixplain.test's MX presents a certificate of the test CA for
    mx.pkix.test; pkixwrong.test's one for other.example (names default to
    the MX host name, so it must fail)."""
    ca = pkix_certs["ca"]
    mxg = make_mxg(
        extra=f"""
[[policy]]
domain = "pkixplain.test"
min_level = "qualified"
methods = ["pinned"]
ca_file = "{ca}"
cert_names = ["mx.pkix.test"]

[[policy]]
domain = "pkixwrong.test"
min_level = "qualified"
methods = ["pinned"]
ca_file = "{ca}"
"""
    )
    r = swaks(mxg.port, "alice@sender.test", ["a@pkixplain.test", "b@pkixwrong.test"])
    assert r.returncode == 0, r.stdout
    wait_for(lambda: sinks["pkix"].recipients() == ["a@pkixplain.test"], what="CA-pinned delivery")
    assert evidence_of(mxg, "a@pkixplain.test")["method"] == "pinned"
    assert "level=qualified" in line_for(mxg, "a@pkixplain.test")
    wait_for(lambda: "to=<b@pkixwrong.test>" in mxg.log_text(), what="attempt on pkixwrong.test")
    wrong = line_for(mxg, "b@pkixwrong.test")
    assert "status=deferred" in wrong and "no operator pin matched" in wrong
    assert "certificate-host-mismatch" in wrong or "not valid for mx.pkixwrong.test" in wrong
    assert sinks["pkixwrong"].mail_attempts == []
