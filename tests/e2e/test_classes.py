"""Risk classes end to end (issue 4): the class-by-scenario matrix, the
marker header, synchronous refusals at the end of DATA, and each on_unmet
action, against the transport-security test world."""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.conftest import SINK_PORT
from tests.e2e.test_dane import line_for
from tests.e2e.test_delivery import wait_for
from tests.support.https import PolicyServer
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e

SENDER = "alice@sender.test"
# The DSK default for class normal; the test world's sender domain has no
# STARTTLS, so tests that wait for a DSN let class normal go opportunistic.
PLAIN_NORMAL = '[classes.normal]\nlevel = "encrypted"\n'
OPPORTUNISTIC_NORMAL = '[classes.normal]\nlevel = "opportunistic"\n'
# Tests of levels, not of asking the sender (tests/e2e/test_decide.py):
# class high defers as it did before ask-sender became its default.
HIGH_DEFERS = '[classes.high]\non_unmet = "defer"\n'


def message(
    to: str, *, risk: str = "", encrypted: bool = False, subject: str = "Hallo", body: str = "hi"
) -> bytes:
    m = EmailMessage()
    m["From"] = SENDER
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = f"<{to.replace('@', '.')}@sender.test>"
    if risk:
        m["X-MXG-Risk"] = risk
    if encrypted:
        # RFC 8551 §3.3: S/MIME enveloped data (the bytes need not decrypt).
        m.set_content(
            bytes(range(256)) * 4,
            maintype="application",
            subtype="pkcs7-mime",
            params={"smime-type": "enveloped-data", "name": "smime.p7m"},
            filename="smime.p7m",
        )
    else:
        m.set_content(body)
    return m.as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")


def send(
    port: int,
    rcpts: list[str],
    data: bytes,
    *,
    starttls: bool = False,
    options: tuple[str, ...] = (),
) -> tuple[int, str]:
    """One transaction; (code, text) of the end-of-DATA reply (or of the
    first refusal)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("internal.test")
        if starttls:
            s.starttls(context=ssl._create_unverified_context())
            s.ehlo("internal.test")
        try:
            s.sendmail(SENDER, rcpts, data, mail_options=list(options))
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode()
        except smtplib.SMTPSenderRefused as e:
            return e.smtp_code, e.smtp_error.decode()
        return 250, "ok"


# domain → outcome at (encrypted, qualified), from the scenario table.
WORLD = {
    "dane.test": ("sent", "sent"),
    "daneexpired.test": ("sent", "sent"),
    "danetwo.test": ("sent", "sent"),
    "daneta.test": ("sent", "sent"),
    "danecname.test": ("sent", "sent"),
    "danecname2.test": ("sent", "sent"),
    "danetawrong.test": ("deferred", "deferred"),
    "danebad.test": ("deferred", "deferred"),
    "danenotls.test": ("deferred", "deferred"),
    "sts.test": ("sent", "sent"),
    "stsbad.test": ("deferred", "deferred"),
    "stsnomatch.test": ("deferred", "deferred"),
    "stsself.test": ("deferred", "deferred"),
    "ststesting.test": ("sent", "deferred"),
    "pkix.test": ("sent", "sent"),
    "pkixplain.test": ("sent", "deferred"),
    "notlsa.test": ("sent", "deferred"),
    "good.test": ("deferred", "deferred"),
    "tls10.test": ("deferred", "deferred"),
    "rsakx.test": ("deferred", "deferred"),
    "bogus.test": ("deferred", "deferred"),
}


# A secret, S/MIME-encrypted message (class secret: qualified, on_unmet
# reject) is sent after the normal and high cells were tried: where the
# high cell proved qualified out of reach it is refused at the end of DATA
# (mxg remembers recent failures); a DNS failure is never read as "out of
# reach", so bogus.test is accepted and deferred.
def expected(cls: str, domain: str) -> str:
    encrypted, qualified = WORLD[domain]
    if cls == "normal":
        return encrypted
    if cls == "high":
        return qualified
    if cls == "secret-plain":
        return "rejected"  # no end-to-end encryption: refused at once
    if qualified == "deferred" and domain != "bogus.test":
        return "rejected"
    return qualified


CELLS = ("normal", "high", "secret-plain", "secret-smime")


def test_class_matrix_over_the_scenario_world(
    make_mxg: Callable[..., MxgProcess],
    sinks: dict[str, Sink],
    pkix_certs: dict[str, Path],
    sts_web: PolicyServer,
) -> None:
    mxg = make_mxg(
        extra=PLAIN_NORMAL + HIGH_DEFERS,
        env={"MXG_DELIVERY__CA_FILE": f'"{pkix_certs["ca"]}"'},
    )
    outcomes: dict[str, str] = {}
    cells: dict[str, tuple[str, str]] = {}

    def send_cells(classes: tuple[str, ...]) -> None:
        for cls in classes:
            for i, domain in enumerate(WORLD):
                rcpt = f"{cls.replace('-', '')}{i}@{domain}"
                cells[rcpt] = (cls, domain)
                data = message(rcpt, risk=cls.split("-")[0], encrypted=cls == "secret-smime")
                code, text = send(mxg.port, [rcpt], data)
                if code == 550:
                    assert text.startswith("5.7.1 mxg: message classified secret"), text
                    assert domain in text, text
                    outcomes[rcpt] = "rejected"
                else:
                    assert code == 250, (rcpt, code, text)

    def attempted() -> None:
        accepted = [r for r in cells if r not in outcomes]
        wait_for(
            lambda: all(f"to=<{a}>" in mxg.log_text() for a in accepted),
            timeout=90,
            what="an attempt for every accepted cell",
        )
        for rcpt in accepted:
            outcomes[rcpt] = line_for(mxg, rcpt).split("status=", 1)[1].split()[0]

    send_cells(("normal", "high", "secret-plain"))
    attempted()
    send_cells(("secret-smime",))
    attempted()
    failures = [
        f"{cls} → {domain}: expected {expected(cls, domain)}, got {outcomes[rcpt]}"
        for rcpt, (cls, domain) in cells.items()
        if outcomes[rcpt] != expected(cls, domain)
    ]
    assert not failures, "\n".join(failures)
    assert "mxg: message classified secret" in mxg.log_text()


def test_marker_header_is_removed_before_delivery_and_tag_stripped(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    rule = (
        '[[rule]]\nname = "tag"\nclass = "high"\nsubject_tag = "[vertraulich]"\nstrip_tag = true\n'
    )
    mxg = make_mxg(extra=PLAIN_NORMAL + rule)
    data = message("bob@dane.test", risk="high", subject="[vertraulich] Befund 7")
    assert send(mxg.port, ["bob@dane.test"], data)[0] == 250
    wait_for(lambda: sinks["dane"].messages, what="delivery to dane.test")
    got = sinks["dane"].messages[0].data
    assert b"X-MXG-Risk" not in got
    assert b"\r\nSubject: Befund 7\r\n" in got
    line = line_for(mxg, "bob@dane.test")
    assert "status=sent" in line
    assert "level=qualified" in line
    received = next(x for x in mxg.log_text().splitlines() if " received " in f" {x} ")
    assert "class=high" in received


def test_secret_without_e2e_is_refused_at_end_of_data_and_nothing_is_queued(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(extra=PLAIN_NORMAL)
    code, text = send(mxg.port, ["bob@dane.test"], message("bob@dane.test", risk="secret"))
    assert code == 550
    assert "requires end-to-end encrypted content" in text
    assert "dane.test" in text
    wait_for(lambda: "rejected" in mxg.log_text(), what="the rejected log line")
    # JSON lines: one message per line, none here.
    listing = mxg.cli("queue", "list", "--json", "--all")
    assert (listing.returncode, listing.stdout) == (0, "")
    assert sinks["dane"].messages == []


def test_only_the_failing_domain_bounces_when_others_can_be_served(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(extra=OPPORTUNISTIC_NORMAL + '[classes.high]\non_unmet = "reject"\n')
    rcpts = ["bob@dane.test", "carol@pkixplain.test"]
    code, _ = send(mxg.port, rcpts, message(", ".join(rcpts), risk="high"))
    assert code == 250
    wait_for(lambda: sinks["dane"].messages, what="delivery to dane.test")
    wait_for(lambda: sinks["sender"].messages, what="the DSN for pkixplain.test")
    dsn = sinks["sender"].messages[0].data.decode()
    assert "carol@pkixplain.test" in dsn
    assert "bob@dane.test" not in dsn.split("Content-Type: message/")[0]
    assert "Warum:" in dsn
    assert "status=bounced" in line_for(mxg, "carol@pkixplain.test")


def test_hold_then_release_with_an_override_that_is_recorded(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(extra=PLAIN_NORMAL + '[classes.high]\non_unmet = "hold"\n')
    assert send(mxg.port, ["bob@notlsa.test"], message("bob@notlsa.test", risk="high"))[0] == 250
    wait_for(lambda: "status=held" in mxg.log_text(), what="the recipient held")
    listing = [json.loads(line) for line in mxg.cli("queue", "list", "--json").stdout.splitlines()]
    assert len(listing) == 1
    assert listing[0]["held"] == 1
    qid = listing[0]["queue_id"]
    refused = mxg.cli("queue", "release", qid, "--level", "encrypted")
    assert refused.returncode != 0
    assert "--reason" in refused.stderr
    done = mxg.cli("queue", "release", qid, "--level", "encrypted", "--reason", "ticket 42")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: sinks["dane"].messages, what="delivery after release")
    shown = json.loads(mxg.cli("queue", "show", qid, "--json").stdout)
    release = [e for e in shown["events"] if e["action"] == "release"]
    assert release
    assert release[0]["detail"] == "level=encrypted; ticket 42"
    assert release[0]["actor"]
    assert shown["recipients"][0]["status"] == "sent"
    assert shown["recipients"][0]["level"] == "encrypted"


def test_reroute_hands_the_message_to_the_fallback_relay(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    extra = (
        PLAIN_NORMAL
        + f'[classes.secret]\non_unmet = "reroute"\nreroute = "127.0.0.17:{SINK_PORT}"\n'
    )
    mxg = make_mxg(extra=extra)
    assert send(mxg.port, ["bob@good.test"], message("bob@good.test", risk="secret"))[0] == 250
    wait_for(lambda: sinks["dane"].messages, what="delivery to the fallback relay")
    assert sinks["dane"].messages[0].rcpt_tos == ["bob@good.test"]
    assert sinks["good1"].messages == []
    assert "rerouted to 127.0.0.17" in mxg.log_text()


def test_bounce_sends_the_dsn_at_once(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(extra=OPPORTUNISTIC_NORMAL + '[classes.high]\non_unmet = "bounce"\n')
    assert send(mxg.port, ["bob@notlsa.test"], message("bob@notlsa.test", risk="high"))[0] == 250
    wait_for(lambda: sinks["sender"].messages, what="the DSN")
    dsn = sinks["sender"].messages[0].data.decode()
    assert "Status: 5.7.5" in dsn
    assert "What you can do" in dsn


def test_content_detectors_raise_the_class(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    rule = '[[rule]]\nname = "iban"\nclass = "high"\ndetector = "iban"\n'
    mxg = make_mxg(extra=PLAIN_NORMAL + HIGH_DEFERS + rule)
    with_iban = message("a@notlsa.test", body="Bitte an DE89 3704 0044 0532 0130 00 zahlen.")
    without = message("b@notlsa.test", body="Bitte an DE89 3704 0044 0532 0130 01 zahlen.")
    assert send(mxg.port, ["a@notlsa.test"], with_iban)[0] == 250
    assert send(mxg.port, ["b@notlsa.test"], without)[0] == 250
    wait_for(
        lambda: "to=<a@notlsa.test>" in mxg.log_text() and "to=<b@notlsa.test>" in mxg.log_text(),
        what="both attempts",
    )
    assert "status=deferred" in line_for(mxg, "a@notlsa.test")
    assert "status=sent" in line_for(mxg, "b@notlsa.test")


def test_requiretls_needs_tls_inbound_and_a_requiretls_server_outbound(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], dane_cert: tuple[Path, Path]
) -> None:
    cert, key = dane_cert
    mxg = make_mxg(
        extra=PLAIN_NORMAL,
        env={"MXG_SERVER__TLS_CERT": f'"{cert}"', "MXG_SERVER__TLS_KEY": f'"{key}"'},
    )
    plain = send(mxg.port, ["bob@dane.test"], message("bob@dane.test"), options=("REQUIRETLS",))
    assert plain[0] == 530
    assert "REQUIRETLS needs a TLS session" in plain[1]
    data = message("bob@dane.test")
    assert send(mxg.port, ["bob@dane.test"], data, starttls=True, options=("REQUIRETLS",))[0] == 250
    wait_for(lambda: "to=<bob@dane.test>" in mxg.log_text(), what="the first attempt")
    assert "does not offer REQUIRETLS" in line_for(mxg, "bob@dane.test")
    assert sinks["dane"].messages == []
    sinks["dane"].requiretls = True
    mxg.cli("queue", "flush")
    wait_for(lambda: sinks["dane"].messages, what="delivery once REQUIRETLS is offered")
    assert "REQUIRETLS" in sinks["dane"].mail_params[-1]


def test_envelope_rules_refuse_single_recipients_at_rcpt(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    rule = (
        '[classes.high]\non_unmet = "reject"\n'
        '[[rule]]\nname = "partners"\nclass = "high"\nrecipient = ["*.test"]\n'
        'sender = ["alice@sender.test"]\n'
    )
    mxg = make_mxg(extra=PLAIN_NORMAL + rule)
    rcpts = ["bob@dane.test", "carol@pkixplain.test"]
    with smtplib.SMTP("127.0.0.1", mxg.port, timeout=60) as s:
        refused = s.sendmail(SENDER, rcpts, message(", ".join(rcpts)))
    assert list(refused) == ["carol@pkixplain.test"]
    code, text = refused["carol@pkixplain.test"]
    assert code == 550
    assert b"5.7.1" in text
    assert b"pkixplain.test cannot get it" in text
    wait_for(lambda: sinks["dane"].messages, what="delivery to dane.test")
    assert sinks["dane"].messages[0].rcpt_tos == ["bob@dane.test"]
    assert "recipient refused" in mxg.log_text()
