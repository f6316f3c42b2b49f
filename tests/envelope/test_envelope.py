"""The secure envelope without a browser: the cryptography against an
independent implementation, the page's contents and policy, the carrier
mail, passwords, templates and the command line."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mxg import envelope
from mxg.cli import main
from mxg.config.model import Config
from mxg.envelope import crypto
from mxg.envelope import password as pw
from mxg.errors import EnvelopeError, WeakPassword
from tests.envelope import messages

PASSWORD = "k7m2p-x9qrt-4hwze-ab3nv"


def _payload(page: bytes) -> dict[str, object]:
    m = re.search(rb'<script type="application/json" id="mxg-envelope">(.*?)</script>', page)
    assert m is not None
    data: dict[str, object] = json.loads(m.group(1))
    return data


def _carrier_page(carrier: bytes) -> bytes:
    msg = message_from_bytes(carrier, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    (part,) = list(msg.iter_attachments())
    content = part.get_payload(decode=True)
    assert isinstance(content, bytes)
    return content


def test_the_page_decrypts_with_an_independent_pbkdf2_and_aes_gcm() -> None:
    original = messages.multipart()
    data = _payload(envelope.page(original, PASSWORD))
    assert data["kdf"] == "PBKDF2-HMAC-SHA256"
    assert data["cipher"] == "AES-256-GCM"
    assert isinstance(data["iterations"], int)
    assert data["iterations"] >= 600_000
    salt = base64.b64decode(str(data["salt"]))
    nonce = base64.b64decode(str(data["nonce"]))
    assert (len(salt), len(nonce)) == (16, 12)
    # hashlib's PBKDF2 (OpenSSL), not the module's own derive_key.
    key = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, data["iterations"], 32)
    plain = AESGCM(key).decrypt(nonce, base64.b64decode(str(data["ciphertext"])), b"mxg-envelope-1")
    assert plain == original


def test_unseal_gives_the_original_and_refuses_a_wrong_password() -> None:
    original = messages.multipart()
    page = envelope.page(original, PASSWORD)
    assert envelope.unseal(page, PASSWORD) == original
    # Surrounding white space is not part of it (the page trims too).
    assert envelope.unseal(page, f"  {PASSWORD}\n") == original
    with pytest.raises(EnvelopeError, match="wrong password"):
        envelope.unseal(page, PASSWORD.upper())
    with pytest.raises(EnvelopeError, match="not an mxg envelope"):
        envelope.unseal(b"<html></html>", PASSWORD)


def test_an_altered_ciphertext_is_refused() -> None:
    page = envelope.page(b"Subject: x\r\n\r\nbody\r\n", PASSWORD)
    data = _payload(page)
    raw = bytearray(base64.b64decode(str(data["ciphertext"])))
    raw[0] ^= 1
    altered = page.replace(str(data["ciphertext"]).encode(), base64.b64encode(bytes(raw)))
    with pytest.raises(EnvelopeError, match="altered"):
        envelope.unseal(altered, PASSWORD)


def test_salt_and_nonce_are_new_for_every_envelope() -> None:
    original = messages.multipart()
    seen = [_payload(envelope.page(original, PASSWORD)) for _ in range(3)]
    assert len({str(d["salt"]) for d in seen}) == 3
    assert len({str(d["nonce"]) for d in seen}) == 3
    assert len({str(d["ciphertext"]) for d in seen}) == 3


def test_fewer_than_600000_iterations_are_refused() -> None:
    with pytest.raises(EnvelopeError, match="at least 600000"):
        crypto.encrypt(b"x", PASSWORD, 599_999)
    with pytest.raises(ValueError, match="600000"):
        Config.model_validate({"envelope": {"iterations": 100_000}})
    assert Config().envelope.iterations == 600_000


# What the original says, in every form it has in the message's octets.
SECRETS = (
    messages.SUBJECT,
    "Befund",
    "Müller",
    "Schäfer",
    "vertraulich",
    "Gr=C3=B6=C3=9Fe",
    messages.ATTACHMENT_NAME,
    "Befund%20M%C3%BCller",
    "befund-4711",
    "praxis@klinik.example",
    "akte@gesundheit",
    "%PDF",
)


def _leaks(haystack: bytes) -> list[str]:
    text = haystack.decode("utf-8", "replace").lower()
    return [s for s in SECRETS if s.lower() in text]


def test_the_page_holds_no_plaintext_of_the_message() -> None:
    original = messages.multipart()
    assert _leaks(original)  # the needles are there to be found
    assert _leaks(envelope.page(original, PASSWORD)) == []


def test_the_carrier_holds_no_plaintext_and_no_password() -> None:
    carrier = envelope.seal(
        messages.multipart(),
        PASSWORD,
        sender="amt@gesundheit.example.org",
        recipients="praxis@klinik.example",
        hostname="mx.gesundheit.example.org",
    )
    # The recipient's own address is in To; nothing else of the original.
    found = _leaks(carrier)
    assert found == ["praxis@klinik.example"]
    decoded = b"".join(
        p.get_payload(decode=True) or b"" for p in message_from_bytes(carrier).walk()
    )
    assert _leaks(decoded) == []
    for form in (PASSWORD, PASSWORD.replace("-", "")):
        assert form.encode() not in carrier
        assert form.encode() not in decoded


def test_the_carrier_is_a_proper_mail_with_a_neutral_subject() -> None:
    carrier = envelope.seal(
        messages.multipart(),
        PASSWORD,
        sender="amt@gesundheit.example.org",
        recipients=["praxis@klinik.example", "b@klinik.example"],
        hostname="mx.gesundheit.example.org",
    )
    assert b"\r\n" in carrier and b"\n" not in carrier.replace(b"\r\n", b"")
    msg = message_from_bytes(carrier, policy=policy.default)
    assert msg["From"] == "Gesundheitsamt Köln <amt@gesundheit.example.org>"
    assert msg["To"] == "praxis@klinik.example, b@klinik.example"
    assert msg["Subject"] == "Verschlüsselte Nachricht / Encrypted message"
    assert msg["Date"] is not None
    assert str(msg["Message-ID"]).endswith("@mx.gesundheit.example.org>")
    assert msg[envelope.HEADER] == "mxg-envelope-1"
    assert msg.get_content_type() == "multipart/mixed"
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Passwort" in text and "password" in text
    assert envelope.ATTACHMENT in text
    (part,) = list(msg.iter_attachments())
    assert part.get_filename() == envelope.ATTACHMENT
    assert part.get_content_type() == "text/html"
    assert envelope.unseal(_carrier_page(carrier), PASSWORD) == messages.multipart()


def test_a_message_without_a_readable_from_gets_the_envelope_sender() -> None:
    carrier = envelope.seal(
        b"From: not an address\r\nSubject: x\r\n\r\nbody\r\n",
        PASSWORD,
        sender="a@example.org",
        recipients="b@example.net",
        hostname="mx.example.org",
    )
    assert message_from_bytes(carrier)["From"] == "a@example.org"


def _policy(page: bytes) -> dict[str, list[str]]:
    m = re.search(rb'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert m is not None
    out: dict[str, list[str]] = {}
    for directive in html.unescape(m.group(1).decode()).split(";"):
        name, *values = directive.split()
        out[name] = values
    return out


def test_the_content_security_policy_allows_only_its_own_script_and_style() -> None:
    page = envelope.page(messages.multipart(), PASSWORD)
    csp = _policy(page)
    assert csp["default-src"] == ["'none'"]
    for directive in ("connect-src", "img-src", "frame-src", "form-action", "base-uri"):
        assert csp[directive] == ["'none'"], directive
    text = page.decode()
    scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
    styles = re.findall(r"<style>(.*?)</style>", text, re.S)
    assert len(scripts) == 1 and len(styles) == 1

    def digest(s: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"

    assert csp["script-src"] == [digest(scripts[0])]
    assert csp["style-src"] == [digest(styles[0])]
    assert not re.search(r"https?://|unsafe-|\bsrc=|\bhref=\"[^#]", text)
    # The only other script element is the data block, which never runs.
    assert re.findall(r"<script[^>]*>", text) == [
        '<script type="application/json" id="mxg-envelope">',
        "<script>",
    ]


def test_generated_passwords_are_readable_groups_of_at_least_80_bits() -> None:
    assert envelope.GENERATED_BITS >= 80
    seen = {envelope.generate_password() for _ in range(500)}
    assert len(seen) == 500
    for p in seen:
        assert re.fullmatch(r"[2-9a-hjkmnp-z]{5}(-[2-9a-hjkmnp-z]{5}){3}", p), p
        envelope.check_password(p)  # what mxg makes, it also accepts
    used = set("".join(seen).replace("-", ""))
    assert not used & set("01ilo")
    assert len(used) == len(pw.ALPHABET)  # every symbol is used: 31 ** 20 choices


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("kurz", "too short: 4 characters, at least 12"),
        ("   kurz   ", "too short: 4 characters"),
        ("aaaaaaaaaaaaaaaa", "at least 5 different"),
        ("abababcabcabcab", "at least 5 different"),
        ("abcdefghijklmnop", "run of consecutive"),
        ("zyxwvutsrqpo", "run of consecutive"),
        ("geheim\u0000passwort", "control or invisible"),
        ("x" * 300, "too long"),
    ],
)
def test_weak_typed_passwords_are_refused_with_the_reason(typed: str, reason: str) -> None:
    with pytest.raises(WeakPassword, match=re.escape(reason)) as e:
        envelope.check_password(typed)
    assert e.value.german.startswith("das Passwort ")


@pytest.mark.parametrize("typed", ["Sommer-Regen-2026", "Grüße aus Köln!", "correct horse battery"])
def test_reasonable_typed_passwords_pass(typed: str) -> None:
    envelope.check_password(typed)


def test_operator_templates_replace_the_shipped_ones_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "carrier-subject.txt").write_text("Sichere Nachricht von der Stadt\n")
    carrier = envelope.seal(
        b"Subject: x\r\n\r\nbody\r\n",
        PASSWORD,
        sender="a@example.org",
        recipients="b@example.net",
        hostname="mx.example.org",
        templates=tmp_path,
    )
    msg = message_from_bytes(carrier, policy=policy.default)
    assert msg["Subject"] == "Sichere Nachricht von der Stadt"
    assert "Passwort" in str(msg.get_body(("plain",)).get_content())  # type: ignore[union-attr]


def test_broken_templates_give_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "carrier.txt").write_text("Hallo {{ recipient_name }}\n")
    with pytest.raises(EnvelopeError, match=r"carrier.txt: 'recipient_name' is undefined"):
        envelope.seal(
            b"\r\nx",
            PASSWORD,
            sender="a@example.org",
            recipients="b@example.net",
            hostname="h",
            templates=tmp_path,
        )
    (tmp_path / "page.html").write_text(
        '<meta http-equiv="Content-Security-Policy" content="{{ csp }}">'
        "<html>{{ payload }}<script>\n{{ script }}</script>"
    )
    with pytest.raises(EnvelopeError, match=r"page.html: write <script>"):
        envelope.page(b"\r\nx", PASSWORD, templates=tmp_path)
    (tmp_path / "page.html").write_text(
        "<style>{{ style }}</style>{{ payload }}<script>{{ script }}</script>"
    )
    with pytest.raises(EnvelopeError, match=r"page.html: keep <meta http-equiv"):
        envelope.page(b"\r\nx", PASSWORD, templates=tmp_path)
    (tmp_path / "page.html").write_text("{% if %}")
    with pytest.raises(EnvelopeError, match=r"page.html:1: "):
        envelope.page(b"\r\nx", PASSWORD, templates=tmp_path)
    with pytest.raises(EnvelopeError, match="is not a directory"):
        envelope.page(b"\r\nx", PASSWORD, templates=tmp_path / "missing")


def test_the_page_template_escapes_what_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        '<meta http-equiv="Content-Security-Policy" content="{{ csp }}">'
        "<style>{{ style }}</style><script>{{ script }}</script><p>{{ '<b>' }}</p>"
    )
    assert b"<p>&lt;b&gt;</p>" in envelope.page(b"\r\nx", PASSWORD, templates=tmp_path)


def test_cli_seals_and_opens_without_the_password_in_any_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(messages.multipart())
    secret = tmp_path / "pw"
    secret.write_text("Sommer-Regen-2026\n")
    page, mail, back = tmp_path / "p.html", tmp_path / "c.eml", tmp_path / "back.eml"
    argv = ["envelope", "seal", str(message), "--password-file", str(secret), "-o", str(page)]
    argv += ["--mail", str(mail), "--sender", "a@example.org", "--to", "b@example.net"]
    assert main(argv) == 0
    opened = ["envelope", "open", str(page), "--password-file", str(secret), "-o", str(back)]
    assert main(opened) == 0
    assert back.read_bytes() == messages.multipart()
    assert (
        envelope.unseal(_carrier_page(mail.read_bytes()), "Sommer-Regen-2026") == back.read_bytes()
    )
    out = capsys.readouterr()
    assert "Sommer-Regen" not in out.out + out.err
    for f in (page, mail):
        assert b"Sommer-Regen" not in f.read_bytes()


def test_cli_generates_a_password_and_prints_it_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    page = tmp_path / "p.html"
    assert main(["envelope", "seal", str(message), "--generate", "-o", str(page)]) == 0
    out = capsys.readouterr().out
    (generated,) = re.findall(r"password: (\S+)", out)
    assert out.count(generated) == 1
    assert envelope.unseal(page.read_bytes(), generated) == message.read_bytes()


def test_cli_errors_are_one_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    weak = tmp_path / "pw"
    weak.write_text("kurz\n")
    page = tmp_path / "p.html"
    sealing = ["envelope", "seal", str(message), "-o", str(page)]
    assert main([*sealing, "--password-file", str(weak)]) == 1
    assert main([*sealing, "--generate", "--mail", "x"]) == 1
    assert not page.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "mxg: the password is too short: 4 characters, at least 12 are needed",
        "mxg: envelope seal: --mail needs --sender and --to",
    ]
