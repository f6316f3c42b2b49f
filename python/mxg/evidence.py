"""Evidence for people and spreadsheets (``mxg evidence``): what the
store kept of each recipient or attempt, as one flat record: no JSON
inside JSON, every field a column, times in RFC 3339 UTC.

The fields (docs/evidence.md lists them with their meaning) are the
message's (queue ID, Message-ID, time, sender, class), the recipient's
(address, status, reply, the level required and the level reached),
what the session proved (server, TLS version, cipher, group, method, the
certificates' SHA-256, the matched TLSA record, the MTA-STS policy, the
DNSSEC status of the MX and address answers) and the typed reason of a
failure.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from mxg.config import Config

FIELDS = (
    "queue_id",
    "message_id",
    "received",
    "sender",
    "recipient",
    "class",
    "status",
    "at",
    "code",
    "enhanced",
    "reply",
    "required",
    "level",
    "method",
    "host",
    "ip",
    "tls_version",
    "cipher",
    "group",
    "peer_cert_sha256",
    "tlsa",
    "mta_sts",
    "mx_dnssec",
    "host_dnssec",
    "reason",
    # A sender's or operator's decision about a recipient that could not
    # get its level (on_unmet = ask-sender): the choice, when, who (the
    # sender through a link, or the operator's name), the link's token id
    # and the client's address.
    "decision",
    "decided",
    "decided_by",
    "decision_token",
    "decision_client",
)

# What the human table shows of them.
TABLE = ("received", "queue_id", "recipient", "class", "status", "required", "level", "method")


def rfc3339(ms: int | None) -> str:
    if not ms:
        return ""
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def flatten(row: sqlite3.Row, cfg: Config) -> dict[str, Any]:
    """One row of the store as flat evidence."""
    proved: dict[str, Any] = orjson.loads(row["evidence"]) if row["evidence"] else {}
    risk_class = row["class"] or row["message_class"] or cfg.classify.default_class
    required = row["override_level"] or str(cfg.class_policy(risk_class).level)
    decided: dict[str, Any] = orjson.loads(row["decided"]) if row["decided"] else {}
    return {
        "queue_id": row["queue_id"],
        "message_id": row["message_id"] or "",
        "received": rfc3339(row["received_ms"]),
        "sender": row["sender"],
        "recipient": row["address"],
        "class": risk_class,
        "status": row["status"],
        "at": rfc3339(row["at_ms"]),
        "code": row["code"],
        "enhanced": row["enhanced"] or "",
        "reply": row["text"] or "",
        "required": required,
        "level": row["level"] or "",
        "method": proved.get("method") or "",
        "host": row["host"] or "",
        "ip": row["ip"] or "",
        "tls_version": proved.get("version", ""),
        "cipher": proved.get("cipher", ""),
        "group": proved.get("group", ""),
        "peer_cert_sha256": " ".join(proved.get("peer_certs_sha256", [])),
        "tlsa": proved.get("tlsa") or "",
        "mta_sts": proved.get("mta_sts", ""),
        "mx_dnssec": proved.get("mx_dnssec", ""),
        "host_dnssec": proved.get("host_dnssec", ""),
        "reason": row["reason"] or proved.get("reason") or "",
        "decision": row["decision"] or "",
        "decided": rfc3339(decided.get("at_ms")),
        "decided_by": decided.get("by") or "",
        "decision_token": decided.get("token") or "",
        "decision_client": decided.get("client") or "",
    }


def as_json_lines(records: Iterable[dict[str, Any]]) -> str:
    return "".join(orjson.dumps(r).decode() + "\n" for r in records)


def as_csv(records: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def as_table(records: list[dict[str, Any]]) -> str:
    return as_table_of(records, TABLE)


def as_table_of(records: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Aligned columns for people, headed by the field names."""
    rows = [[str(r[f] if r[f] is not None else "") for f in columns] for r in records]
    header = [f.upper().replace("_", " ") for f in columns]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in [header, *rows]
    )
