"""TLS reports (RFC 8460): the _smtp._tls record's rua (§3), the report
JSON (§4), its mail form (§5.3, DKIM-signed and checked by Perl's
Mail::DKIM, an independent verifier), and the sending rules: no traffic
no report, once per day and destination, a rate limit per destination."""

from __future__ import annotations

import base64
import email
import gzip
import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mxg.errors import MxgError
from mxg.store import Store
from mxg.tlsrpt.mail import DkimKey, build_mail, sign
from mxg.tlsrpt.record import MAX_RUA, Discovery, RecordError, parse_record
from mxg.tlsrpt.report import Reporter, build_report, day_bounds
from mxg.tlsrpt.send import DaySender, SendError, Settings
from mxg.tlsrpt.sessions import SessionKey, Tally

DAY = "2026-03-04"
NOPOL = '{"policy-type":"no-policy-found"}'
REPORTER = Reporter("Example Gateway", "tlsrpt@gw.test")


# -- rua (§3) -----------------------------------------------------------


def test_rua_mailto_and_https_are_parsed_with_their_destinations() -> None:
    rua = parse_record(
        [
            "v=spf1 -all",
            "v=TLSRPTv1; rua=mailto:Reports@Collector.test, https://r.example.test/v1/tlsrpt;"
            " ext=1;",
        ]
    )
    assert [(r.scheme, r.target, r.destination) for r in rua] == [
        ("mailto", "Reports@collector.test", "collector.test"),
        ("https", "https://r.example.test/v1/tlsrpt", "r.example.test"),
    ]


@pytest.mark.parametrize(
    ("records", "why"),
    [
        ([], "found 0"),
        (["v=TLSRPTv1; rua=mailto:a@x.test", "v=TLSRPTv1; rua=mailto:b@x.test"], "found 2"),
        (["v=TLSRPTv1;"], "no rua"),
        (["v=TLSRPTv1"], "no rua"),
        (["v=TLSRPTv1; rua=http://x.test/r"], "only mailto: and https:"),
        (["v=TLSRPTv1; rua=ftp://x.test/r"], "only mailto: and https:"),
        (["v=TLSRPTv1; rua=mailto:a@x.test,,mailto:b@x.test"], "empty rua"),
        (["v=TLSRPTv1; rua=mailto:not-an-address"], "not one mail address"),
        (["v=TLSRPTv1; rua=mailto:a@-bad-.test"], "not one mail address"),
        (["v=TLSRPTv1; rua=mailto:a..b@x.test"], "not one mail address"),
        (["v=TLSRPTv1; rua=mailto:a%0d%0aRCPT@x.test"], "not one mail address"),
        (["v=TLSRPTv1; rua=https://user@x.test/r"], "no usable host"),
        (["v=TLSRPTv1; rua=https://x.test:99999/r"], "bad port"),
        ([f"v=TLSRPTv1; rua=mailto:{'a' * 300}@x.test"], "longer than"),
        (["v=TLSRPTv1; rua=mailto:a@x.test; rua=mailto:b@x.test"], "twice"),
        (["v=TLSRPTv1; rua=mailto:a@x.test; =x"], "malformed field"),
        (["v=TLSRPTv1; rua=mailto:a@x.test; bad name=x"], "malformed field"),
        (["v=TLSRPTv10; rua=mailto:a@x.test"], "begin with"),
        (["v=TLSRPTv1; rua=mailto:a@x.test; x=" + "y" * 3000], "longer than 2048"),
    ],
)
def test_a_malformed_record_is_refused_with_its_reason(records: list[str], why: str) -> None:
    with pytest.raises(RecordError, match=why):
        parse_record(records)


def test_rua_count_is_bounded_and_duplicates_collapse() -> None:
    many = ",".join(f"mailto:r{i}@x.test" for i in range(20))
    rua = parse_record([f"v=TLSRPTv1; rua=mailto:r0@x.test,{many}"])
    assert [r.target for r in rua] == [f"r{i}@x.test" for i in range(MAX_RUA)]


def test_discovery_caches_answers_and_absences_but_not_failures() -> None:
    asked: list[str] = []
    answers: dict[str, list[str] | None] = {
        "_smtp._tls.a.test": ["v=TLSRPTv1; rua=mailto:r@a.test"],
        "_smtp._tls.none.test": None,
    }

    async def lookup(name: str) -> list[str] | None:
        asked.append(name)
        if name not in answers:
            raise OSError("SERVFAIL")
        return answers[name]

    async def main() -> None:
        d = Discovery(lookup, clock=lambda: 0.0)
        for _ in range(2):
            assert [r.target for r in await d.rua("a.test")] == ["r@a.test"]
            assert await d.rua("none.test") == []
            with pytest.raises(OSError, match="SERVFAIL"):
                await d.rua("fail.test")

    anyio.run(main)
    assert asked.count("_smtp._tls.a.test") == 1
    assert asked.count("_smtp._tls.none.test") == 1
    assert asked.count("_smtp._tls.fail.test") == 2


# -- the report (§4) ----------------------------------------------------


def rows_of(store: Store, tally: Tally) -> Any:
    store.add_tls_sessions(tally)
    return store.tlsrpt_rows(DAY, "x.test")


def test_report_json_follows_rfc8460_section_4(tmp_path: Path) -> None:
    sts = (
        '{"mx-host":["*.x.test"],"policy-string":["version: STSv1","mode: enforce",'
        '"mx: *.x.test","max_age: 86400"],"policy-type":"sts"}'
    )
    tally = Tally(
        {
            SessionKey(DAY, "x.test", sts): 7,
            SessionKey(
                DAY, "x.test", sts, "certificate-expired", "192.0.2.1", "mx1.x.test", "192.0.2.9"
            ): 2,
            SessionKey(
                DAY,
                "x.test",
                sts,
                "validation-failure",
                "192.0.2.1",
                "mx2.x.test",
                "192.0.2.8",
                "tls-profile",
            ): 1,
            SessionKey(DAY, "x.test", NOPOL): 3,
        }
    )
    report = build_report(REPORTER, DAY, "x.test", rows_of(Store(tmp_path / "q.db"), tally))
    body = json.loads(gzip.decompress(report.gzipped))
    assert body["organization-name"] == "Example Gateway"
    assert body["date-range"] == {
        "start-datetime": "2026-03-04T00:00:00Z",
        "end-datetime": "2026-03-04T23:59:59Z",
    }
    assert body["contact-info"] == "tlsrpt@gw.test"
    assert body["report-id"] == report.report_id
    by_type = {p["policy"]["policy-type"]: p for p in body["policies"]}
    assert by_type["no-policy-found"] == {
        "policy": {"policy-type": "no-policy-found", "policy-domain": "x.test"},
        "summary": {"total-successful-session-count": 3, "total-failure-session-count": 0},
    }
    s = by_type["sts"]
    assert s["policy"] == {
        "policy-type": "sts",
        "policy-string": ["version: STSv1", "mode: enforce", "mx: *.x.test", "max_age: 86400"],
        "policy-domain": "x.test",
        "mx-host": ["*.x.test"],
    }
    assert s["summary"] == {"total-successful-session-count": 7, "total-failure-session-count": 3}
    assert s["failure-details"] == [
        {
            "result-type": "certificate-expired",
            "sending-mta-ip": "192.0.2.1",
            "receiving-mx-hostname": "mx1.x.test",
            "receiving-ip": "192.0.2.9",
            "failed-session-count": 2,
        },
        {
            "result-type": "validation-failure",
            "sending-mta-ip": "192.0.2.1",
            "receiving-mx-hostname": "mx2.x.test",
            "receiving-ip": "192.0.2.8",
            "failed-session-count": 1,
            "failure-reason-code": "tls-profile",
        },
    ]
    begin, end = day_bounds(DAY)
    assert report.filename("gw.test") == (
        f"gw.test!x.test!{begin}!{end}!{report.filename('gw.test').split('!')[4]}"
    )
    assert report.filename("gw.test").endswith(".json.gz") and end - begin == 86399
    # The same report on a retry: same id, same bytes.
    again = build_report(
        REPORTER, DAY, "x.test", Store(tmp_path / "q.db").tlsrpt_rows(DAY, "x.test")
    )
    assert again.gzipped == report.gzipped


# -- the mail (§5.3), DKIM checked by Mail::DKIM ------------------------


def rsa_key(tmp_path: Path) -> tuple[Path, str]:
    """A private key file and the DKIM TXT value of its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"


PERL_VERIFY = Path(__file__).parent / "support" / "dkim_verify.pl"


def mail_dkim(message: bytes, key_txt: str) -> str:
    """Mail::DKIM's verdict on the message, with the public key given."""
    out = subprocess.run(
        ["perl", str(PERL_VERIFY), "--key", key_txt],
        input=message,
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().strip()


def test_report_mail_is_multipart_report_and_mail_dkim_verifies_it(tmp_path: Path) -> None:
    path, txt = rsa_key(tmp_path)
    tally = Tally({SessionKey(DAY, "x.test", NOPOL): 5})
    report = build_report(REPORTER, DAY, "x.test", rows_of(Store(tmp_path / "q.db"), tally))
    unsigned = build_mail(
        report, sender="gw.test", from_address="tlsrpt@gw.test", to="r@x.test", hostname="gw"
    )
    signed = sign(unsigned, DkimKey.load(path, "gw.test", "mxg"))
    assert mail_dkim(signed, txt) == "pass"
    # A changed byte in the report breaks the signature.
    tampered = signed.replace(b"covering", b"Covering")
    assert mail_dkim(tampered, txt) == "fail"
    msg = email.message_from_bytes(signed)
    assert msg["Subject"] == (
        f"Report Domain: x.test Submitter: gw.test Report-ID: <{report.report_id}>"
    )
    assert msg["TLS-Report-Domain"] == "x.test"
    assert msg["TLS-Report-Submitter"] == "gw.test"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    dkim_sig = msg["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
    assert "d=gw.test;" in dkim_sig and "s=mxg;" in dkim_sig and "l=" not in dkim_sig
    part = msg.get_payload()[1]
    assert part.get_content_type() == "application/tlsrpt+gzip"
    assert part.get_filename() == report.filename("gw.test")
    assert json.loads(gzip.decompress(part.get_payload(decode=True))) == report.body


# -- sending: no traffic no report, once a day, the rate limit ----------


class FakeOutbox:
    """Records what would be sent (the real one: tests/e2e/test_tlsrpt.py)."""

    def __init__(self, fail: SendError | None = None) -> None:
        self.mails: list[str] = []
        self.posts: list[str] = []
        self.fail = fail

    async def mail(self, message: bytes, sender: str, to: str, report: Any) -> str:
        if self.fail:
            raise self.fail
        self.mails.append(to)
        return f"Q{len(self.mails)}"

    async def post(self, url: str, body: bytes) -> str:
        if self.fail:
            raise self.fail
        self.posts.append(url)
        return "200 OK"


def sender_for(
    store: Store, records: dict[str, str], outbox: FakeOutbox, *, limit: int = 100, dkim: Any
) -> DaySender:
    async def lookup(name: str) -> list[str] | None:
        rec = records.get(name.removeprefix("_smtp._tls."))
        return [rec] if rec else None

    settings = Settings(REPORTER, "tlsrpt@gw.test", "gw", dkim, limit, 3)
    return DaySender(store, settings, Discovery(lookup), outbox, clock=lambda: 10**12)


@pytest.fixture
def dkim(tmp_path: Path) -> DkimKey:
    return DkimKey.load(rsa_key(tmp_path)[0], "gw.test", "mxg")


def test_no_traffic_no_report_and_each_destination_once(tmp_path: Path, dkim: DkimKey) -> None:
    store = Store(tmp_path / "q.db")
    store.add_tls_sessions(
        Tally({SessionKey(DAY, "x.test", NOPOL): 1, SessionKey(DAY, "quiet.test", NOPOL): 1})
    )
    records = {
        "x.test": "v=TLSRPTv1; rua=mailto:r@x.test,https://r.x.test/",
        "quiet.test": "v=TLSRPTv1; rua=mailto:r@quiet.test",
        # It publishes a record but had no sessions that day: no report.
        "idle.test": "v=TLSRPTv1; rua=mailto:r@idle.test",
    }
    store.add_tls_sessions(Tally({SessionKey("2026-03-05", "idle.test", NOPOL): 1}))
    outbox = FakeOutbox()
    first = anyio.run(sender_for(store, records, outbox, dkim=dkim).run, DAY)
    assert sorted(outbox.mails) == ["r@quiet.test", "r@x.test"]
    assert outbox.posts == ["https://r.x.test/"]
    assert {o.status for o in first} == {"sent"}
    # A second run (a restart, the next scheduled tick) sends nothing
    # again, and builds no report to find that out.
    built: list[str] = []
    rows = store.tlsrpt_rows
    store.tlsrpt_rows = lambda day, domain: built.append(domain) or rows(day, domain)  # type: ignore[method-assign]
    again = anyio.run(sender_for(store, records, outbox, dkim=dkim).run, DAY)
    assert len(outbox.mails) == 2 and len(outbox.posts) == 1
    assert {o.status for o in again} == {"done"}
    assert built == []
    # Asked for one domain: that one; for one without sessions: nothing.
    one = sender_for(store, records, outbox, dkim=dkim)
    assert {o.domain for o in anyio.run(one.run, DAY, ["x.test"])} == {"x.test"}
    assert anyio.run(one.run, DAY, ["idle.test"]) == []


def test_the_rate_limit_holds_back_reports_to_one_destination(
    tmp_path: Path, dkim: DkimKey
) -> None:
    store = Store(tmp_path / "q.db")
    domains = [f"d{i}.test" for i in range(5)]
    store.add_tls_sessions(Tally({SessionKey(DAY, d, NOPOL): 1 for d in domains}))
    # All five hand their reports to one collector.
    records = dict.fromkeys(domains, "v=TLSRPTv1; rua=mailto:reports@collector.test")
    outbox = FakeOutbox()
    out = anyio.run(sender_for(store, records, outbox, limit=2, dkim=dkim).run, DAY)
    assert len(outbox.mails) == 2
    assert [o.status for o in out].count("waiting") == 3
    # Within the same hour the store's marks still count against it.
    anyio.run(sender_for(store, records, outbox, limit=2, dkim=dkim).run, DAY)
    assert len(outbox.mails) == 2


def test_failures_are_retried_later_and_given_up_after_max_tries(
    tmp_path: Path, dkim: DkimKey
) -> None:
    store = Store(tmp_path / "q.db")
    store.add_tls_sessions(Tally({SessionKey(DAY, "x.test", NOPOL): 1}))
    records = {"x.test": "v=TLSRPTv1; rua=https://r.x.test/"}
    outbox = FakeOutbox(SendError("POST: 503"))
    sender = sender_for(store, records, outbox, dkim=dkim)
    assert [o.status for o in anyio.run(sender.run, DAY)] == ["failed"]
    # Not before its retry time.
    assert [o.status for o in anyio.run(sender.run, DAY)] == ["waiting"]
    outbox.fail = SendError("POST: 404", permanent=True)
    store.db.execute("UPDATE tlsrpt_sent SET next_ms = 0")
    assert [o.status for o in anyio.run(sender.run, DAY)] == ["gave-up"]
    assert [o.status for o in anyio.run(sender.run, DAY)] == ["done"]


def test_mailto_without_a_dkim_key_is_skipped_https_still_goes(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db")
    store.add_tls_sessions(Tally({SessionKey(DAY, "x.test", NOPOL): 1}))
    records = {"x.test": "v=TLSRPTv1; rua=mailto:r@x.test,https://r.x.test/"}
    outbox = FakeOutbox()
    out = anyio.run(sender_for(store, records, outbox, dkim=None).run, DAY)
    assert [o.status for o in out] == ["skipped", "sent"]
    assert outbox.mails == [] and outbox.posts == ["https://r.x.test/"]


def test_a_domain_without_a_usable_record_is_looked_up_once_a_day(
    tmp_path: Path, dkim: DkimKey
) -> None:
    store = Store(tmp_path / "q.db")
    store.add_tls_sessions(Tally({SessionKey(DAY, "x.test", NOPOL): 1}))
    records = {"x.test": "v=TLSRPTv1; rua=gopher://x.test/"}
    out = anyio.run(sender_for(store, records, FakeOutbox(), dkim=dkim).run, DAY)
    assert out[0].status == "no-record" and "only mailto: and https:" in out[0].detail
    assert store.tlsrpt_marks(DAY, "x.test")[""].status == "no-record"


def ec_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"not a key", "not a PEM private key"), (ec_pem(), "not an RSA key")],
)
def test_an_unusable_dkim_key_is_one_clear_error(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(content)
    with pytest.raises(MxgError, match=why):
        DkimKey.load(path, "gw.test", "mxg")
    with pytest.raises(MxgError, match="No such file"):
        DkimKey.load(tmp_path / "missing.pem", "gw.test", "mxg")
