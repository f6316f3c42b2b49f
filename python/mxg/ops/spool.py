"""A queued message as the spool holds it (``mxg queue cat``): read
through the engine's own parser of the spool format
(docs/spool-format.md), never written, never through a link (rule 8a)."""

from __future__ import annotations

from pathlib import Path

from mxg import _core
from mxg.errors import MxgError, OperatorError
from mxg.ops.selectors import QUEUE_ID


def spooled(spool_dir: Path, queue_id: str) -> tuple[str, bytes]:
    """The envelope (JSON) and the message octets of a queued message, as
    received with mxg's Received header on top, CRLF line ends."""
    qid = queue_id.strip().upper()
    if not QUEUE_ID.match(qid):
        raise OperatorError(f"{queue_id!r} is not a queue id (16 hexadecimal digits)")
    path = spool_dir / "queue" / qid
    if not path.exists():
        raise OperatorError(
            f"no message {qid} in the spool (delivered, deleted or bounced messages leave it)"
        )
    try:
        return _core.read_spool_file(str(path))
    except MxgError as e:
        raise OperatorError(f"cannot read {path}: {e}") from None


def headers(message: bytes) -> bytes:
    """The header section, up to and including the empty line that ends
    it (RFC 5322 §2.1); all of it when there is no body."""
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 4]
