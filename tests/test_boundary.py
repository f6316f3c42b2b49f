"""The boundary's records against the golden JSON that the Rust side reads
too (rust/mxg-relay/tests/boundary_golden.rs): both planes agree on every
field of a job and of a delivery result."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from mxg.boundary import (
    DeliveryDone,
    DeliveryJob,
    Received,
    decode_events,
    encode,
)
from mxg.vocab import Level, Method, Reason, Status

GOLDEN = Path(__file__).parent / "golden"


def test_the_golden_job_round_trips_field_for_field() -> None:
    raw = (GOLDEN / "job.json").read_text()
    job = msgspec.json.decode(raw, type=DeliveryJob)
    assert job.tls.level == Level.QUALIFIED
    assert [Method(m) for m in job.tls.methods] == [
        Method.DANE_EE,
        Method.DANE_TA,
        Method.MTA_STS,
        Method.DNSSEC_PKIX,
    ]
    assert job.hosts[0].tlsa[0].usage == 3
    again = json.loads(encode(job))
    golden = json.loads(raw)
    # Defaults are left out on the way to the engine, which fills them in.
    for host in golden["hosts"]:
        for key in ("tlsa", "tlsa_names", "pins", "pin_names"):
            if not host[key]:
                del host[key]
        if not host["sts"]:
            del host["sts"]
    for r in golden["recipients"]:
        if not r["notify"]:
            del r["notify"]
    for key in ("smtputf8",):
        if not golden[key]:
            del golden[key]
    if not golden["tls"]["requiretls"]:
        del golden["tls"]["requiretls"]
    assert again == golden


def test_the_golden_results_decode_with_their_reasons() -> None:
    raw = (GOLDEN / "delivery_done.json").read_bytes()
    [done] = decode_events(b"[" + raw + b"]")
    assert isinstance(done, DeliveryDone)
    statuses = {r.address: Status(r.status) for r in done.results}
    assert statuses["bob@example.test"] == Status.SENT
    for r in done.results:
        assert r.reason is None or Reason(r.reason)
        assert Level(r.level)
    failed = [r for r in done.results if r.status != "sent"]
    assert failed and all(r.reason is not None for r in failed)
    assert all(a.reason is None or Reason(a.reason) for a in done.attempts)


def test_a_malformed_event_is_refused_naming_the_field() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"envelope.*received_ms|received_ms"):
        decode_events(b'[{"type": "received", "envelope": {"queue_id": "Q"}, "features": null}]')
    [ok] = decode_events(
        b'[{"type": "received", "features": null, "envelope": {"queue_id": "Q",'
        b' "received_ms": 1, "sender": "", "recipients": [], "origin": "smtp", "size": 0,'
        b' "field_of_a_newer_engine": 1}}]'
    )
    assert isinstance(ok, Received) and ok.envelope.queue_id == "Q"
