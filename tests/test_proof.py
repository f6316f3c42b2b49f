"""Signed per-message proof (issue 16 item 2): built from the store,
signed with the gateway's key, verified offline; every field changed,
added or removed after signing is named."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mxg import proof, proof_html
from mxg.config import load_config
from mxg.signing import SigningKey, public_pem
from mxg.store import Store
from tests.support.cli import mxg
from tests.test_evidence import dane_sent, deferred, message


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "queue.db")
    s.add_messages([message("A1", 86_400_000, "alice@sender.test", ["x@dane.test"], "high")])
    s.record([deferred("A1", 0, "<script>alert(1)</script>", 99, host="mx.dane.test")])
    s.hold("A1", "alice (sudo)", "check the attachment")
    s.release("A1", "alice (sudo)", "fine")
    s.record([dane_sent("A1", 0)])
    return s


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path)


def signed(store: Store, key: SigningKey) -> dict[str, Any]:
    document = proof.build(store, load_config(None, environ={}), "A1")
    assert document is not None
    return proof.sign(document, key)


def test_a_proof_holds_what_the_dpo_needs(store: Store, key: SigningKey) -> None:
    doc = signed(store, key)
    assert doc["format"] == "mxg-proof/1"
    assert doc["message"]["class"] == "high" and doc["message"]["message_id"] == "<A1@sender.test>"
    (r,) = doc["recipients"]
    assert (r["required"], r["level"], r["method"], r["status"]) == (
        "qualified",
        "qualified",
        "dane-ee",
        "sent",
    )
    assert r["peer_cert_sha256"] == ["aa" * 32, "bb" * 32]
    assert r["tlsa"].startswith("3 1 1 ") and r["mx_dnssec"] == "secure"
    assert r["reply"] == "Ok queued as 7" and r["code"] == 250
    assert [a["status"] for a in r["attempts"]] == ["deferred", "sent"]
    assert [(e["actor"], e["action"]) for e in doc["operator_actions"]] == [
        ("alice (sudo)", "hold"),
        ("alice (sudo)", "release"),
    ]
    assert [a["kind"] for a in doc["audit"]] == [
        "received",
        "result",
        "hold",
        "release",
        "result",
        "done",
    ]
    assert proof.verify(doc, key.verifier()).ok


def test_every_changed_added_or_removed_field_is_named(store: Store, key: SigningKey) -> None:
    doc = signed(store, key)
    forged = copy.deepcopy(doc)
    forged["recipients"][0]["method"] = "pkix"
    forged["recipients"][0]["tls_version"] = "TLSv1.2"
    forged["recipients"][0]["note"] = "added later"
    del forged["operator_actions"][1]
    check = proof.verify(forged, key.verifier())
    assert check.signature_ok and not check.ok
    assert sorted(check.changed) == ["/recipients/0/method", "/recipients/0/tls_version"]
    assert check.added == ["/recipients/0/note"]
    assert sorted(check.removed) == [
        "/operator_actions/1/action",
        "/operator_actions/1/actor",
        "/operator_actions/1/at",
        "/operator_actions/1/detail",
    ]


def test_a_forged_manifest_or_another_key_is_refused(
    store: Store, key: SigningKey, tmp_path: Path
) -> None:
    doc = signed(store, key)
    forged = copy.deepcopy(doc)
    forged["recipients"][0]["level"] = "encrypted"
    path = "/recipients/0/level"
    forged["manifest"]["fields"][path] = proof._digest("encrypted")
    check = proof.verify(forged, key.verifier())
    assert not check.ok and "signature does not match" in check.problem
    (tmp_path / "other").mkdir()
    other = SigningKey.load_or_create(tmp_path / "other")
    check = proof.verify(doc, other.verifier())
    assert not check.ok and "signed by key" in check.problem
    assert not proof.verify({"format": "x"}, key.verifier()).ok


def test_the_page_escapes_what_servers_said_and_loads_nothing(
    store: Store, key: SigningKey
) -> None:
    page = proof_html.render(signed(store, key))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "default-src 'none'" in page
    assert "dane-ee" in page and "A1.proof.json" in page


def test_mxg_proof_writes_and_verifies_files(store: Store, key: SigningKey, tmp_path: Path) -> None:
    conf = tmp_path / "mxg.toml"
    conf.write_text(f'[data]\ndirectory = "{tmp_path}"\n')
    out = tmp_path / "proofs"

    made = mxg(conf, "proof", "<A1@sender.test>", "--out", str(out))
    assert made.returncode == 0, made.stderr
    document = out / "A1.proof.json"
    assert document.exists() and (out / "A1.proof.html").exists()
    pub = tmp_path / "gateway.pub"
    pub.write_bytes(public_pem(key.public))
    ok = mxg(conf, "proof", "verify", str(document), "--key", str(pub))
    assert ok.returncode == 0 and "proof intact" in ok.stdout
    doc = json.loads(document.read_text())
    doc["recipients"][0]["level"] = "qualified-ish"
    document.write_text(json.dumps(doc))
    altered = mxg(conf, "proof", "verify", str(document), "--key", str(pub))
    assert altered.returncode == 3
    assert "changed: /recipients/0/level" in altered.stdout
    missing = mxg(conf, "proof", "nosuchid")
    assert missing.returncode == 1 and "no message" in missing.stderr
