"""on_unmet = "ask-sender": a recipient that settles as unable to get its
level is parked and the sender gets one bilingual notice with a link;
the other recipients go on; nothing is asked twice; a parked recipient
bounces at the message's lifetime."""

from __future__ import annotations

import email
from email.policy import default
from pathlib import Path
from typing import Any

from mxg.boundary import DeliveryDone, RecipientResult
from mxg.config import Config
from mxg.decide import TokenKey, decide
from mxg.pipeline.asking import no_link_warning
from mxg.pipeline.plan import JobInfo
from mxg.store import NewMessage, now_ms
from tests.pipeline.fakes import envelope, serving, stages

WEB = '[web]\nlisten = ["127.0.0.1:1"]\npublic_url = "https://gw.example/mxg/"\n'
SUBJECT = b"From: a@internal.test\r\nSubject: Befund =?utf-8?q?M=C3=BCller?=\r\n\r\nsecret body\r\n"


def _stages(tmp_path: Path, toml: str = WEB) -> tuple[Any, Any]:
    st, engine = stages(tmp_path, toml)
    st.ctx.tokens = TokenKey(bytes(range(32)))
    return st, engine


def _job(st: Any, engine: Any, qid: str, addresses: list[str], attempts: int = 1) -> JobInfo:
    env = envelope(qid, addresses)
    st.ctx.store.add_messages([NewMessage(env, "high", {}, ["high"] * len(addresses))])
    engine.spool[qid] = (env, SUBJECT)
    info = JobInfo(qid, "plain.test", "sender@internal.test", None, received_ms=now_ms())
    info.indexes = {a: [i] for i, a in enumerate(addresses)}
    info.attempts = dict.fromkeys(range(len(addresses)), attempts)
    info.classes = dict.fromkeys(range(len(addresses)), "high")
    info.level = "qualified"
    return info


def _result(address: str, reason: str | None, status: str = "deferred") -> RecipientResult:
    return RecipientResult(
        address=address,
        status=status,
        code=None if status != "sent" else 250,
        enhanced="4.7.5" if status != "sent" else "2.0.0",
        text="mx.plain.test[127.0.0.2]: required transport level qualified not met",
        host="mx.plain.test",
        ip="127.0.0.2",
        level="encrypted" if status != "sent" else "qualified",
        unmet=status != "sent",
        reason=reason,
    )


def _deliver(st: Any, info: JobInfo, results: list[RecipientResult]) -> None:
    async def body() -> None:
        done = DeliveryDone(0, info.queue_id, info.domain, results, [], 0, 0)
        await st.outcomes.results([(info, done)])

    serving(st, body)


def _notice(engine: Any, n: int = 0) -> email.message.EmailMessage:
    msg = email.message_from_bytes(engine.injected[n][1], policy=default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def test_no_authentication_method_parks_at_once_and_asks_once_in_both_languages(
    tmp_path: Path,
) -> None:
    st, engine = _stages(tmp_path)
    info = _job(st, engine, "Q1", ["a@plain.test", "b@plain.test", "c@plain.test"])
    _deliver(
        st,
        info,
        [
            _result("a@plain.test", "validation-failure"),
            _result("b@plain.test", "starttls-not-supported"),
            _result("c@plain.test", None, status="sent"),
        ],
    )
    rows = st.ctx.store.recipients("Q1")
    assert [r["status"] for r in rows] == ["awaiting-sender", "awaiting-sender", "sent"]
    assert len(engine.injected) == 1, "one notice for the recipients that settled together"
    env, _ = engine.injected[0]
    assert env.sender == ""
    assert [r.address for r in env.recipients] == ["sender@internal.test"]
    notice = _notice(engine)
    assert "Befund Müller" in str(notice["Subject"])
    assert notice["Auto-Submitted"] == "auto-generated"
    text = notice.get_content()
    assert "a@plain.test" in text and "b@plain.test" in text
    assert "c@plain.test" not in text
    assert "keine Verschlüsselung" in text and "does not offer encryption" in text
    assert "nachweisen" in text and "no way to prove" in text
    assert "https://gw.example/mxg/decide/" in text
    assert "secret body" not in text
    # The link's token is in the store, for exactly these recipients.
    token = text.split("https://gw.example/mxg/decide/", 1)[1].split()[0]
    claims = st.ctx.tokens.verify(token, now_ms())
    assert claims.queue_id == "Q1"
    assert st.ctx.store.token(claims.token_id)["recipients"] == "[0,1]"


DELIVERED_DE = "An die übrigen Empfänger wurde sie wie gewohnt zugestellt."
DELIVERED_EN = "It was delivered to the other recipients as usual."
GOES_ON_DE = "Für die übrigen Empfänger geht die Zustellung wie gewohnt weiter."
GOES_ON_EN = "For the other recipients, delivery goes on as usual."


def _words(engine: Any) -> str:
    return " ".join(_notice(engine).get_content().split())


def test_a_one_recipient_notice_speaks_of_no_other_recipients(tmp_path: Path) -> None:
    st, engine = _stages(tmp_path)
    info = _job(st, engine, "Q1", ["a@plain.test"])
    _deliver(st, info, [_result("a@plain.test", "validation-failure")])
    text = _words(engine)
    assert "Die Nachricht wartet, bis Sie entscheiden, wie es weitergeht." in text
    assert "The message waits for your decision." in text
    assert "übrigen" not in text and "other recipients" not in text


def test_a_mixed_notice_says_delivered_only_when_the_others_were(tmp_path: Path) -> None:
    st, engine = _stages(tmp_path)
    info = _job(st, engine, "Q1", ["a@plain.test", "c@plain.test"])
    _deliver(
        st,
        info,
        [
            _result("a@plain.test", "validation-failure"),
            _result("c@plain.test", None, status="sent"),
        ],
    )
    text = _words(engine)
    assert DELIVERED_DE in text and DELIVERED_EN in text
    assert GOES_ON_DE not in text and GOES_ON_EN not in text

    # The other recipient is still on its way (another domain's job).
    st, engine = _stages(tmp_path / "waiting")
    info = _job(st, engine, "Q2", ["a@plain.test", "c@later.test"])
    info.indexes, info.attempts, info.classes = {"a@plain.test": [0]}, {0: 1}, {0: "high"}
    _deliver(st, info, [_result("a@plain.test", "validation-failure")])
    text = _words(engine)
    assert GOES_ON_DE in text and GOES_ON_EN in text
    assert "zugestellt" not in text and "delivered" not in text


def test_repeated_failures_and_scans_never_send_a_second_notice(tmp_path: Path) -> None:
    st, engine = _stages(tmp_path)
    info = _job(st, engine, "Q1", ["a@plain.test"])
    _deliver(st, info, [_result("a@plain.test", "validation-failure")])
    assert len(engine.injected) == 1

    async def scans() -> None:
        for _ in range(3):
            await st.notices.ask_pending()
            await st.notices.ask_sender("Q1")

    serving(st, scans)
    assert len(engine.injected) == 1


def test_a_reason_that_may_be_fixed_waits_for_the_classes_attempts(tmp_path: Path) -> None:
    st, engine = _stages(tmp_path, WEB + "[classes.high]\nask_after_attempts = 2\n")
    info = _job(st, engine, "Q1", ["a@plain.test"])
    _deliver(st, info, [_result("a@plain.test", "certificate-expired")])
    assert st.ctx.store.recipients("Q1")[0]["status"] == "deferred"
    assert engine.injected == []
    info.attempts = {0: 2}
    info.indexes = {"a@plain.test": [0]}
    _deliver(st, info, [_result("a@plain.test", "certificate-expired")])
    assert st.ctx.store.recipients("Q1")[0]["status"] == "awaiting-sender"
    assert "Zertifikat" in _notice(engine).get_content()


def test_a_recipient_the_sender_decided_about_is_never_asked_again(tmp_path: Path) -> None:
    st, engine = _stages(tmp_path)
    info = _job(st, engine, "Q1", ["a@plain.test"])
    info.decisions = {0: "keep"}
    _deliver(st, info, [_result("a@plain.test", "validation-failure")])
    assert st.ctx.store.recipients("Q1")[0]["status"] == "deferred"
    assert engine.injected == []


def test_without_a_public_url_the_notice_names_the_queue_id_and_no_link(tmp_path: Path) -> None:
    st, engine = _stages(tmp_path, "")
    info = _job(st, engine, "Q1", ["a@plain.test"])
    _deliver(st, info, [_result("a@plain.test", "validation-failure")])
    text = _notice(engine).get_content()
    assert "/decide/" not in text
    assert "Q1" in text
    assert st.ctx.store.db.execute("SELECT COUNT(*) FROM decision_tokens").fetchone()[0] == 0


def test_a_parked_recipient_bounces_with_a_dsn_at_the_lifetime(tmp_path: Path) -> None:
    st, engine = _stages(tmp_path, WEB + '[queue]\nmax_lifetime = "1s"\n')
    info = _job(st, engine, "Q1", ["a@plain.test"])
    _deliver(st, info, [_result("a@plain.test", "validation-failure")])
    assert st.ctx.store.recipients("Q1")[0]["status"] == "awaiting-sender"
    st.ctx.store.db.execute("UPDATE messages SET received_ms = received_ms - 5000")

    serving(st, st.outcomes.expire_awaiting)
    row = st.ctx.store.recipients("Q1")[0]
    assert (row["status"], row["enhanced"]) == ("bounced", "4.4.7")
    assert "without the sender's decision" in row["text"]
    assert len(engine.injected) == 2  # the notice, then the DSN
    assert b"Status: 4.4.7" in engine.injected[1][1]


def test_an_envelope_decision_spools_the_carrier_at_the_carrier_level(tmp_path: Path) -> None:
    st, engine = _stages(tmp_path)
    info = _job(st, engine, "Q1", ["a@plain.test", "b@plain.test"])
    _deliver(st, info, [_result(a, "validation-failure") for a in ("a@plain.test", "b@plain.test")])
    store = st.ctx.store
    decide(store, st.ctx.cfg, "Q1", [0, 1], "envelope", actor="op", carrier=b"CARRIER\r\n")
    assert [r["status"] for r in store.recipients("Q1")] == ["deleted", "deleted"]

    serving(st, st.notices.spool_carriers)
    env, data = engine.injected[-1]
    assert data == b"CARRIER\r\n"
    assert env.sender == "sender@internal.test"
    assert [r.address for r in env.recipients] == ["a@plain.test", "b@plain.test"]
    rows = store.recipients(env.queue_id)
    assert {(r["class"], r["override_level"], r["decision"]) for r in rows} == {
        ("high", "encrypted", "envelope")
    }
    assert store.pending_carriers() == []
    envelope = [r for r in store.audit_records() if r.kind == "envelope"]
    assert len(envelope) == 1 and env.queue_id in envelope[0].data
    serving(st, st.notices.spool_carriers)
    assert len([e for e, _ in engine.injected if e.sender]) == 1, "spooled once"


def test_the_relay_says_at_start_when_notices_can_carry_no_link() -> None:
    warning = no_link_warning(Config())
    assert warning is not None
    assert "class high" in warning and "web.public_url" in warning
    linked = Config.model_validate(
        {"web": {"listen": ["127.0.0.1:8080"], "public_url": "https://gw.example"}}
    )
    assert no_link_warning(linked) is None
    assert (
        no_link_warning(Config.model_validate({"classes": {"high": {"on_unmet": "defer"}}})) is None
    )
