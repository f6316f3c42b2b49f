"""`mxg evidence` on a real delivery (issue 16 item 1): what the DANE
session proved, found by recipient and by Message-ID, flat in every
format."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

import pytest

from tests.e2e.test_delivery import swaks, wait_for
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e


def test_evidence_of_a_dane_delivery(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(level="qualified")
    r = swaks(mxg.port, "alice@sender.test", ["a@dane.test"])
    assert r.returncode == 0, r.stdout
    wait_for(lambda: sinks["dane"].recipients() == ["a@dane.test"], what="DANE delivery")

    def sent() -> list[dict[str, object]]:
        out = mxg.cli("evidence", "--recipient", "a@dane.test", "--outcome", "sent", "--json")
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    wait_for(lambda: len(sent()) == 1, what="the result stored")
    (rec,) = sent()
    assert (rec["required"], rec["level"], rec["method"]) == ("qualified", "qualified", "dane-ee")
    assert str(rec["tlsa"]).startswith("3 1 1 ")
    assert rec["tls_version"] in ("TLSv1.2", "TLSv1.3") and rec["cipher"]
    assert len(str(rec["peer_cert_sha256"]).split()[0]) == 64
    assert rec["mx_dnssec"] == "secure" and rec["host_dnssec"] == "secure"
    assert rec["host"] and rec["ip"] == "127.0.0.17" and rec["code"] == 250

    by_id = mxg.cli("evidence", "--message-id", str(rec["message_id"]), "--csv")
    (row,) = list(csv.DictReader(io.StringIO(by_id.stdout)))
    assert row["queue_id"] == rec["queue_id"] and row["method"] == "dane-ee"
    table = mxg.cli("evidence", "--domain", "dane.test")
    assert "a@dane.test" in table.stdout and "dane-ee" in table.stdout
    none = mxg.cli("evidence", "--domain", "nowhere.test")
    assert none.returncode == 0 and "no evidence matches" in none.stdout

    # The signed proof of the same delivery, checked with the exported key.
    out = mxg.workdir / "proofs"
    made = mxg.cli("proof", str(rec["queue_id"]), "--out", str(out))
    assert made.returncode == 0, made.stderr
    document = json.loads((out / f"{rec['queue_id']}.proof.json").read_text())
    (r,) = document["recipients"]
    assert (r["method"], r["tlsa_dnssec"], r["status"]) == ("dane-ee", "secure", "sent")
    assert [a["kind"] for a in document["audit"]][:2] == ["received", "result"]
    pub = mxg.workdir / "gateway.pub"
    pub.write_text(mxg.cli("keys", "export").stdout)
    checked = mxg.cli(
        "proof", "verify", str(out / f"{rec['queue_id']}.proof.json"), "--key", str(pub)
    )
    assert checked.returncode == 0 and "proof intact" in checked.stdout, checked.stdout
