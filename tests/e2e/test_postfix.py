"""Interop with Postfix: as the internal server that uses mxg as its
relayhost, and as a receiving server that mxg delivers to over STARTTLS."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SINK_PORT
from tests.e2e.test_delivery import wait_for
from tests.support import postfix
from tests.support.certs import self_signed
from tests.support.dns import free_port
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postfix,
    pytest.mark.skipif(not postfix.available(), reason="postfix is not installed"),
]


@pytest.fixture
def internal_postfix(
    make_mxg: Callable[..., MxgProcess],
) -> Iterator[tuple[postfix.Postfix, MxgProcess]]:
    mxg = make_mxg()
    pf = postfix.Postfix(
        "internal",
        free_port(),
        {
            "myhostname": "internal.test",
            "relayhost": f"[127.0.0.1]:{mxg.port}",
            "smtp_tls_security_level": "none",
        },
    ).start()
    yield pf, mxg
    pf.stop()


def test_postfix_uses_mxg_as_relayhost(
    internal_postfix: tuple[postfix.Postfix, MxgProcess], sinks: dict[str, Sink]
) -> None:
    pf, _mxg = internal_postfix
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
        for i in range(20):
            s.sendmail(
                "clerk@internal.test",
                [f"r{i}@good.test", f"r{i}@implicit.test"],
                f"Message-ID: <pf-{i}@internal.test>\r\nSubject: via postfix {i}\r\n"
                f"\r\nhello {i}\r\n",
            )
    got = lambda: sinks["good1"].recipients() + sinks["good2"].recipients()  # noqa: E731
    wait_for(
        lambda: len(got()) == 20 and len(sinks["implicit"].recipients()) == 20,
        timeout=60,
        what="20 messages via postfix and mxg",
    )
    assert pf.statuses().count("sent") == 40  # one line per recipient
    assert "250 2.0.0 Ok: queued as" in pf.log()
    assert sorted({m.message_id for m in sinks["implicit"].messages}) == sorted(
        f"<pf-{i}@internal.test>" for i in range(20)
    )
    received = sinks["implicit"].messages[0].data.decode()
    assert "by mxg.test (mxg) with ESMTP" in received


@pytest.fixture
def receiving_postfix(tmp_path: Path) -> Iterator[postfix.Postfix]:
    cert, key = self_signed(tmp_path / "pf-certs", "mx.postfix.test")
    pf = postfix.Postfix(
        "receiver",
        SINK_PORT,
        {
            "myhostname": "mx.postfix.test",
            "relay_domains": "postfix.test",
            "transport_maps": "inline:{postfix.test=discard:delivered}",
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_security_level": "may",
            "smtpd_tls_loglevel": "1",
            "smtpd_relay_restrictions": "permit_mynetworks, permit_auth_destination, reject",
        },
    )
    # The certificate must be readable by Postfix's unprivileged daemons.
    for p in (cert, key):
        p.chmod(0o644)
    for d in (tmp_path, tmp_path / "pf-certs", *tmp_path.parents):
        if str(d).startswith("/tmp/pytest-of"):
            d.chmod(0o755)
    pf.start()
    yield pf
    pf.stop()


def test_mxg_delivers_to_postfix_with_required_starttls(
    make_mxg: Callable[..., MxgProcess], receiving_postfix: postfix.Postfix, sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(level="encrypted")
    with smtplib.SMTP("127.0.0.1", mxg.port, timeout=30) as s:
        s.sendmail(
            "clerk@internal.test",
            ["a@postfix.test", "b@postfix.test"],
            "Subject: to postfix\r\n\r\nhello\r\n",
        )
    wait_for(
        lambda: receiving_postfix.statuses().count("sent") == 2,
        timeout=60,
        what="postfix accepted and discarded both",
    )
    log = receiving_postfix.log()
    assert "TLS connection established from" in log
    assert "status=sent (delivered)" in log
    # The receiving server has the message before the relay's reply is in
    # (and, on PostgreSQL, stored before its line is logged): waited for.
    wait_for(lambda: "status=sent" in mxg.log_text(), timeout=10, what="mxg's delivery line")
    assert "tls=TLSv1." in mxg.log_text()
