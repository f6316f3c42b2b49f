"""The sender decides, end to end (issue 15): a real `mxg run` with the
web surface on, a high-risk message to a domain without qualified
transport (notlsa.test: DNSSEC-signed, STARTTLS, no TLSA, no MTA-STS,
a certificate no CA vouches for), the notice received by the sender's
test-world server, its link followed in Debian's headless Chromium, a
choice made, and what the recipient's server then receives. Expired and
reused links are refused in the browser. Both anyio backends."""

from __future__ import annotations

import email
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from mxg.envelope import ATTACHMENT, HEADER, unseal
from tests.e2e.test_classes import OPPORTUNISTIC_NORMAL, message, send
from tests.e2e.test_delivery import wait_for
from tests.support.dns import free_port
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink
from tests.support.store import store_bytes

pytestmark = pytest.mark.e2e

RCPT = "bob@notlsa.test"
BODY = "Befund: vertraulich, nur fuer Bob"


def _start(make_mxg: Callable[..., MxgProcess], extra: str = "") -> tuple[MxgProcess, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The sender's own server (sender.test) offers no STARTTLS: notices and
    # DSNs, which go as class normal, may go opportunistic here.
    mxg = make_mxg(
        extra=OPPORTUNISTIC_NORMAL
        + f'[web]\nlisten = ["127.0.0.1:{port}"]\npublic_url = "{base}"\n'
        + extra
    )
    return mxg, base


def _notice(sender: Sink, mxg: MxgProcess) -> tuple[EmailMessage, str]:
    """The decision notice the sender's server received, and its link."""

    def notices() -> list[tuple[str, EmailMessage]]:
        out = []
        for m in list(sender.messages):
            parsed = email.message_from_bytes(m.data, policy=default)
            assert isinstance(parsed, EmailMessage)
            if "Your decision is needed" in str(parsed["Subject"]):
                out.append((m.mail_from, parsed))
        return out

    wait_for(lambda: bool(notices()), timeout=60, what="the decision notice")
    [(mail_from, notice)] = notices()
    assert mail_from in ("", "<>")  # the null reverse path
    assert "Befund 7" in str(notice["Subject"])
    text = notice.get_content()
    m = re.search(r"(http://127\.0\.0\.1:\d+/decide/\S+)", text)
    assert m, text
    return notice, m.group(1)


def _send_high(mxg: MxgProcess) -> None:
    data = message(RCPT, risk="high", subject="Befund 7", body=BODY)
    assert send(mxg.port, [RCPT], data)[0] == 250


def _choose(browser: WebDriver, link: str, choice: str, *, dsn: bool = False) -> None:
    browser.get(link)
    assert browser.find_element(By.ID, "subject").text == "Befund 7"
    assert RCPT in browser.find_element(By.ID, "recipients").text
    assert BODY not in browser.page_source
    browser.find_element(By.ID, f"choice-{choice}").click()
    if dsn:
        browser.find_element(By.ID, "dsn").click()
    browser.find_element(By.ID, "decide").click()
    try:
        wait_for(lambda: bool(browser.find_elements(By.ID, "result")), what="the result page")
    except AssertionError:
        # What the browser shows instead (a refusal names its reason).
        raise AssertionError(f"{browser.current_url}\n{browser.page_source[-1500:]}") from None
    assert browser.find_element(By.ID, "result").get_attribute("data-choice") == choice


def _refused(browser: WebDriver, link: str) -> tuple[str, str]:
    browser.get(link)
    h1 = browser.find_element(By.ID, "refused")
    return str(h1.get_attribute("data-status")), str(browser.find_element(By.ID, "reason").text)


def test_confirming_normal_risk_delivers_at_class_normal_and_the_link_works_once(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], browser: WebDriver
) -> None:
    mxg, _ = _start(make_mxg)
    _send_high(mxg)
    notice, link = _notice(sinks["sender"], mxg)
    text = notice.get_content()
    assert RCPT in text and "Guten Tag" in text and "Hello" in text
    assert BODY not in text
    assert sinks["dane"].messages == []  # parked: nothing went out
    listing = [json.loads(x) for x in mxg.cli("queue", "list", "--json").stdout.splitlines()]
    qid = next(x["queue_id"] for x in listing if x["class"] == "high")
    shown = json.loads(mxg.cli("queue", "show", qid, "--json").stdout)
    assert shown["recipients"][0]["status"] == "awaiting-sender"

    _choose(browser, link, "normal")
    wait_for(lambda: sinks["dane"].messages, timeout=30, what="delivery after the decision")
    assert BODY.encode() in sinks["dane"].messages[0].data
    wait_for(lambda: "status=sent" in _line(mxg, RCPT), what="the delivery's log line")
    shown = json.loads(mxg.cli("queue", "show", qid, "--json").stdout)
    rcpt = shown["recipients"][0]
    assert (rcpt["status"], rcpt["override_level"], rcpt["decision"]) == (
        "sent",
        "opportunistic",
        "normal",
    )
    decision = [e for e in shown["events"] if e["action"] == "decision"]
    assert decision and "client=127.0.0.1" in decision[0]["detail"]
    assert "confirmed=the content carries only normal risk" in decision[0]["detail"]

    status, reason = _refused(browser, link)
    assert status == "410", reason
    assert "already used" in reason


def test_the_secure_envelope_reaches_the_recipient_and_opens_with_the_shown_password(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], browser: WebDriver
) -> None:
    mxg, _ = _start(make_mxg)
    _send_high(mxg)
    _, link = _notice(sinks["sender"], mxg)
    _choose(browser, link, "envelope")
    password = browser.find_element(By.ID, "password").text
    assert password
    wait_for(lambda: sinks["dane"].messages, timeout=30, what="the carrier")
    got = sinks["dane"].messages[0]
    assert got.rcpt_tos == [RCPT]
    assert got.mail_from == "alice@sender.test"
    assert BODY.encode() not in got.data and password.encode() not in got.data
    carrier = email.message_from_bytes(got.data, policy=default)
    assert carrier[HEADER]
    page = next(p for p in carrier.walk() if p.get_filename() == ATTACHMENT)
    original = unseal(page.get_payload(decode=True), password)
    assert BODY.encode() in original
    assert password not in mxg.log_text()
    assert password.encode() not in store_bytes(mxg)


def test_cancel_with_a_dsn_sends_nothing_and_tells_the_sender(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], browser: WebDriver
) -> None:
    mxg, _ = _start(make_mxg)
    _send_high(mxg)
    _, link = _notice(sinks["sender"], mxg)
    _choose(browser, link, "cancel", dsn=True)
    wait_for(
        lambda: any(b"Undelivered Mail" in m.data for m in sinks["sender"].messages),
        timeout=30,
        what="the DSN",
    )
    dsn = next(m for m in sinks["sender"].messages if b"Undelivered Mail" in m.data)
    assert b"cancelled by the sender" in dsn.data
    assert BODY.encode() not in dsn.data  # class high: headers only
    time.sleep(2)  # some scans: nothing goes to the recipient
    assert sinks["dane"].messages == []


def test_an_expired_link_is_refused_in_the_browser(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], browser: WebDriver
) -> None:
    mxg, _ = _start(make_mxg, '[decisions]\ntoken_lifetime = "2s"\n')
    _send_high(mxg)
    _, link = _notice(sinks["sender"], mxg)
    time.sleep(2.5)
    status, reason = _refused(browser, link)
    assert status == "410", reason
    assert "expired" in reason
    assert sinks["dane"].messages == []


def _line(mxg: MxgProcess, rcpt: str) -> str:
    lines = [x for x in mxg.log_text().splitlines() if f"to=<{rcpt}>" in x and "status=" in x]
    return lines[-1] if lines else ""


def test_mxg_decide_sends_the_envelope_with_the_operators_password_file(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], tmp_path: Path
) -> None:
    mxg, _ = _start(make_mxg)
    _send_high(mxg)
    _notice(sinks["sender"], mxg)
    listing = [json.loads(x) for x in mxg.cli("queue", "list", "--json").stdout.splitlines()]
    qid = next(x["queue_id"] for x in listing if x["class"] == "high")
    weak = tmp_path / "weak"
    weak.write_text("1234\n")
    refused = mxg.cli(
        "decide", qid, "--recipient", RCPT, "--choice", "envelope", "--password-file", str(weak)
    )
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    secret = tmp_path / "password"
    secret.write_text("Amsel-Drossel-Fink-Star-7\n")
    done = mxg.cli(
        "decide", qid, "--recipient", RCPT, "--choice", "envelope", "--password-file", str(secret)
    )
    assert done.returncode == 0, done.stderr
    assert "Amsel" not in done.stdout
    wait_for(lambda: sinks["dane"].messages, timeout=30, what="the carrier")
    carrier = email.message_from_bytes(sinks["dane"].messages[0].data, policy=default)
    page = next(p for p in carrier.walk() if p.get_filename() == ATTACHMENT)
    assert BODY.encode() in unseal(page.get_payload(decode=True), "Amsel-Drossel-Fink-Star-7")
    shown = json.loads(mxg.cli("queue", "show", qid, "--json").stdout)
    assert shown["recipients"][0]["decision"] == "envelope"
    assert "Amsel" not in mxg.log_text()


# A relay that spools the stored carrier and dies (os._exit: no cleanup,
# as kill -9) before it records it: the crash window between the spool's
# fsync and the record's transaction, hit exactly.
CRASH_AFTER_SPOOL = """
import json, os, sys
from pathlib import Path
import anyio
from mxg import _core
from mxg.config.load import load_config
from mxg.pipeline.context import Context
from mxg.pipeline.notices import Notices
from mxg.pipeline.storage import open_store

cfg = load_config(Path(sys.argv[1]))
engine = _core.Engine(json.dumps(cfg.engine_json()))
store = open_store(cfg.store_target, cfg.cluster.node)
ctx = Context(cfg, engine, store, None, None, None)
def die(*_, **__):
    print("spooled", flush=True)
    os._exit(137)
store.carrier_spooled = die
anyio.run(Notices(ctx).spool_carriers)
"""


def test_rule10_a_carrier_spooled_before_a_crash_goes_once_at_the_carrier_level(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], tmp_path: Path
) -> None:
    """The carrier a crash left spooled but unrecorded is recorded at the
    next start at class high's carrier_level (encrypted), which notlsa.test
    offers: delivered once. At class high's own level (qualified) it would
    be parked and its sender asked again."""
    mxg, _ = _start(make_mxg)
    _send_high(mxg)
    _notice(sinks["sender"], mxg)
    listing = [json.loads(x) for x in mxg.cli("queue", "list", "--json").stdout.splitlines()]
    qid = next(x["queue_id"] for x in listing if x["class"] == "high")
    assert mxg.stop() == 0
    secret = tmp_path / "password"
    secret.write_text("Amsel-Drossel-Fink-Star-7\n")
    done = mxg.cli(
        "decide", qid, "--recipient", RCPT, "--choice", "envelope", "--password-file", str(secret)
    )
    assert done.returncode == 0, done.stderr
    crash = subprocess.run(
        [mxg.python, "-c", CRASH_AFTER_SPOOL, str(mxg.config_path)],
        capture_output=True,
        text=True,
        env={**os.environ, **mxg.env},
        cwd=mxg.workdir,
        timeout=60,
        check=False,
    )
    assert crash.returncode == 137 and crash.stdout == "spooled\n", crash.stderr
    listing = mxg.cli("queue", "list", "--all", "--json").stdout
    assert listing.count('"sender": "alice@sender.test"') == 1, f"carrier unindexed: {listing}"

    mxg.start()
    wait_for(lambda: sinks["dane"].messages, timeout=30, what="the carrier")
    time.sleep(2)  # a second carrier would be on its way by now
    assert len(sinks["dane"].messages) == 1
    carrier = email.message_from_bytes(sinks["dane"].messages[0].data, policy=default)
    assert carrier[HEADER]
    page = next(p for p in carrier.walk() if p.get_filename() == ATTACHMENT)
    assert BODY.encode() in unseal(page.get_payload(decode=True), "Amsel-Drossel-Fink-Star-7")
    wait_for(lambda: "status=sent" in _line(mxg, RCPT), what="the carrier's log line")
    assert "level=encrypted" in _line(mxg, RCPT)
    recorded = re.search(r"spooled before a stop, recorded now.*queue_id=(\w+)", mxg.log_text())
    assert recorded, mxg.log_text()
    carrier_qid = recorded.group(1)
    shown = json.loads(mxg.cli("queue", "show", carrier_qid, "--json").stdout)
    rcpt = shown["recipients"][0]
    assert (rcpt["status"], rcpt["override_level"], rcpt["decision"]) == (
        "sent",
        "encrypted",
        "envelope",
    )
    # Its sender was asked once, about the original, never about the carrier.
    subjects = [
        str(email.message_from_bytes(m.data, policy=default)["Subject"])
        for m in sinks["sender"].messages
    ]
    assert len([x for x in subjects if "Your decision is needed" in x]) == 1, subjects
