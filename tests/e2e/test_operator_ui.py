"""Issue 17 item 3, end to end in the real browser: Debian's headless
Chromium (Selenium) against the operator pages of a running `mxg run`
with held messages. A wrong token cannot log in; an admin logs in,
releases two of three held messages at once with a reason, they are
delivered at once, and the audit trail records the release with the
token's name and the reason (`mxg audit verify` intact); a POST without
the CSRF value, from the browser and with the browser's own session
cookie, is refused and changes nothing. An operator decides for a
sender on the page of recipients awaiting the sender."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from mxg.web.session import COOKIE
from tests.e2e.test_admin_api import ADMIN, web_config
from tests.e2e.test_classes import OPPORTUNISTIC_NORMAL
from tests.e2e.test_decide import BODY, RCPT, _notice, _send_high
from tests.e2e.test_delivery import wait_for
from tests.e2e.test_queue_ops import ok, queue_json, send
from tests.support.browser import browser
from tests.support.dns import free_port
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e
__all__ = ["browser"]


def test_an_operator_logs_in_and_releases_held_messages_in_the_browser(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], browser: webdriver.Chrome
) -> None:
    slow_ok = {"value": False}
    sinks["slow"].rcpt_policy = lambda r: None if slow_ok["value"] else "451 4.3.2 later"
    port = free_port()
    mxg = make_mxg(
        extra=web_config(port),
        env={"MXG_QUEUE__RETRY_SCHEDULE": '["1h"]', "MXG_QUEUE__SCAN_INTERVAL": "60s"},
    )
    ids = [send(mxg, "alice@sender.test", [f"s{i}@slow.test"]) for i in range(3)]
    wait_for(lambda: len(sinks["slow"].rcpt_attempts) >= 3, what="first attempts")
    wait_for(lambda: all(m["reason"] for m in queue_json(mxg, "list")), what="all deferred")
    ok(mxg.cli("queue", "hold", "--domain", "slow.test", "--reason", "partner looks odd"))
    slow_ok["value"] = True
    base = f"http://127.0.0.1:{port}"
    # Elements are looked for until the page that has them has loaded.
    browser.implicitly_wait(10)

    cookie = _log_in(browser, base)

    # A bulk release of two of the three held messages, with a reason.
    browser.find_element(By.LINK_TEXT, "Held").click()
    for qid in ids[:2]:
        browser.find_element(By.ID, f"pick-{qid}").click()
    browser.find_element(By.ID, "reason").send_keys("checked with the partner")
    browser.find_element(By.ID, "do-release").click()
    assert browser.find_element(By.ID, "notice").text == "release: 2 message(s) changed"
    rows = browser.find_element(By.ID, "held").text
    assert ids[2] in rows and ids[0] not in rows and ids[1] not in rows
    # Delivered at once, though the next queue scan is a minute away.
    wait_for(
        lambda: sorted(sinks["slow"].recipients()) == ["s0@slow.test", "s1@slow.test"],
        timeout=20,
        what="the released deliveries",
    )

    # A POST without the CSRF value: from the page, with the field removed...
    browser.find_element(By.ID, f"pick-{ids[2]}").click()
    browser.find_element(By.ID, "reason").send_keys("no csrf")
    browser.execute_script(
        "document.querySelector('form[action$=\"/ui/held\"] input[name=csrf]').remove()"
    )
    browser.find_element(By.ID, "do-delete").click()
    assert "no or a wrong CSRF value" in browser.find_element(By.ID, "error").text
    # ... and with the browser's session cookie from elsewhere.
    refused = httpx.post(
        f"{base}/ui/held",
        data={"ids": ids[2], "action": "delete", "reason": "forged"},
        cookies={COOKIE: cookie["value"]},
        timeout=10,
    )
    assert refused.status_code == 403
    assert {m["queue_id"]: m["state"] for m in queue_json(mxg, "list")} == {ids[2]: "held"}

    # The audit trail: the release, by the token's name, with the reason.
    shown = mxg.cli("audit", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    trail = [json.loads(line) for line in shown.stdout.splitlines()]
    assert sorted(
        (r["queue_id"], r["actor"], r["data"]["detail"]) for r in trail if r["kind"] == "release"
    ) == sorted((qid, "ops-alice (token)", "checked with the partner") for qid in ids[:2])
    audit = mxg.cli("audit", "verify")
    assert audit.returncode == 0 and "audit trail intact" in audit.stdout, audit.stdout

    # Logging out ends the session.
    browser.find_element(By.CSS_SELECTOR, ".logout button").click()
    at(browser, f"{base}/ui/login")
    browser.get(f"{base}/ui/held")
    at(browser, f"{base}/ui/login")
    assert mxg.stop() == 0
    log = mxg.log_text()
    assert "web login failed" in log and ADMIN not in log
    assert "operator action" in log and "via=ui" in log


def at(browser: webdriver.Chrome, url: str) -> None:
    """Waits until the browser has gone to `url` (a click returns before
    the page it leads to has loaded)."""
    WebDriverWait(browser, 10).until(expected_conditions.url_to_be(url))


def _log_in(browser: webdriver.Chrome, base: str) -> dict[str, Any]:
    """A wrong token first, which cannot log in; then the admin token.
    Returns the session cookie."""
    # A wrong token cannot log in.
    browser.get(f"{base}/ui/held")
    at(browser, f"{base}/ui/login")
    browser.find_element(By.ID, "token").send_keys("mxg_not-a-token")
    browser.find_element(By.ID, "login").click()
    assert browser.find_element(By.ID, "error").text == "this token is not valid"
    assert browser.get_cookie(COOKIE) is None

    # The admin token can.
    browser.find_element(By.ID, "token").send_keys(ADMIN)
    browser.find_element(By.ID, "login").click()
    at(browser, f"{base}/ui/")
    assert browser.find_element(By.ID, "who").text == "ops-alice (admin)"
    summary = browser.find_element(By.ID, "held-summary").text
    assert "slow.test" in summary and "TOTAL 3" in summary
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    return cookie


def test_an_operator_decides_for_the_sender_on_the_awaiting_page(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], browser: webdriver.Chrome
) -> None:
    """Issue 15: a high-risk message to a domain without qualified
    transport is parked and its sender asked; the operator, logged in,
    finds it on the awaiting page and confirms normal risk for the sender
    there: it is delivered at once, and the decision is recorded with the
    login's name (the same implementation as ``mxg decide``)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = web_config(port).replace("[web]\n", f'[web]\npublic_url = "{base}"\n', 1)
    mxg = make_mxg(extra=OPPORTUNISTIC_NORMAL + web)
    _send_high(mxg)
    _notice(sinks["sender"], mxg)
    assert sinks["dane"].messages == []
    browser.implicitly_wait(10)
    browser.get(f"{base}/ui/login")
    browser.find_element(By.ID, "token").send_keys(ADMIN)
    browser.find_element(By.ID, "login").click()
    at(browser, f"{base}/ui/")

    browser.find_element(By.LINK_TEXT, "Awaiting sender").click()
    table = browser.find_element(By.ID, "awaiting").text
    assert RCPT in table and "alice@sender.test" in table
    form = browser.find_element(By.ID, "decide-1")
    Select(form.find_element(By.NAME, "choice")).select_by_value("normal")
    form.find_element(By.NAME, "reason").send_keys("the sender confirmed by phone")
    form.find_element(By.TAG_NAME, "button").click()
    assert browser.find_element(By.ID, "notice").text == "normal: decided"
    assert "No recipient awaits a decision." in browser.page_source
    wait_for(lambda: sinks["dane"].messages, timeout=20, what="delivery after the decision")
    assert BODY.encode() in sinks["dane"].messages[0].data

    shown = mxg.cli("audit", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    trail = [json.loads(line) for line in shown.stdout.splitlines()]
    [decision] = [r for r in trail if r["kind"] == "decision"]
    assert decision["actor"] == "ops-alice (token)"
    assert decision["data"]["choice"] == "normal"
    assert decision["data"]["reason"] == "the sender confirmed by phone"
    assert decision["data"]["client"] == "127.0.0.1"
    assert mxg.stop() == 0
    log = mxg.log_text()
    assert "operator decision" in log and "via=ui" in log
