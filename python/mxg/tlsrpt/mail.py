"""A report as mail (RFC 8460 §5.3): multipart/report with
report-type=tlsrpt, a short text and the gzipped JSON as
application/tlsrpt+gzip, the subject and the TLS-Report-Domain and
TLS-Report-Submitter fields the RFC names, DKIM-signed (§3: reports by
mail MUST carry a DKIM signature) with dkimpy.

The message also says ``TLS-Required: No`` (RFC 8689 §5): a report must
get through despite the TLS failure it may describe (§5.3), and says so
to every hop after mxg too."""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from mxg.errors import MxgError
from mxg.tlsrpt.report import Report

# Signed fields: those a receiver reads to file the report (§5.3), and
# the MIME structure, so that no part can be swapped.
SIGNED = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"tls-report-domain",
    b"tls-report-submitter",
    b"mime-version",
    b"content-type",
    b"tls-required",
    b"auto-submitted",
)


@dataclass(frozen=True)
class DkimKey:
    """d=, s= and the RSA private key (PEM). RSA only: dkimpy signs
    Ed25519 (RFC 8463) through PyNaCl, which mxg does not install, and
    not every receiver checks Ed25519 yet."""

    domain: str
    selector: str
    private: bytes  # PEM
    algorithm: bytes = b"rsa-sha256"

    @classmethod
    def load(cls, path: Path, domain: str, selector: str) -> DkimKey:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

        try:
            pem = path.read_bytes()
            key = serialization.load_pem_private_key(pem, password=None)
        except OSError as e:
            raise MxgError(f"[tlsrpt] dkim_key {path}: {e.strerror or e}") from None
        except (ValueError, TypeError) as e:
            raise MxgError(f"[tlsrpt] dkim_key {path}: not a PEM private key ({e})") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise MxgError(f"[tlsrpt] dkim_key {path}: not an RSA key (DKIM signs with RSA here)")
        if key.key_size < 1024:
            raise MxgError(f"[tlsrpt] dkim_key {path}: RSA below 1024 bits (RFC 8301 §3.2)")
        return cls(domain, selector, pem)


def subject(report: Report, sender: str) -> str:
    """§5.3: "Report Domain: <domain> Submitter: <sender> Report-ID: <id>"."""
    return f"Report Domain: {report.domain} Submitter: {sender} Report-ID: <{report.report_id}>"


def build_mail(report: Report, *, sender: str, from_address: str, to: str, hostname: str) -> bytes:
    """The unsigned message, CRLF line ends."""
    boundary = f"mxg-tlsrpt-{secrets.token_hex(12)}"
    name = report.filename(sender)
    data = base64.encodebytes(report.gzipped).decode().replace("\n", "\r\n")
    text = (
        f"This is a TLS report (RFC 8460) from {sender} for {report.domain},\r\n"
        f"covering {report.day} (UTC). The report is attached as {name}.\r\n"
    )
    lines = [
        f"From: <{from_address}>",
        f"To: <{to}>",
        f"Subject: {subject(report, sender)}",
        f"Date: {formatdate(time.time(), usegmt=True)}",
        f"Message-ID: <tlsrpt.{report.day}.{secrets.token_hex(8)}@{hostname}>",
        f"TLS-Report-Domain: {report.domain}",
        f"TLS-Report-Submitter: {sender}",
        "TLS-Required: No",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type="tlsrpt";\r\n boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated TLS report (RFC 8460).",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "",
        text,
        f"--{boundary}",
        "Content-Type: application/tlsrpt+gzip",
        "Content-Transfer-Encoding: base64",
        f'Content-Disposition: attachment;\r\n filename="{name}"',
        "",
        data,
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def sign(message: bytes, key: DkimKey) -> bytes:
    """The message with its DKIM-Signature field first (RFC 6376,
    relaxed/relaxed; dkimpy's RFC 8460 mode: no l= tag)."""
    import dkim  # type: ignore[import-untyped]  # noqa: PLC0415  (only the daily run signs)

    header = dkim.sign(
        message,
        key.selector.encode(),
        key.domain.encode(),
        key.private,
        canonicalize=(b"relaxed", b"relaxed"),
        signature_algorithm=key.algorithm,
        include_headers=list(SIGNED),
        tlsrpt=True,
    )
    return bytes(header) + message
