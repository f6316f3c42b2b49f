"""Sender decisions without the web: the tokens (forged, expired, wrong
queue, malformed), the choices each class allows and what each does to
the queue index, single use, and rule 8b: secret is never lowered on a
sender's word."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from mxg import proof, proof_html
from mxg.config import Config
from mxg.decide import DecisionRefused, TokenError, TokenKey, decide, offered
from mxg.decide.notice import build_notice, subject_of
from mxg.decide.tokens import KEY_FILE
from mxg.evidence import flatten, rfc3339
from mxg.store import Change, EvidenceQuery, NewMessage, Store, now_ms
from tests.pipeline.fakes import envelope
from tests.support.cli import mxg

KEY = TokenKey(bytes(range(32)))


def _parked(tmp_path: Path, risk: str = "high", n: int = 1, reason: str = "validation-failure"):
    store = Store(tmp_path / "queue.db")
    rcpts = [f"r{i}@plain.test" for i in range(n)]
    store.add_messages([NewMessage(envelope("Q1", rcpts), risk, {}, [risk] * n)])
    store.db.execute("UPDATE recipients SET status='awaiting-sender', reason=?, asked=1", (reason,))
    return store


# -- tokens -------------------------------------------------------------------


def test_a_token_verifies_with_its_key_and_names_its_queue() -> None:
    token, claims = KEY.issue("Q1", now_ms() + 60_000)
    got = KEY.verify(token, now_ms())
    assert got == claims
    assert got.queue_id == "Q1"
    assert len(got.token_id) == 32


def test_a_forged_token_is_refused_403() -> None:
    token, _ = KEY.issue("Q1", now_ms() + 60_000)
    other = TokenKey(bytes(32))
    with pytest.raises(TokenError) as e:
        other.verify(token, now_ms())
    assert e.value.status == 403
    # The payload changed (another queue id), the mac kept: refused too.
    mac = token.partition(".")[2]
    token2, _ = KEY.issue("Q2", now_ms() + 60_000)
    with pytest.raises(TokenError) as e:
        KEY.verify(f"{token2.partition('.')[0]}.{mac}", now_ms())
    assert e.value.status == 403


def test_an_expired_token_is_refused_410() -> None:
    token, _ = KEY.issue("Q1", now_ms() - 1)
    with pytest.raises(TokenError) as e:
        KEY.verify(token, now_ms())
    assert e.value.status == 410


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x",
        "a.b",
        "A" * 40 + "." + "B" * 42,
        "A" * 400,
        "é" * 50 + "." + "B" * 43,
        "A" * 41 + "." + "B" * 43,
        "AAAA.BBBB.CCCC",
        "../../etc/passwd",
    ],
)
def test_a_malformed_token_is_refused_400(token: str) -> None:
    with pytest.raises(TokenError) as e:
        KEY.verify(token, now_ms())
    assert e.value.status in (400, 403)


def test_the_csrf_value_is_bound_to_token_and_cookie() -> None:
    value = KEY.csrf("ab" * 16, "cookie1")
    assert KEY.csrf_ok("ab" * 16, "cookie1", value)
    assert not KEY.csrf_ok("cd" * 16, "cookie1", value)
    assert not KEY.csrf_ok("ab" * 16, "cookie2", value)
    assert not KEY.csrf_ok("ab" * 16, "", value)


def test_the_key_is_made_once_private_and_never_through_a_link(tmp_path: Path) -> None:
    k1 = TokenKey.load_or_create(tmp_path)
    assert os.stat(tmp_path / KEY_FILE).st_mode & 0o777 == 0o600
    token, _ = k1.issue("Q1", now_ms() + 1000)
    assert TokenKey.load_or_create(tmp_path).verify(token, now_ms()).queue_id == "Q1"
    other = tmp_path / "other"
    other.mkdir()
    (other / KEY_FILE).symlink_to(tmp_path / KEY_FILE)
    with pytest.raises(Exception, match="cannot read the decision key"):
        TokenKey.load_or_create(other)


# -- choices --------------------------------------------------------------------


def test_high_offers_every_choice_and_secret_never_normal_risk(tmp_path: Path) -> None:
    store = _parked(tmp_path)
    assert offered(Config(), store.awaiting("Q1")) == ["keep", "normal", "envelope", "cancel"]
    cfg = Config.model_validate({"classes": {"high": {"allow_envelope": False}}})
    assert offered(cfg, store.awaiting("Q1")) == ["keep", "normal", "cancel"]
    secret = _parked(tmp_path / "s", risk="secret")
    assert offered(Config(), secret.awaiting("Q1")) == ["keep", "envelope", "cancel"]
    e2e = _parked(tmp_path / "e", risk="secret", reason="e2e-required")
    assert offered(Config(), e2e.awaiting("Q1")) == ["envelope", "cancel"]


def test_confirming_normal_risk_sends_at_class_normals_level_and_is_recorded(
    tmp_path: Path,
) -> None:
    store = _parked(tmp_path, n=2)
    cfg = Config()
    _, claims = KEY.issue("Q1", now_ms() + 60_000)
    store.mark_asked("Q1", [0, 1], claims.token_id, claims.expires_ms)
    done = decide(
        store,
        cfg,
        "Q1",
        [0, 1],
        "normal",
        actor="sender",
        client="192.0.2.7",
        token_id=claims.token_id,
    )
    assert done.recipients == [0, 1]
    rows = store.recipients("Q1")
    assert {(r["status"], r["override_level"], r["decision"]) for r in rows} == {
        ("pending", "encrypted", "normal")
    }
    event = store.details("Q1")["events"][-1]
    assert event["action"] == "decision"
    assert "confirmed=the content carries only normal risk" in event["detail"]
    assert "client=192.0.2.7" in event["detail"]
    audit = [r for r in store.audit_records() if r.kind == "decision"]
    data = json.loads(audit[-1].data)
    assert data["token"] == claims.token_id
    assert data["client"] == "192.0.2.7"
    assert data["level"] == "encrypted"


def test_evidence_and_proof_show_the_decision_when_by_whom_link_and_client(
    tmp_path: Path,
) -> None:
    store = _parked(tmp_path, n=2)
    cfg = Config()
    _, claims = KEY.issue("Q1", now_ms() + 60_000)
    store.mark_asked("Q1", [0, 1], claims.token_id, claims.expires_ms)
    before = now_ms()
    decide(store, cfg, "Q1", [0], "envelope", actor="sender", client="192.0.2.7",
           token_id=claims.token_id, carrier=b"C")  # fmt: skip
    decide(store, cfg, "Q1", [1], "cancel", actor="alice", reason="asked by phone")
    first, second = (flatten(r, cfg) for r in store.evidence(EvidenceQuery(queue_id="Q1")))
    assert (first["status"], first["decision"], first["decided_by"]) == (
        "deleted",
        "envelope",
        "sender",
    )
    assert first["decision_token"] == claims.token_id
    assert first["decision_client"] == "192.0.2.7"
    assert first["decided"] >= rfc3339(before)
    assert (second["decision"], second["decided_by"], second["decision_token"]) == (
        "cancel",
        "alice",
        "",
    )
    doc = proof.build(store, cfg, "Q1")
    assert doc is not None
    assert doc["recipients"][0]["decision_token"] == claims.token_id
    assert "Decided from address" in proof_html.render(doc)
    assert "192.0.2.7" in proof_html.render(doc)


def test_a_used_token_changes_nothing_and_returns_the_recorded_decision(tmp_path: Path) -> None:
    store = _parked(tmp_path)
    _, claims = KEY.issue("Q1", now_ms() + 60_000)
    store.mark_asked("Q1", [0], claims.token_id, claims.expires_ms)
    first = decide(store, Config(), "Q1", [0], "keep", actor="sender", token_id=claims.token_id)
    assert not first.already
    store.db.execute("UPDATE recipients SET status='awaiting-sender'")
    before = [dict(r) for r in store.recipients("Q1")]
    again = store.decide(
        "Q1",
        [0],
        "cancel",
        Change("deleted"),
        actor="sender",
        token_id=claims.token_id,
        client="x",
        detail={},
    )
    assert again.already
    assert again.choice == "keep"
    assert [dict(r) for r in store.recipients("Q1")] == before


@pytest.mark.parametrize(("dsn", "status"), [(True, "bounced"), (False, "deleted")])
def test_cancel_finishes_the_recipients_with_or_without_a_dsn(
    tmp_path: Path, dsn: bool, status: str
) -> None:
    store = _parked(tmp_path)
    decide(store, Config(), "Q1", [0], "cancel", actor="sender", token_id=None, dsn=dsn)
    row = store.recipients("Q1")[0]
    assert (row["status"], row["dsn_sent"]) == (status, 0)
    assert store.dsn_pending() == (["Q1"] if dsn else [])
    assert store.finished() == ([] if dsn else ["Q1"])


def test_keep_makes_the_recipient_due_again(tmp_path: Path) -> None:
    store = _parked(tmp_path)
    decide(store, Config(), "Q1", [0], "keep", actor="op")
    assert store.recipients("Q1")[0]["status"] == "deferred"
    assert [d.queue_id for d in store.due(now_ms() + 1)] == ["Q1"]


def test_nothing_parked_is_refused(tmp_path: Path) -> None:
    store = _parked(tmp_path)
    store.db.execute("UPDATE recipients SET status='sent'")
    with pytest.raises(DecisionRefused, match="waits for a decision"):
        decide(store, Config(), "Q1", [0], "keep", actor="op")


# -- rule 8b --------------------------------------------------------------------


def test_rule8b_secret_cannot_be_configured_to_allow_normal_risk() -> None:
    with pytest.raises(ValidationError, match="allow_normal_risk cannot be true for class secret"):
        Config.model_validate({"classes": {"secret": {"allow_normal_risk": True}}})


def test_rule8b_secret_is_never_offered_or_accepted_at_normal_risk_from_a_link(
    tmp_path: Path,
) -> None:
    store = _parked(tmp_path, risk="secret", reason="validation-failure")
    assert "normal" not in offered(Config(), store.awaiting("Q1"))
    with pytest.raises(DecisionRefused) as e:
        decide(
            store,
            Config(),
            "Q1",
            [0],
            "normal",
            actor="sender",
            token_id="ab" * 16,
            force=True,
            reason="x",
        )
    assert e.value.status == 403
    assert store.recipients("Q1")[0]["status"] == "awaiting-sender"


def test_rule8b_an_operator_lowers_secret_only_with_force_and_a_recorded_reason(
    tmp_path: Path,
) -> None:
    store = _parked(tmp_path, risk="secret")
    with pytest.raises(DecisionRefused, match="--force"):
        decide(store, Config(), "Q1", [0], "normal", actor="op")
    with pytest.raises(DecisionRefused, match="needs a --reason"):
        decide(store, Config(), "Q1", [0], "normal", actor="op", force=True)
    assert store.recipients("Q1")[0]["status"] == "awaiting-sender"
    decide(store, Config(), "Q1", [0], "normal", actor="op", force=True, reason="ticket 7")
    assert store.recipients("Q1")[0]["override_level"] == "encrypted"
    detail = store.details("Q1")["events"][-1]["detail"]
    assert "forced=True" in detail and "reason=ticket 7" in detail


# -- mxg decide -------------------------------------------------------------------


def test_mxg_decide_takes_the_same_decisions_and_lowers_secret_only_with_force(
    tmp_path: Path,
) -> None:
    store = _parked(tmp_path / "data", risk="secret")
    store.close()
    config = tmp_path / "mxg.toml"
    config.write_text(f'[data]\ndirectory = "{tmp_path / "data"}"\n')
    refused = mxg(config, "decide", "Q1", "--recipient", "r0@plain.test", "--choice", "normal")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "never sent at class normal's level without --force and --reason" in refused.stderr
    unknown = mxg(config, "decide", "Q1", "--recipient", "x@plain.test", "--choice", "keep")
    assert unknown.returncode == 1
    assert "no recipient x@plain.test waits for a decision" in unknown.stderr
    forced = mxg(
        config,
        "decide",
        "Q1",
        "--recipient",
        "r0@PLAIN.test",
        "--choice",
        "normal",
        "--force",
        "--reason",
        "phoned the DPO",
    )
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == "Q1: r0@PLAIN.test: normal at level encrypted\n"
    store = Store(tmp_path / "data" / "queue.db")
    event = store.details("Q1")["events"][-1]
    assert event["action"] == "decision"
    assert "reason=phoned the DPO" in event["detail"] and "client=cli" in event["detail"]
    again = mxg(config, "decide", "Q1", "--recipient", "r0@plain.test", "--choice", "keep")
    assert again.returncode == 1


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mail-gw.example.org", "is not an http(s) URL"),
        ("ftp://mail-gw.example.org", "is not an http(s) URL"),
        ("https://mail-gw.example.org/?next=x", "is not an http(s) URL"),
        ("https://mail-gw.example.org/#x", "is not an http(s) URL"),
    ],
)
def test_a_public_url_that_links_cannot_carry_is_refused_at_load(url: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        Config.model_validate({"web": {"public_url": url}})


def test_the_public_url_loses_its_trailing_slash() -> None:
    cfg = Config.model_validate({"web": {"public_url": "https://intra.example.org/mxg/"}})
    assert cfg.web.public_url == "https://intra.example.org/mxg"


def test_the_notice_subject_carries_no_control_character() -> None:
    """RFC 5322 allows none in a header field: a NUL or an escape in the
    original's Subject, raw or encoded, becomes a space in the notice's."""
    for raw in (b"Befund\x00 7\x1b[31m\x7f", b"=?utf-8?q?Befund=00_7=1B[31m=7F?="):
        subject = subject_of(b"From: a@b.test\r\nSubject: " + raw + b"\r\n\r\nbody\r\n")
        assert subject == "Befund 7 [31m"
        notice = build_notice(
            Config(),
            {"received_ms": 0, "queue_id": "1D9790B850400000", "sender": "a@b.test"},
            [{"address": "x@plain.test", "reason": "validation-failure"}],
            subject=subject,
            link=None,
            expires_ms=0,
            choices=["keep", "cancel"],
        )
        assert not any((c < 32 and c not in (9, 10, 13)) or c == 127 for c in notice)
