"""The outbound client against real receiving servers: the transport level
is enforced before MAIL FROM (ARCHITECTURE.md rule 1), results per recipient,
connection reuse."""

from __future__ import annotations

import hashlib
import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine_fixtures import Running
from tests.support.certs import self_signed
from tests.support.dns import free_port
from tests.support.scripted import ScriptedServer
from tests.support.sinks import Sink
from tests.support.smtp import RawSmtp

Start = Callable[..., Running]
PORT = free_port()


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    cert, key = self_signed(tmp_path / "sink-certs", "mx.example.test")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture
def plain() -> Iterator[Sink]:
    s = Sink("127.0.0.21", PORT).start()
    yield s
    s.stop()


@pytest.fixture
def tls(tls_context: ssl.SSLContext) -> Iterator[Sink]:
    s = Sink("127.0.0.22", PORT).start(tls_context=tls_context, require_starttls=False)
    yield s
    s.stop()


def spool_message(r: Running, sender: str = "a@internal.test") -> str:
    env = {
        "queue_id": "",
        "received_ms": 0,
        "sender": sender,
        "recipients": [{"address": "x@example.test"}],
        "origin": "local",
        "size": 0,
    }
    stored = json.loads(
        r.engine.inject(json.dumps(env), b"Subject: out\r\nMessage-ID: <o@x>\r\n\r\n.body\r\n")
    )
    return str(stored["queue_id"])


def job(
    queue_id: str, rcpts: list[str], hosts: list[tuple[str, str]], level: str, job_id: int = 1
) -> str:
    return json.dumps(
        [
            {
                "job_id": job_id,
                "queue_id": queue_id,
                "destination": "example.test",
                "sender": "a@internal.test",
                "recipients": [{"address": a} for a in rcpts],
                "hosts": [{"name": n, "addresses": [ip]} for n, ip in hosts],
                "tls": {"level": level},
            }
        ]
    )


def run_job(
    r: Running,
    queue_id: str,
    rcpts: list[str],
    hosts: list[tuple[str, str]],
    level: str,
    job_id: int = 1,
) -> dict[str, Any]:
    r.engine.submit(job(queue_id, rcpts, hosts, level, job_id))
    done = [e for e in r.wait_events("delivery_done", job_id) if e["job_id"] == job_id]
    return done[0]


@pytest.fixture
def engine(start_engine: Start) -> Running:
    return start_engine(
        outbound={"port": PORT, "connect_timeout_ms": 2000, "idle_timeout_ms": 5000}
    )


def test_rule1_fail_closed_no_mail_from_without_required_level(
    engine: Running, plain: Sink
) -> None:
    qid = spool_message(engine)
    done = run_job(
        engine, qid, ["x@example.test"], [("mx.example.test", "127.0.0.21")], "encrypted"
    )
    [res] = done["results"]
    assert res["status"] == "deferred"
    assert "starttls-not-supported" in res["text"]
    assert plain.mail_attempts == []  # no MAIL FROM on a connection below the level
    assert plain.messages == []


def test_rule1_next_mx_is_tried_never_the_same_one_in_plaintext(
    engine: Running, plain: Sink, tls: Sink
) -> None:
    qid = spool_message(engine)
    done = run_job(
        engine,
        qid,
        ["x@example.test"],
        [("mx1.example.test", "127.0.0.21"), ("mx2.example.test", "127.0.0.22")],
        "encrypted",
    )
    [res] = done["results"]
    assert res["status"] == "sent", res
    assert res["host"] == "mx2.example.test"
    assert res["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert res["level"] == "encrypted"
    assert plain.mail_attempts == []
    assert len(done["attempts"]) == 1
    assert tls.messages[0].data.endswith(b".body\r\n")  # dot-stuffing undone by the peer


def test_qualified_is_refused_until_an_authentication_method_exists(
    engine: Running, tls: Sink
) -> None:
    qid = spool_message(engine)
    done = run_job(
        engine, qid, ["x@example.test"], [("mx.example.test", "127.0.0.22")], "qualified"
    )
    [res] = done["results"]
    assert res["status"] == "deferred"
    assert "validation-failure" in res["text"]
    assert tls.mail_attempts == []


def test_opportunistic_uses_tls_when_offered_and_plaintext_otherwise(
    engine: Running, plain: Sink, tls: Sink
) -> None:
    qid = spool_message(engine)
    a = run_job(
        engine, qid, ["x@example.test"], [("mx.example.test", "127.0.0.22")], "opportunistic", 1
    )
    b = run_job(
        engine, qid, ["x@example.test"], [("mx.example.test", "127.0.0.21")], "opportunistic", 2
    )
    assert a["results"][0]["tls"] is not None
    assert b["results"][0]["status"] == "sent"
    assert "tls" not in b["results"][0]


def test_level_none_never_starts_tls(engine: Running, tls: Sink) -> None:
    qid = spool_message(engine)
    done = run_job(engine, qid, ["x@example.test"], [("mx.example.test", "127.0.0.22")], "none")
    assert done["results"][0]["status"] == "sent"
    assert "tls" not in done["results"][0]


def test_results_per_recipient(engine: Running, plain: Sink) -> None:
    plain.rcpt_policy = {
        "gone@example.test": "550 5.1.1 unknown",
        "busy@example.test": "452 4.2.2 mailbox full",
    }.get
    qid = spool_message(engine)
    done = run_job(
        engine,
        qid,
        ["ok@example.test", "gone@example.test", "busy@example.test"],
        [("mx.example.test", "127.0.0.21")],
        "opportunistic",
    )
    by = {r["address"]: r for r in done["results"]}
    assert by["ok@example.test"]["status"] == "sent"
    assert by["gone@example.test"]["status"] == "bounced"
    assert (by["gone@example.test"]["code"], by["gone@example.test"]["enhanced"]) == (550, "5.1.1")
    assert by["busy@example.test"]["status"] == "deferred"
    assert plain.recipients() == ["ok@example.test"]


def test_unreachable_hosts_defer_with_the_reason(engine: Running) -> None:
    qid = spool_message(engine)
    done = run_job(
        engine, qid, ["x@example.test"], [("mx.example.test", "127.0.0.29")], "opportunistic"
    )
    [res] = done["results"]
    assert res["status"] == "deferred"
    assert "127.0.0.29" in res["text"] and "refused" in res["text"].lower()


def test_connections_are_reused_for_the_same_destination_and_policy(
    engine: Running, plain: Sink
) -> None:
    qid = spool_message(engine)
    for i in range(1, 4):
        run_job(
            engine, qid, ["x@example.test"], [("mx.example.test", "127.0.0.21")], "opportunistic", i
        )
    assert len(plain.messages) == 3
    assert plain.ehlo_count == 1
    # A job under another policy does not take that connection.
    run_job(engine, qid, ["x@example.test"], [("mx.example.test", "127.0.0.21")], "none", 4)
    assert plain.ehlo_count == 2


def test_helo_fallback_when_ehlo_is_refused(engine: Running) -> None:
    server = ScriptedServer(
        "127.0.0.23", PORT, lambda verb: "502 5.5.2 EHLO not here" if verb == "EHLO" else None
    ).start()
    try:
        qid = spool_message(engine)
        done = run_job(
            engine, qid, ["x@example.test"], [("old.example.test", "127.0.0.23")], "opportunistic"
        )
        assert done["results"][0]["status"] == "sent"
        verbs = [c.split()[0].upper() for c in server.commands]
        assert verbs[:3] == ["EHLO", "HELO", "MAIL"]
        # Without EHLO there are no extensions: no SIZE/BODY parameters on MAIL.
        assert server.commands[2] == "MAIL FROM:<a@internal.test>"
    finally:
        server.stop()


def test_per_destination_concurrency_limit(start_engine: Start) -> None:
    r = start_engine(outbound={"port": PORT, "max_per_destination": 2, "idle_timeout_ms": 0})
    server = ScriptedServer("127.0.0.24", PORT, data_delay=0.3).start()
    try:
        qid = spool_message(r)
        for i in range(1, 7):
            r.engine.submit(
                job(
                    qid, ["x@example.test"], [("mx.example.test", "127.0.0.24")], "opportunistic", i
                )
            )
        done = r.wait_events("delivery_done", 6, timeout=20)
        assert all(e["results"][0]["status"] == "sent" for e in done)
        assert server.messages == 6
        assert server.max_active == 2
    finally:
        server.stop()


def test_rule6_client_forgets_bytes_and_capabilities_from_before_tls(
    engine: Running, tls_context: ssl.SSLContext
) -> None:
    """Before TLS the server claims SIZE 10 and appends a forged reply to
    its 220; after TLS it announces no SIZE. The client must discard the
    forged bytes, say EHLO again and use only the new capabilities."""
    ehlos = {"n": 0}

    def script(verb: str) -> str | None:
        if verb == "EHLO":
            ehlos["n"] += 1
            return "250-scripted\n250-STARTTLS\n250 SIZE 10" if ehlos["n"] == 1 else "250 scripted"
        return None

    server = ScriptedServer(
        "127.0.0.25", PORT, script, tls=tls_context, after_starttls=b"250 2.0.0 forged\r\n"
    ).start()
    try:
        qid = spool_message(engine)
        done = run_job(
            engine, qid, ["x@example.test"], [("mx.example.test", "127.0.0.25")], "encrypted"
        )
        [res] = done["results"]
        assert res["status"] == "sent", (res, done["attempts"])
        assert server.tls_sessions == 1
        verbs = [c.split()[0].split(":")[0].upper() for c in server.commands]
        assert verbs[:4] == ["EHLO", "STARTTLS", "EHLO", "MAIL"]
        assert "SIZE=" not in server.commands[3]
    finally:
        server.stop()


def test_encrypted_session_evidence(engine: Running, tls: Sink, tmp_path: Path) -> None:
    qid = spool_message(engine)
    done = run_job(
        engine, qid, ["x@example.test"], [("mx.example.test", "127.0.0.22")], "encrypted"
    )
    [res] = done["results"]
    assert res["status"] == "sent"
    assert res["level"] == "encrypted"
    ev = res["tls"]
    assert ev["group"] in ("secp256r1", "secp384r1")  # BSI TR-02102-2 curves only
    assert "GCM" in ev["cipher"]
    der = ssl.PEM_cert_to_DER_cert((tmp_path / "sink-certs" / "mx.example.test.crt").read_text())
    assert ev["peer_certs_sha256"] == [hashlib.sha256(der).hexdigest()]


@pytest.fixture
def chacha_only(tmp_path: Path) -> Iterator[Sink]:
    """A server that speaks only TLS 1.2 with ChaCha20-Poly1305: fine by
    the modern profile, outside BSI TR-02102-2."""
    cert, key = self_signed(tmp_path / "chacha-certs", "mx.example.test")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
    s = Sink("127.0.0.26", PORT).start(tls_context=ctx, require_starttls=False)
    yield s
    s.stop()


def test_parameter_profiles(start_engine: Start, chacha_only: Sink) -> None:
    r = start_engine(outbound={"port": PORT, "idle_timeout_ms": 0})
    qid = spool_message(r)
    hosts = [("mx.example.test", "127.0.0.26")]

    def attempt(level: str, profile: str, job_id: int) -> dict[str, Any]:
        r.engine.submit(
            json.dumps(
                [
                    {
                        "job_id": job_id,
                        "queue_id": qid,
                        "destination": "example.test",
                        "sender": "a@internal.test",
                        "recipients": [{"address": "x@example.test"}],
                        "hosts": [{"name": n, "addresses": [ip]} for n, ip in hosts],
                        "tls": {"level": level, "profile": profile},
                    }
                ]
            )
        )
        done = [e for e in r.wait_events("delivery_done", job_id) if e["job_id"] == job_id]
        return dict(done[0]["results"][0])

    bsi = attempt("encrypted", "bsi-tr-02102-2", 1)
    assert bsi["status"] == "deferred"
    assert "offered only TLS profile bsi-tr-02102-2" in bsi["text"]
    assert chacha_only.mail_attempts == []
    modern = attempt("encrypted", "modern", 2)
    assert modern["status"] == "sent"
    assert modern["tls"]["cipher"] == "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
    # Opportunistic delivery goes through, and records that the session
    # did not reach the encrypted level's parameters.
    opportunistic = attempt("opportunistic", "bsi-tr-02102-2", 3)
    assert opportunistic["status"] == "sent"
    assert opportunistic["level"] == "opportunistic"


@pytest.fixture
def old_tls_only(tmp_path: Path) -> Iterator[Sink]:
    """A server that speaks only TLS 1.0/1.1, which rustls never offers."""
    cert, key = self_signed(tmp_path / "old-certs", "mx.example.test")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    s = Sink("127.0.0.27", PORT).start(tls_context=ctx, require_starttls=False)
    yield s
    s.stop()


# Building a TLS 1.0/1.1 server is deprecated in Python: that is the point.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("level", ["opportunistic", "encrypted"])
def test_old_tls_only_server_gets_nothing_not_even_plaintext(
    start_engine: Start, old_tls_only: Sink, level: str
) -> None:
    r = start_engine(outbound={"port": PORT, "idle_timeout_ms": 0})
    qid = spool_message(r)
    done = run_job(r, qid, ["x@example.test"], [("mx.example.test", "127.0.0.27")], level)
    [res] = done["results"]
    assert res["status"] == "deferred"
    assert "TLS handshake" in res["text"]
    assert "shares no TLS version or cipher suite with mxg" in res["text"]
    assert old_tls_only.mail_attempts == []  # rule 1: never the same MX in plaintext


def test_a_batch_with_a_malformed_job_starts_none_of_its_jobs(engine: Running, plain: Sink) -> None:
    # The control plane forgets every job of a batch the engine refused; a
    # job started anyway would deliver with nobody waiting for its result.
    qid = spool_message(engine)
    good = json.loads(job(qid, ["x@example.test"], [("mx.example.test", "127.0.0.21")], "none"))
    bad = {**good[0], "job_id": 2, "recipients": []}
    with pytest.raises(Exception, match="job 2 has no recipients"):
        engine.engine.submit(json.dumps([*good, bad]))
    time.sleep(0.5)
    assert plain.messages == []
    assert [e for e in json.loads(engine.engine.drain()) if e["type"] == "delivery_done"] == []


DSN_EHLO = "250-scripted\r\n250-PIPELINING\r\n250 DSN"


def scripted_job(queue_id: str, sender: str, rcpts: list[dict[str, Any]], **extra: Any) -> str:
    return json.dumps(
        [
            {
                "job_id": 1,
                "queue_id": queue_id,
                "destination": "example.test",
                "sender": sender,
                "recipients": rcpts,
                "hosts": [{"name": "mx.example.test", "addresses": ["127.0.0.31"]}],
                "tls": {"level": "none"},
                **extra,
            }
        ]
    )


def test_rule12a_the_next_hop_gets_the_envelope_exactly(engine: Running) -> None:
    server = ScriptedServer(
        "127.0.0.31", PORT, lambda verb: DSN_EHLO if verb == "EHLO" else None
    ).start()
    try:
        c = RawSmtp(engine.port)
        c.reply()
        c.cmd("EHLO internal.test")
        assert c.cmd('MAIL FROM:<"quoted user"@internal.test> RET=HDRS ENVID=e+2Bv').startswith(
            "250"
        )
        assert c.cmd(
            'RCPT TO:<"victim@other.example> NOTIFY=SUCCESS"@evil.test> NOTIFY=FAILURE'
        ).startswith("250")
        assert c.cmd('RCPT TO:<"a\\"b\\\\c"@example.test>').startswith("250")
        c.cmd("DATA")
        assert c.cmd("Subject: x\r\n\r\nx\r\n.").startswith("250")
        env = engine.wait_events("received")[0]["envelope"]
        engine.engine.submit(
            scripted_job(
                env["queue_id"],
                env["sender"],
                env["recipients"],
                ret=env["ret"],
                envid=env["envid"],
            )
        )
        done = engine.wait_events("delivery_done")[0]
        assert [r["status"] for r in done["results"]] == ["sent", "sent"], done
        assert server.commands[1:4] == [
            'MAIL FROM:<"quoted user"@internal.test> RET=HDRS ENVID=e+2Bv',
            'RCPT TO:<"victim@other.example> NOTIFY=SUCCESS"@evil.test> NOTIFY=FAILURE',
            'RCPT TO:<"a\\"b\\\\c"@example.test>',
        ]
    finally:
        server.stop()


def test_rule12a_an_unsafe_address_from_an_old_spool_never_goes_out(engine: Running) -> None:
    server = ScriptedServer(
        "127.0.0.31", PORT, lambda verb: DSN_EHLO if verb == "EHLO" else None
    ).start()
    # As an older version could have spooled them (quotes dropped, a NUL
    # or CR LF kept); the engine takes whatever the spool holds.
    unsafe = ["a\x00b> NOTIFY=SUCCESS@example.test", "v@example.test>\r\nRCPT TO:<w@example.test"]
    try:
        qid = spool_message(engine)
        rcpts = [{"address": a} for a in [*unsafe, "ok@example.test"]]
        rcpts.append({"address": "n@example.test", "notify": ["SUCCESS ORCPT=rfc822;x"]})
        engine.engine.submit(scripted_job(qid, "a@internal.test", rcpts))
        done = engine.wait_events("delivery_done")[0]
        by_address = {r["address"]: r for r in done["results"]}
        assert by_address["ok@example.test"]["status"] == "sent"
        for address in [*unsafe, "n@example.test"]:
            res = by_address[address]
            assert (res["status"], res["code"], res["enhanced"]) == ("bounced", 553, "5.1.3")
            assert res["reason"] == "local-error"
            assert "cannot be written safely" in res["text"]
        rcpt_lines = [c for c in server.commands if c.upper().startswith("RCPT")]
        assert rcpt_lines == ["RCPT TO:<ok@example.test>"]
        assert not any("w@example.test" in c or "\x00" in c for c in server.commands)
        # An unsafe sender: every recipient bounces and no server is asked.
        before = len(server.commands)
        engine.events.clear()
        engine.engine.submit(
            scripted_job(qid, "a\r\n@internal.test", [{"address": "x@example.test"}])
        )
        [res] = engine.wait_events("delivery_done")[0]["results"]
        assert (res["status"], res["enhanced"]) == ("bounced", "5.1.7")
        assert len(server.commands) == before
    finally:
        server.stop()
