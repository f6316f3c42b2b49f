"""How recovery knows what mxg spooled for a decision, so that a crash
neither loses nor repeats a decision notice or a secure envelope's
carrier (ARCHITECTURE.md rule 10).

Both are spooled first and recorded after, the index row and the record
in one durable transaction (`mxg.store.decisions`). A crash between the
spool's fsync and that transaction leaves a spool file the index does
not know. Recovery does not classify such a file afresh (which would
send a second notice, or a carrier at its class's level instead of the
``carrier_level``): it reads the record back from the file and finishes
the same transaction.

- A notice carries ``X-Mxg-Asked: <queue id>; <token id or ->; <expiry
  in ms>; <recipient indexes>``: everything ``asked`` records. The token
  id is no secret (the link's HMAC is: `mxg.decide.tokens`), and the
  notice goes to the internal sender only.
- A carrier is found by its Message-ID, which the carrier stored with the
  decision holds (`mxg.envelope.carrier` makes a unique one) and the
  spooled envelope repeats.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

ASKED_HEADER = "X-Mxg-Asked"

_ASKED = re.compile(r"^\s*(\S+)\s*;\s*(-|[0-9a-f]{32})\s*;\s*(\d{1,15})\s*;\s*([\d,\s]+)$")


@dataclass(frozen=True)
class Asked:
    """What one notice asks about: its recipients and its link."""

    queue_id: str
    indexes: list[int]
    token_id: str | None
    expires_ms: int

    def header(self) -> str:
        # ", " between indexes so that a long list folds (RFC 5322 §2.2.3).
        indexes = ", ".join(str(i) for i in self.indexes)
        return f"{self.queue_id}; {self.token_id or '-'}; {self.expires_ms}; {indexes}"


def parse_asked(value: str) -> Asked | None:
    """The header's record; None when it is not one mxg wrote."""
    m = _ASKED.match(" ".join(value.split()))
    if m is None:
        return None
    try:
        indexes = [int(i) for i in m[4].replace(" ", "").split(",")]
    except ValueError:
        return None
    return Asked(m[1], indexes, None if m[2] == "-" else m[2], int(m[3]))


def _headers(data: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(data)


def asked_of(data: bytes) -> Asked | None:
    """The record of a spooled notice, or None for any other message."""
    value = _headers(data).get(ASKED_HEADER)
    return parse_asked(str(value)) if value else None


def message_id_of(data: bytes) -> str | None:
    """The Message-ID header's value, as spooled envelopes keep it."""
    value = _headers(data).get("Message-ID")
    text = " ".join(str(value).split()) if value else ""
    return text or None


def carrier_of(message_id: str | None, carriers: Sequence[tuple[int, bytes]]) -> int | None:
    """The id of the stored carrier whose Message-ID a spooled message has."""
    if not message_id:
        return None
    for carrier_id, data in carriers:
        if message_id_of(data) == message_id:
            return carrier_id
    return None
