"""The recipient's page in a real browser (Debian's headless Chromium):
opened from a file, unlocked with the password, the message shown and its
attachment downloaded octet for octet; a wrong password shows the error
and nothing of the message."""

from __future__ import annotations

import base64
import random
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from mxg import envelope
from tests.envelope import messages

PASSWORD = "k7m2p-x9qrt-4hwze-ab3nv"


def _open(browser: WebDriver, tmp_path: Path, original: bytes) -> None:
    page = tmp_path / "secure-message.html"
    page.write_bytes(envelope.page(original, PASSWORD))
    browser.get(page.as_uri())


def _open_from_carrier(browser: WebDriver, tmp_path: Path, original: bytes) -> None:
    """The page as the recipient gets it: the carrier mail's attachment."""
    carrier = envelope.seal(
        original,
        PASSWORD,
        sender="amt@gesundheit.example.org",
        recipients="praxis@klinik.example",
        hostname="mx.gesundheit.example.org",
    )
    msg = message_from_bytes(carrier, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    (attachment,) = msg.iter_attachments()
    page = tmp_path / str(attachment.get_filename())
    content = attachment.get_payload(decode=True)
    assert isinstance(content, bytes)
    page.write_bytes(content)
    browser.get(page.as_uri())


def _unlock(browser: WebDriver, password: str) -> None:
    field = browser.find_element(By.ID, "password")
    field.clear()
    field.send_keys(password)
    browser.find_element(By.ID, "open").click()


def _visible(browser: WebDriver, element_id: str) -> bool:
    return bool(browser.find_element(By.ID, element_id).is_displayed())


def _text(browser: WebDriver, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def _download(directory: Path, name: str, timeout: float = 30) -> bytes:
    """The file once Chromium has finished writing it (no .crdownload)."""
    deadline = time.monotonic() + timeout
    target = directory / name
    while time.monotonic() < deadline:
        if target.exists() and not list(directory.glob("*.crdownload")):
            return target.read_bytes()
        time.sleep(0.1)
    raise AssertionError(f"no download {name!r}; have {[p.name for p in directory.iterdir()]}")


def test_the_page_opens_with_the_password_and_gives_back_the_attachment(
    browser: WebDriver, tmp_path: Path
) -> None:
    _open_from_carrier(browser, tmp_path, messages.multipart())
    assert _visible(browser, "unlock")
    assert not _visible(browser, "message")

    _unlock(browser, PASSWORD)
    WebDriverWait(browser, 20).until(lambda b: _visible(b, "message"))

    assert _text(browser, "h-subject") == messages.SUBJECT
    assert _text(browser, "h-from") == "Gesundheitsamt Köln <amt@gesundheit.example.org>"
    assert _text(browser, "h-to") == "Dr. Schäfer <praxis@klinik.example>"
    assert _text(browser, "h-cc") == "akte@gesundheit.example.org"
    assert _text(browser, "h-date") == "Fri, 04 Dec 2026 10:00:00 +0100"
    assert _text(browser, "body-text") == messages.BODY.strip()
    assert not _visible(browser, "unlock")
    assert not _visible(browser, "error-password")

    # The HTML alternative, in the sandboxed frame, on request.
    browser.find_element(By.ID, "show-html").click()
    frame = browser.find_element(By.ID, "body-html")
    assert frame.get_attribute("sandbox") == ""
    browser.switch_to.frame(frame)
    assert "anbei der Befund" in browser.find_element(By.TAG_NAME, "body").text
    browser.switch_to.default_content()

    links = browser.find_elements(By.CSS_SELECTOR, "#attachments a")
    assert [link.text for link in links] == [messages.ATTACHMENT_NAME]
    links[0].click()
    downloads = tmp_path / "downloads"
    assert _download(downloads, messages.ATTACHMENT_NAME) == messages.ATTACHMENT


def test_a_wrong_password_shows_the_error_and_nothing_else(
    browser: WebDriver, tmp_path: Path
) -> None:
    _open(browser, tmp_path, messages.multipart())
    _unlock(browser, "wrong-password-123")
    WebDriverWait(browser, 20).until(lambda b: _visible(b, "error-password"))
    assert "Das Passwort ist falsch" in _text(browser, "error-password")
    assert "The password is wrong" in _text(browser, "error-password")
    assert not _visible(browser, "message")
    assert _text(browser, "h-subject") == ""
    assert browser.find_elements(By.CSS_SELECTOR, "#attachments a") == []
    # Another try with the right one works: the error is not final.
    _unlock(browser, PASSWORD)
    WebDriverWait(browser, 20).until(lambda b: _visible(b, "message"))
    assert not _visible(browser, "error-password")
    assert _text(browser, "h-subject") == messages.SUBJECT


def test_an_html_only_message_is_shown_inert_in_the_sandboxed_frame(
    browser: WebDriver, tmp_path: Path
) -> None:
    hostile = (
        b"From: a@example.org\r\nSubject: html\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"<script>parent.document.title=3D'script ran'</script>"
        b"<img src=3Dx onerror=3D\"parent.document.title=3D'handler ran'\">"
        b'<meta http-equiv=3D"refresh" content=3D"0;url=3Dhttps://tracker.example/">'
        b"<p>Gr=FC=DFe aus K=F6ln</p>\r\n"
    )
    _open(browser, tmp_path, hostile)
    title = browser.title
    _unlock(browser, PASSWORD)
    WebDriverWait(browser, 20).until(lambda b: _visible(b, "message"))
    assert _visible(browser, "body-html")
    assert not _visible(browser, "body-text")
    srcdoc = str(browser.find_element(By.ID, "body-html").get_attribute("srcdoc"))
    for gone in ("<script", "onerror", "<meta", "tracker.example"):
        assert gone not in srcdoc
    browser.switch_to.frame(browser.find_element(By.ID, "body-html"))
    assert browser.find_element(By.TAG_NAME, "p").text == "Grüße aus Köln"
    browser.switch_to.default_content()
    time.sleep(0.5)  # what would have run has had its chance
    assert browser.title == title


def test_a_script_added_to_the_page_does_not_run(browser: WebDriver, tmp_path: Path) -> None:
    page = tmp_path / "secure-message.html"
    html = envelope.page(messages.multipart(), PASSWORD)
    page.write_bytes(html.replace(b"</body>", b"<script>document.title='injected'</script></body>"))
    browser.get(page.as_uri())
    assert browser.title != "injected"
    assert any("Content Security Policy" in e["message"] for e in browser.get_log("browser"))
    _unlock(browser, PASSWORD)  # the page's own script still runs
    WebDriverWait(browser, 20).until(lambda b: _visible(b, "message"))
    assert browser.title != "injected"


# The MIME reader on its own, in the page: what mail clients write.
PARSE = """
const raw = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
const m = MxgMime.parse(raw);
return {
  headers: m.headers, text: m.text, html: m.html,
  attachments: m.attachments.map((a) => ({
    name: a.name, type: a.type, b64: btoa(String.fromCharCode.apply(null, a.bytes)) })),
};
"""


def _parse(browser: WebDriver, message: bytes) -> dict[str, object]:
    result: dict[str, object] = browser.execute_script(PARSE, base64.b64encode(message).decode())
    return result


NESTED = (
    b"From: =?utf-8?q?=C3?= =?utf-8?q?=A4?= <a@example.org>\n"
    b"Subject: =?iso-8859-1?q?Gr=FC=DFe?= aus =?utf-8?b?S8O2bG4=?=\n"
    b'Content-Type: multipart/mixed; boundary="outer"\n\n'
    b"preamble\n--outer\n"
    b'Content-Type: multipart/alternative; boundary="inner"\n\n'
    b"--inner\nContent-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: base64\n\nSGFsbG8gV2VsdA\n--inner\n"
    b'Content-Type: multipart/related; boundary="rel"\n\n'
    b"--rel\nContent-Type: text/html\n\n<p>Hallo</p>\n--rel\n"
    b"Content-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--rel--\n"
    b"--inner--\n--outer\n"
    b"Content-Type: text/plain; charset=x-unknown-charset\n"
    b"Content-Disposition: attachment;\n filename*0*=utf-8''Bef%C3%BCnd;\n"
    b" filename*1*=%20Teil.txt\n\ncaf\xe9\n--outer\n"
    b"Content-Type: message/rfc822\n\nSubject: inner\n\nbody\n--outer--\nepilogue\n"
)


def test_the_mime_reader_takes_nested_parts_and_old_encodings(
    browser: WebDriver, tmp_path: Path
) -> None:
    _open(browser, tmp_path, b"\r\n")
    m = _parse(browser, NESTED)
    assert m["headers"] == {
        "from": "ä <a@example.org>",
        "to": "",
        "cc": "",
        "date": "",
        "subject": "Grüße aus Köln",
    }
    assert m["text"] == "Hallo Welt"  # base64 without its padding
    assert m["html"] == "<p>Hallo</p>"
    assert m["attachments"] == [
        {"name": "part-1.bin", "type": "image/png", "b64": "iVBORw0KGgo="},
        {"name": "Befünd Teil.txt", "type": "text/plain", "b64": "Y2Fm6Q=="},
        {"name": "part-3.eml", "type": "message/rfc822", "b64": "U3ViamVjdDogaW5uZXIKCmJvZHk="},
    ]


def test_the_mime_reader_never_fails_on_broken_structure(
    browser: WebDriver, tmp_path: Path
) -> None:
    _open(browser, tmp_path, b"\r\n")
    # No closing delimiter, a part without headers, no body at all.
    broken = _parse(
        browser,
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nfirst\r\n--b\r\n'
        b'Content-Type: application/x-thing; name="=?utf-8?q?d=C3=A4ta.bin?="\r\n\r\n\x00\x01',
    )
    assert broken["text"] == "first"
    assert broken["attachments"] == [
        {"name": "däta.bin", "type": "application/x-thing", "b64": "AAE="}
    ]
    empty = _parse(browser, b"Subject: only a header")
    assert empty["headers"]["subject"] == "only a header"  # type: ignore[index]
    assert empty["text"] == ""


# Characters that make mailers encode: umlauts, a dash, CJK, an emoji,
# and the encoded-word and parameter syntax itself.
ALPHABET = "abcXYZ 019äöüßÄ\u2013€漢字🙂=?_*'%\";:.-"


def _random_message(rng: random.Random) -> tuple[bytes, str, str, list[tuple[str, bytes]]]:
    subject = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 120))).strip() or "x"
    lines = [
        "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 150))).rstrip()
        for _ in range(rng.randint(1, 8))
    ]
    body = "\n".join(lines) + "\n"
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "a@example.org"
    msg["Subject"] = subject
    msg.set_content(body, cte=rng.choice(["quoted-printable", "base64", "8bit"]))
    if rng.random() < 0.5:
        msg.add_alternative("<p>html</p>", subtype="html")
    attachments = []
    for n in range(rng.randint(0, 3)):
        stem = "".join(rng.choice(ALPHABET.replace('"', "")) for _ in range(rng.randint(1, 90)))
        name = f"{stem.strip() or 'f'}-{n}.bin"
        data = rng.randbytes(rng.randint(0, 3000))
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
        attachments.append((name, data))
    return msg.as_bytes(), subject, body, attachments


def test_the_mime_reader_agrees_with_python_on_random_messages(
    browser: WebDriver, tmp_path: Path
) -> None:
    """What Python's email package writes, the page reads back: subjects
    as RFC 2047 words (folded), bodies in three transfer encodings, file
    names as RFC 2231 continuations, attachments octet for octet."""
    _open(browser, tmp_path, b"\r\n")
    rng = random.Random(15)
    for _ in range(40):
        raw, subject, body, attachments = _random_message(rng)
        got = _parse(browser, raw)
        assert got["headers"]["subject"] == subject, raw[:600]  # type: ignore[index]
        assert str(got["text"]).replace("\r\n", "\n") == body, raw[:600]
        assert [(a["name"], base64.b64decode(a["b64"])) for a in got["attachments"]] == [  # type: ignore[attr-defined]
            (name, data) for name, data in attachments
        ], raw[:600]
