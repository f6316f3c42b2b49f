"""TLS reports (RFC 8460) against real peers: mxg delivers to a DANE
domain whose first MX fails its TLSA check and whose second passes, then
sends that day's report to the domain's rua: by mail to a real SMTP
server (the DKIM signature checked by Perl's Mail::DKIM against the key
the test world publishes in DNS; the JSON checked field by field) and by
an https POST to a real HTTPS server with a certificate of the test CA.

The collector's own MX fails its TLSA check too: a report is delivered
despite TLS failures (RFC 8460 §5.3, BSI TR-03108 09-M), where any other
message would wait. Each test runs its own Knot and Unbound."""

from __future__ import annotations

import base64
import email
import gzip
import ipaddress
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.conftest import SINK_PORT, TLSA, mxg_config
from tests.e2e.test_delivery import swaks, wait_for
from tests.support.certs import ca_signed, self_signed, spki_sha256
from tests.support.dns import KnotServer, UnboundServer, free_port
from tests.support.https import ReportCollector
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink
from tests.support.store import store_sql

pytestmark = pytest.mark.e2e

HTTPS_PORT = free_port("127.0.0.44")
RUA_HTTPS = f"https://reports.collector.test:{HTTPS_PORT}/v1/tlsrpt"
PERL_VERIFY = Path(__file__).parent.parent / "support" / "dkim_verify.pl"


def dkim_key(directory: Path) -> tuple[Path, list[str]]:
    """An RSA key for DKIM and its TXT record as zone-file strings (a TXT
    string holds at most 255 octets)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # No s=tlsrpt: Mail::DKIM, a general verifier, refuses a key limited
    # to TLS reports ("does not support email"); docs/tlsrpt.md says so.
    txt = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    return path, [txt[i : i + 200] for i in range(0, len(txt), 200)]


class World:
    def __init__(self, tmp: Path, backend: str, store: str) -> None:
        cert = self_signed(tmp / "mx", "unrelated.example")
        good = spki_sha256(cert[0])
        ca, web_chain, web_key = ca_signed(tmp / "web", "mxg test CA", ["reports.collector.test"])
        self.dkim_path, dkim_txt = dkim_key(tmp)
        zones = {
            "rpt.test": [
                "@ MX 10 mx1",
                "@ MX 20 mx2",
                "mx1 A 127.0.0.41",
                "mx2 A 127.0.0.42",
                f"{TLSA}.mx1 TLSA 3 1 1 {'0' * 64}",
                f"{TLSA}.mx2 TLSA 3 1 1 {good}",
                f'_smtp._tls TXT "v=TLSRPTv1; rua=mailto:reports@collector.test,{RUA_HTTPS}"',
            ],
            "collector.test": [
                "@ MX 10 mx",
                "mx A 127.0.0.43",
                f"{TLSA}.mx TLSA 3 1 1 {'1' * 64}",
                "reports A 127.0.0.44",
            ],
            "gw.test": [
                "@ MX 10 mx",
                "mx A 127.0.0.42",
                "mxg._domainkey TXT " + " ".join(f'"{s}"' for s in dkim_txt),
            ],
        }
        signed = ["rpt.test", "collector.test"]
        self.knot = KnotServer(tmp / "knot", zones, signed=signed).start()
        anchors = [self.knot.ksk(z) for z in signed]
        self.dns = UnboundServer(tmp / "unbound", self.knot, trust_anchors=anchors).start()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        self.sinks = {
            name: Sink(addr, SINK_PORT).start(tls_context=ctx, require_starttls=False)
            for name, addr in (
                ("mx1", "127.0.0.41"),
                ("mx2", "127.0.0.42"),
                ("collector", "127.0.0.43"),
            )
        }
        self.https = ReportCollector("127.0.0.44", HTTPS_PORT, web_chain, web_key).start()
        config = mxg_config(self.dns, tmp / "data", level="encrypted", store=store)
        config = config.replace('dnssec_probe = "secure.test"', 'dnssec_probe = "rpt.test"')
        config = config.replace("[delivery]\n", f'[delivery]\nca_file = "{ca}"\n', 1)
        config += f"""
[tlsrpt]
organization = "mxg test gateway"
contact = "tlsrpt@gw.test"
dkim_selector = "mxg"
dkim_key = "{self.dkim_path}"
send_hour = 0
"""
        self.data = tmp / "data"
        self.mxg = MxgProcess(tmp, config, backend).start()

    def stop(self) -> None:
        self.mxg.stop()
        self.https.stop()
        for s in self.sinks.values():
            s.stop()
        self.dns.stop()
        self.knot.stop()


@pytest.fixture
def world(tmp_path: Path, backend: str, mxg_store: str) -> Iterator[World]:
    w = World(tmp_path, backend, mxg_store)
    yield w
    w.stop()


def close_the_day(mxg: MxgProcess) -> str:
    """The day's sessions as if the UTC day had ended: the aggregate is
    the relay's own, only its day moves back by one (a report covers a
    closed day, and a test cannot wait for midnight)."""
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    with store_sql(mxg) as db:
        db.execute("UPDATE tlsrpt_sessions SET day = ?", (yesterday,))
    return yesterday


def mail_dkim_via_dns(message: bytes, dns: UnboundServer) -> str:
    out = subprocess.run(
        ["perl", str(PERL_VERIFY), "--dns", dns.address, "--port", str(dns.port)],
        input=message,
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().strip() + " " + out.stderr.decode().strip()


def check_report(body: dict[str, Any], day: str) -> None:
    """RFC 8460 §4.4, field by field."""
    assert set(body) == {
        "organization-name",
        "date-range",
        "contact-info",
        "report-id",
        "policies",
    }
    assert body["organization-name"] == "mxg test gateway"
    assert body["date-range"] == {
        "start-datetime": f"{day}T00:00:00Z",
        "end-datetime": f"{day}T23:59:59Z",
    }
    assert body["contact-info"] == "tlsrpt@gw.test"
    assert isinstance(body["report-id"], str) and body["report-id"]
    by_mx = {p["policy"]["mx-host"][0]: p for p in body["policies"]}
    assert set(by_mx) == {"mx1.rpt.test", "mx2.rpt.test"}
    for p in by_mx.values():
        assert p["policy"]["policy-type"] == "tlsa"
        assert p["policy"]["policy-domain"] == "rpt.test"
    good, bad = by_mx["mx2.rpt.test"], by_mx["mx1.rpt.test"]
    assert good["policy"]["policy-string"][0].startswith("3 1 1 ")
    assert good["summary"] == {
        "total-successful-session-count": 1,
        "total-failure-session-count": 0,
    }
    assert "failure-details" not in good
    assert bad["policy"]["policy-string"] == [f"3 1 1 {'0' * 64}"]
    assert bad["summary"] == {
        "total-successful-session-count": 0,
        "total-failure-session-count": 1,
    }
    (detail,) = bad["failure-details"]
    assert detail["result-type"] == "tlsa-invalid"
    assert detail["receiving-mx-hostname"] == "mx1.rpt.test"
    assert detail["receiving-ip"] == "127.0.0.41"
    assert detail["failed-session-count"] == 1
    assert ipaddress.ip_address(detail["sending-mta-ip"]).is_loopback


def test_a_days_report_reaches_mailto_dkim_signed_and_https_once(world: World) -> None:
    mxg = world.mxg
    out = swaks(mxg.port, "alice@gw.test", ["bob@rpt.test"])
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for(lambda: world.sinks["mx2"].recipients() == ["bob@rpt.test"], what="delivery")
    day = close_the_day(world.mxg)

    dry = mxg.cli("tlsrpt", "send", "--day", day, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    check_report(json.loads(dry.stdout), day)
    assert world.sinks["collector"].messages == [] and world.https.posts == []

    sent = mxg.cli("tlsrpt", "send", "--day", day)
    assert sent.returncode == 0, sent.stdout + sent.stderr + mxg.log_text()[-3000:]
    lines = sorted(sent.stdout.splitlines())
    assert len(lines) == 2
    assert lines[0].startswith(f"{day} rpt.test {RUA_HTTPS} sent POST")
    assert lines[1].startswith(f"{day} rpt.test mailto:reports@collector.test sent queued as ")

    # https: one POST of the gzipped JSON (RFC 8460 §5.4).
    (path, headers, body) = world.https.posts[0]
    assert path == "/v1/tlsrpt"
    assert headers["Content-Type"] == "application/tlsrpt+gzip"
    posted = json.loads(gzip.decompress(body))
    check_report(posted, day)

    # mail: through mxg's queue to the collector's MX, whose TLSA matches
    # nothing: a report goes anyway (RFC 8460 §5.3).
    collector = world.sinks["collector"]
    wait_for(lambda: collector.recipients() == ["reports@collector.test"], what="report mail")
    received = collector.messages[0]
    assert received.mail_from == "tlsrpt@gw.test"
    verdict = mail_dkim_via_dns(received.data, world.dns)
    assert verdict.startswith("pass"), verdict
    msg = email.message_from_bytes(received.data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == "rpt.test"
    assert msg["TLS-Report-Submitter"] == "gw.test"
    assert msg["Subject"] == (
        f"Report Domain: rpt.test Submitter: gw.test Report-ID: <{posted['report-id']}>"
    )
    part = msg.get_payload()[1]
    assert part.get_content_type() == "application/tlsrpt+gzip"
    begin = int(datetime.fromisoformat(f"{day}T00:00:00+00:00").timestamp())
    assert part.get_filename().startswith(f"gw.test!rpt.test!{begin}!{begin + 86399}!")
    assert part.get_filename().endswith(".json.gz")
    mailed = json.loads(gzip.decompress(part.get_payload(decode=True)))
    assert mailed == posted

    # Once per day and destination: asking again sends nothing.
    again = mxg.cli("tlsrpt", "send", "--day", day)
    assert again.returncode == 0, again.stderr
    assert all(" done sent" in line for line in again.stdout.splitlines()), again.stdout
    time.sleep(1)
    assert len(collector.messages) == 1 and len(world.https.posts) == 1

    # The report's own session is not counted for the next report.
    with store_sql(world.mxg) as db:
        domains = {r[0] for r in db.execute("SELECT domain FROM tlsrpt_sessions")}
    assert domains == {"rpt.test"}


def test_send_refuses_a_day_not_yet_over_and_a_day_without_traffic(world: World) -> None:
    today = datetime.now(UTC).date().isoformat()
    out = world.mxg.cli("tlsrpt", "send", "--day", today)
    assert out.returncode == 1 and "has not ended yet" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = world.mxg.cli("tlsrpt", "send", "--day", "2020-01-01", "--dry-run")
    assert out.returncode == 1 and "no sessions on 2020-01-01" in out.stderr
    out = world.mxg.cli("tlsrpt", "send", "--day", "2020-13-01")
    assert out.returncode == 2 and "is not a day" in out.stderr


def https_line(out: subprocess.CompletedProcess[str]) -> str:
    return next(line for line in out.stdout.splitlines() if RUA_HTTPS in line)


def test_an_https_destination_that_fails_is_tried_again_later(world: World) -> None:
    mxg = world.mxg
    out = swaks(mxg.port, "alice@gw.test", ["bob@rpt.test"])
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for(lambda: world.sinks["mx2"].recipients() == ["bob@rpt.test"], what="delivery")
    day = close_the_day(world.mxg)
    world.https.status = 503
    first = mxg.cli("tlsrpt", "send", "--day", day)
    assert first.returncode == 1
    assert first.stderr == "mxg: tlsrpt send: 1 report(s) not delivered (see above)\n"
    assert " failed POST " in https_line(first) and "503" in https_line(first)
    # Not again before its retry time; the mail report is done.
    second = mxg.cli("tlsrpt", "send", "--day", day)
    assert second.returncode == 0, second.stderr
    assert https_line(second).endswith(" waiting retry later")
    assert len(world.https.posts) == 1
    # Its retry time comes (moved forward here, not waited for): it goes.
    world.https.status = 202
    with store_sql(world.mxg) as db:
        db.execute("UPDATE tlsrpt_sent SET next_ms = 0 WHERE rua = ?", (RUA_HTTPS,))
    third = mxg.cli("tlsrpt", "send", "--day", day)
    assert third.returncode == 0, third.stderr
    assert " sent POST " in https_line(third) and "202" in https_line(third)
    assert len(world.https.posts) == 2
    # A refusal for good (4xx) is not tried again.
    with store_sql(world.mxg) as db:
        db.execute(
            "UPDATE tlsrpt_sent SET status = 'failed', next_ms = 0 WHERE rua = ?", (RUA_HTTPS,)
        )
    world.https.status = 404
    fourth = mxg.cli("tlsrpt", "send", "--day", day)
    assert fourth.returncode == 1
    assert " gave-up POST " in https_line(fourth)
    fifth = mxg.cli("tlsrpt", "send", "--day", day)
    assert https_line(fifth).endswith(" done gave-up")
