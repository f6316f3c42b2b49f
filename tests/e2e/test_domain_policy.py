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
