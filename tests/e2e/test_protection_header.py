"""The protection header (docs/configuration.md, "The protection header")
as real receiving servers get it: the level each delivery's session
achieved, its method and TLS version, exactly once, whatever the sender
put there; nothing at all when it is off."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SINK_PORT
from tests.e2e.test_classes import OPPORTUNISTIC_NORMAL, message, send
from tests.e2e.test_dane import line_for
from tests.e2e.test_delivery import wait_for
from tests.support import postfix
from tests.support.certs import self_signed
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e

ON = {"MXG_DELIVERY__PROTECTION_HEADER": "true"}
# The "modern" profile admits X25519, which an opportunistic session (it
# offers all rustls has) negotiates: so its sessions can reach encrypted
# and qualified. Under the default BSI profile they stay opportunistic.
MODERN = {"MXG_DELIVERY__TLS_PROFILE": '"modern"'}
FORGED = b"X-MXG-Protection: qualified; method=pinned; tls=TLSv1.3\r\n"
FIELD = re.compile(rb"^x-mxg-protection:(.*)$", re.IGNORECASE | re.MULTILINE)


def _forged(to: str) -> bytes:
    """A message whose sender claims the best protection, twice (one
    folded), as a forger or an earlier gateway would."""
    return FORGED + message(to).replace(
        b"\r\n\r\n", b"\r\nx-mxg-protection: qualified;\r\n method=dane-ee\r\n\r\n", 1
    )


def _fields(sink: Sink, rcpt: str) -> list[str]:
    got = next(m.data for m in sink.messages if rcpt in m.rcpt_tos)
    head = got.split(b"\r\n\r\n", 1)[0]
    return [v.strip().decode() for v in FIELD.findall(head.replace(b"\r\n ", b" "))]


def _logged_level(mxg: MxgProcess, rcpt: str) -> str:
    line = line_for(mxg, rcpt)
    assert "status=sent" in line, line
    return line.split("level=", 1)[1].split()[0]


def test_the_header_states_what_each_session_achieved_and_replaces_any_forged_one(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    # Class normal at opportunistic: the header must say what was reached,
    # not what was asked for.
    mxg = make_mxg(extra=OPPORTUNISTIC_NORMAL, env=ON | MODERN)
    for rcpt in ("a@dane.test", "b@notlsa.test", "c@good.test"):
        assert send(mxg.port, [rcpt], _forged(rcpt))[0] == 250
    wait_for(
        lambda: (
            "a@dane.test" in sinks["dane"].recipients()
            and "b@notlsa.test" in sinks["dane"].recipients()
            and "c@good.test" in sinks["good1"].recipients()
        ),
        what="the three deliveries",
    )
    # DANE-EE authenticated the server although the job did not need it.
    assert _logged_level(mxg, "a@dane.test") == "qualified"
    assert _fields(sinks["dane"], "a@dane.test") == ["qualified; method=dane-ee; tls=TLSv1.3"]
    # TLS without authentication (a signed zone without TLSA records).
    assert _logged_level(mxg, "b@notlsa.test") == "encrypted"
    assert _fields(sinks["dane"], "b@notlsa.test") == ["encrypted; tls=TLSv1.3"]
    # No STARTTLS at all: plaintext, and the header says so.
    assert _logged_level(mxg, "c@good.test") == "none"
    assert _fields(sinks["good1"], "c@good.test") == ["none"]
    # On top of the header section, where trace fields go.
    first = next(m.data for m in sinks["good1"].messages if "c@good.test" in m.rcpt_tos)
    assert first.startswith(b"X-MXG-Protection: none\r\n")


def test_a_session_outside_the_profile_is_stated_as_opportunistic(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    # BSI TR-02102-2 has no X25519: the authenticated session is outside
    # the profile, so neither encrypted nor qualified, and no method counts.
    mxg = make_mxg(extra=OPPORTUNISTIC_NORMAL, env=ON)
    assert send(mxg.port, ["a@dane.test"], _forged("a@dane.test"))[0] == 250
    wait_for(lambda: "a@dane.test" in sinks["dane"].recipients(), what="the delivery")
    assert "group=x25519" in line_for(mxg, "a@dane.test")
    assert _logged_level(mxg, "a@dane.test") == "opportunistic"
    assert _fields(sinks["dane"], "a@dane.test") == ["opportunistic; tls=TLSv1.3"]


def test_without_the_setting_nothing_is_added_or_removed(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(extra=OPPORTUNISTIC_NORMAL)
    assert send(mxg.port, ["a@dane.test"], message("a@dane.test"))[0] == 250
    assert send(mxg.port, ["b@dane.test"], _forged("b@dane.test"))[0] == 250
    wait_for(
        lambda: {"a@dane.test", "b@dane.test"} <= set(sinks["dane"].recipients()),
        what="both deliveries",
    )
    assert _fields(sinks["dane"], "a@dane.test") == []
    # The message is left as it came: mxg makes no claim either way.
    assert _fields(sinks["dane"], "b@dane.test") == [
        "qualified; method=pinned; tls=TLSv1.3",
        "qualified; method=dane-ee",
    ]


@pytest.fixture
def header_logging_postfix() -> Iterator[postfix.Postfix]:
    """A receiving Postfix for postfix.test that logs every
    X-MXG-Protection field it gets (header_checks WARN) and discards the
    mail. Its files live where Postfix's unprivileged daemons can read."""
    if not postfix.available():
        pytest.skip("postfix is not installed")
    files = Path(tempfile.mkdtemp(prefix="mxg-pf-protection-"))
    files.chmod(0o755)
    cert, key = self_signed(files, "mx.postfix.test")
    checks = files / "header_checks"
    checks.write_text("/^X-MXG-Protection:/ WARN\n")
    for f in (cert, key, checks):
        f.chmod(0o644)
    pf = postfix.Postfix(
        "protection",
        SINK_PORT,
        {
            "myhostname": "mx.postfix.test",
            "relay_domains": "postfix.test",
            "transport_maps": "inline:{postfix.test=discard:delivered}",
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_security_level": "may",
            "smtpd_relay_restrictions": "permit_mynetworks, permit_auth_destination, reject",
            "header_checks": f"regexp:{checks}",
        },
    )
    pf.start()
    yield pf
    pf.stop()
    shutil.rmtree(files, ignore_errors=True)


@pytest.mark.postfix
def test_a_receiving_postfix_sees_one_field_with_the_achieved_level(
    make_mxg: Callable[..., MxgProcess],
    header_logging_postfix: postfix.Postfix,
    sinks: dict[str, Sink],
) -> None:
    mxg = make_mxg(level="encrypted", env=ON)
    assert send(mxg.port, ["a@postfix.test"], _forged("a@postfix.test"))[0] == 250
    wait_for(
        lambda: header_logging_postfix.statuses().count("sent") == 1,
        timeout=60,
        what="postfix accepted and discarded the message",
    )
    achieved = _logged_level(mxg, "a@postfix.test")
    version = line_for(mxg, "a@postfix.test").split(" tls=", 1)[1].split()[0]
    warned = re.findall(
        r"warning: header (X-MXG-Protection: [^;]*(?:;[^;]*)*?) from ", header_logging_postfix.log()
    )
    assert warned == [f"X-MXG-Protection: {achieved}; tls={version}"]
