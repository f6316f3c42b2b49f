"""``mxg check`` against the test world: the operator's "which partners can
receive qualified mail" report. It must never send MAIL FROM."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_scenarios import ROWS
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e


def test_check_reports_levels_and_exit_codes(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], tmp_path: Path
) -> None:
    mxg = make_mxg(start=False)
    # 0 reaches --require (qualified by default), 3 only below it, 4 not
    # resolvable: never 1 or 2, which mean an error or bad usage.
    expect = {"dane.test": 0, "notlsa.test": 3, "good.test": 3, "nullmx.test": 4}
    for domain, code in expect.items():
        r = mxg.cli("check", domain)
        assert r.returncode == code, (domain, r.stdout, r.stderr)
    assert mxg.cli("check", "notlsa.test", "--require", "encrypted").returncode == 0
    assert mxg.cli("check", "good.test", "--require", "opportunistic").returncode == 3
    assert mxg.cli("check", "good.test", "--require", "none").returncode == 0
    usage = mxg.cli("check", "good.test", "--require", "strong")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    r = mxg.cli("check", "dane.test", "--json")
    [report] = json.loads(r.stdout)
    assert report["best_level"] == "qualified"
    assert report["mx_dnssec"] == "secure"
    [host] = report["hosts"]
    assert host["host"] == "mx.dane.test" and host["address"] == "127.0.0.17"
    assert host["method"] == "dane-ee" and host["tlsa"][0].startswith("3 1 1 ")
    assert host["tls_version"].startswith("TLSv1.") and host["group"]
    assert "CN=unrelated.example" in host["cert_subject"] and host["cert_expires"]
    bad = json.loads(mxg.cli("check", "danebad.test", "--json").stdout)[0]
    assert bad["best_level"] == "none" and "tlsa-invalid" in bad["hosts"][0]["error"]
    text = mxg.cli("check", "good.test").stdout
    assert "good.test: best level none" in text and "mx1.good.test [127.0.0.11]" in text
    # Many domains from a file, as CSV; the exit status is the weakest one's.
    listing = tmp_path / "partners.txt"
    listing.write_text("# partners\ndane.test\nnotlsa.test\ngood.test  # plain\nnullmx.test\n")
    out = tmp_path / "report.csv"
    r = mxg.cli("check", "--file", str(listing), "--csv", "--out", str(out))
    assert r.returncode == 4
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    best = {row["domain"]: row["best_level"] for row in rows}
    assert best == {
        "dane.test": "qualified",
        "notlsa.test": "encrypted",
        "good.test": "none",
        "nullmx.test": "none",
    }
    assert any("null MX" in row["error"] for row in rows)
    # Probing never starts a mail transaction.
    assert all(not s.mail_attempts for s in sinks.values())


def test_check_reports_mta_sts(
    make_mxg: Callable[..., MxgProcess],
    sinks: dict[str, Sink],
    pkix_certs: dict[str, Path],
    sts_web: object,
) -> None:
    mxg = make_mxg(start=False, env={"MXG_DELIVERY__CA_FILE": f'"{pkix_certs["ca"]}"'})
    r = mxg.cli("check", "sts.test", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    [report] = json.loads(r.stdout)
    assert report["mta_sts"] == "enforce id=1 mx=mx.sts.test"
    assert report["hosts"][0]["method"] == "mta-sts"
    assert sinks["sts"].mail_attempts == []


def test_check_lists_mx_hosts_an_enforce_policy_excludes(
    make_mxg: Callable[..., MxgProcess],
    sinks: dict[str, Sink],
    pkix_certs: dict[str, Path],
    sts_web: object,
) -> None:
    mxg = make_mxg(start=False, env={"MXG_DELIVERY__CA_FILE": f'"{pkix_certs["ca"]}"'})
    r = mxg.cli("check", "stsnomatch.test", "--json")
    [report] = json.loads(r.stdout)
    assert report["best_level"] == "none" and r.returncode == 3, r.stdout + r.stderr
    [host] = report["hosts"]
    assert host["host"] == "mx.stsnomatch.test" and host["address"] == "127.0.0.21"
    assert host["error"] == (
        "excluded: the MTA-STS enforce policy allows only mx mail.elsewhere.test"
    )
    text = mxg.cli("check", "stsnomatch.test").stdout
    assert "excluded: the MTA-STS enforce policy" in text
    assert sinks["sts"].mail_attempts == []


# What `mxg check` must say of every domain of the scenario table
# (tests/e2e/test_scenarios.py): the best level any MX host reaches.
WORLD_BEST = {
    "dane.test": "qualified",
    "daneexpired.test": "qualified",
    "danetwo.test": "qualified",
    "daneta.test": "qualified",
    "danecname.test": "qualified",
    "danecname2.test": "qualified",
    "danetawrong.test": "none",
    "danebad.test": "none",
    "danenotls.test": "none",
    "sts.test": "qualified",
    "stsbad.test": "none",
    "stsnomatch.test": "none",
    "stsself.test": "none",
    "ststesting.test": "encrypted",
    "pkix.test": "qualified",
    "pkixplain.test": "encrypted",
    "notlsa.test": "encrypted",
    "good.test": "none",
    "mixed.test": "none",
    "tls10.test": "none",
    "rsakx.test": "none",
    "bogus.test": "none",
}


def test_check_file_over_the_scenario_world(
    make_mxg: Callable[..., MxgProcess],
    sinks: dict[str, Sink],
    pkix_certs: dict[str, Path],
    sts_web: object,
    tmp_path: Path,
) -> None:
    """The operator's partner report over every scenario domain agrees with
    what delivery achieves; ``MXG_CHECK_REPORT=path`` keeps the CSV."""
    assert set(WORLD_BEST) == {r[1] for r in ROWS}
    mxg = make_mxg(start=False, env={"MXG_DELIVERY__CA_FILE": f'"{pkix_certs["ca"]}"'})
    listing = tmp_path / "world.txt"
    listing.write_text("\n".join(WORLD_BEST) + "\n")
    out = Path(os.environ.get("MXG_CHECK_REPORT", tmp_path / "world.csv"))
    r = mxg.cli("check", "--file", str(listing), "--csv", "--out", str(out))
    assert r.returncode == 4, r.stderr  # bogus.test cannot be resolved
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    best = {row["domain"]: row["best_level"] for row in rows}
    assert best == WORLD_BEST
    assert all(not s.mail_attempts for s in sinks.values())
