"""Signed per-message proof (``mxg proof``): one self-contained document
that says, for each recipient of a message, how it was protected, signed
with the gateway's Ed25519 key so that it can be checked offline, years
later, without the gateway or its database.

The signature covers a *manifest*: the SHA-256 of every leaf of the
document under its JSON pointer (``/recipients/0/tls_version``). So
`verify` does not only say that something changed: it names each field
that was changed, added or removed. The manifest and the signature are
the document's last two members.

What a proof holds: the message (queue ID, Message-ID, sender, time,
size, class and the rules that set it), for each recipient the level
required and reached with the method, the server's name and address, TLS
version, cipher and group, each certificate's SHA-256, the matched TLSA
record, the MTA-STS policy, the DNSSEC status of the MX and address
answers, the final reply and every attempt; operator actions; and the
message's records in the audit trail (number and hash), which tie the
proof to the chain that `mxg audit verify` checks.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from mxg.config import Config
from mxg.evidence import flatten, rfc3339
from mxg.signing import SigningKey, Verifier
from mxg.store import EvidenceQuery, Store
from mxg.store.records import now_ms

FORMAT = "mxg-proof/1"
# Kept out of the manifest: what signs it.
UNSIGNED = ("manifest", "signature")


def build(store: Store, cfg: Config, queue_id: str) -> dict[str, Any] | None:
    """The proof of one message, unsigned; None when the store has no
    such message."""
    # The message, its recipients, attempts and operator events, as
    # `mxg queue show` reads them.
    details = store.details(queue_id)
    if details is None:
        return None
    classification = orjson.loads(details["classification"] or "{}")
    recipients = [
        _recipient(flatten(row, cfg), details["attempts"])
        for row in store.evidence(EvidenceQuery(queue_id=queue_id))
    ]
    return {
        "format": FORMAT,
        "issued": rfc3339(now_ms()),
        "gateway": cfg.server.hostname,
        "message": {
            "queue_id": queue_id,
            "message_id": details["message_id"] or "",
            "sender": details["sender"],
            "received": rfc3339(details["received_ms"]),
            "size": details["size"],
            "client": details["client_addr"] or "",
            "class": details["class"] or cfg.classify.default_class,
            "rules": [
                {"rule": f.get("rule", ""), "why": f.get("why", "")}
                for f in classification.get("fired", [])
            ],
        },
        "recipients": recipients,
        "operator_actions": [
            {
                "at": rfc3339(e["at_ms"]),
                "actor": e["actor"],
                "action": e["action"],
                "detail": e["detail"] or "",
            }
            for e in details["events"]
        ],
        "audit": [
            {"seq": r.seq, "kind": r.kind, "block": r.block, "block_hash": r.block_hash.hex()}
            for r in store.audit_of(queue_id)
        ],
    }


def _recipient(rec: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """A recipient's evidence, certificates as a list, with its attempts
    (`attempts`: the message's, in order)."""
    out = {k: v for k, v in rec.items() if k not in ("queue_id", "message_id", "received")}
    out["peer_cert_sha256"] = rec["peer_cert_sha256"].split() if rec["peer_cert_sha256"] else []
    # A TLSA record is used only from a DNSSEC-secure answer (RFC 7672
    # section 2.2, ARCHITECTURE.md rule 2): one that matched was secure.
    out["tlsa_dnssec"] = "secure" if rec["tlsa"] else ""
    out["attempts"] = [
        {
            "at": rfc3339(t["at_ms"]),
            "status": t["status"],
            "code": t["code"],
            "enhanced": t["enhanced"] or "",
            "reply": t["text"] or "",
            "host": t["host"] or "",
            "ip": t["ip"] or "",
            "level": t["level"] or "",
            "reason": t["reason"] or "",
        }
        for t in attempts
        if t["address"] == rec["recipient"]
    ]
    return out


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar of a JSON value under its JSON pointer (RFC 6901);
    empty objects and lists are leaves too, so removing one shows."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from leaves(v, f"{path}/{str(k).replace('~', '~0').replace('/', '~1')}")
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}/{i}")
    else:
        yield path, value


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value)).hexdigest()


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return b"mxg proof manifest v1\n" + orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)


def sign(proof: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """The proof with its manifest and the manifest's signature."""
    body = {k: v for k, v in proof.items() if k not in UNSIGNED}
    manifest = {
        "key_id": key.key_id,
        "fields": {path: _digest(v) for path, v in leaves(body)},
    }
    signature = base64.b64encode(key.sign(_manifest_bytes(manifest))).decode()
    return {**body, "manifest": manifest, "signature": {"alg": "Ed25519", "value": signature}}


@dataclass(frozen=True)
class Check:
    """What `verify` found: nothing wrong, or which fields differ."""

    signature_ok: bool
    changed: list[str]
    added: list[str]
    removed: list[str]
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.signature_ok and not (self.changed or self.added or self.removed)


def verify(document: dict[str, Any], verifier: Verifier) -> Check:
    manifest = document.get("manifest")
    signature = document.get("signature")
    if not isinstance(manifest, dict) or not isinstance(signature, dict):
        return Check(False, [], [], [], "no manifest or signature: not a signed mxg proof")
    if manifest.get("key_id") != verifier.key_id:
        return Check(
            False, [], [], [], f"signed by key {manifest.get('key_id')}, not by {verifier.key_id}"
        )
    try:
        raw = base64.b64decode(str(signature.get("value", "")), validate=True)
    except ValueError:
        raw = b""
    if not verifier.verify(raw, _manifest_bytes(manifest)):
        return Check(False, [], [], [], "the signature does not match the manifest")
    signed: dict[str, str] = manifest.get("fields", {})
    body = {k: v for k, v in document.items() if k not in UNSIGNED}
    now = dict(leaves(body))
    return Check(
        True,
        changed=[p for p, v in now.items() if p in signed and _digest(v) != signed[p]],
        added=[p for p in now if p not in signed],
        removed=[p for p in signed if p not in now],
    )
