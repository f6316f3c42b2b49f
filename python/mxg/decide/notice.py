"""The decision notice: one bilingual (German, English) plain-text mail
to the sender for the recipients of a message that settled together,
from the ``notice.txt`` and ``notice-subject.txt`` templates. It names
the recipients and the reason in plain words and carries the link to the
decision page, never any of the message's content but its subject."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP, default
from email.utils import formatdate
from typing import Any

from mxg.config import Config
from mxg.decide.marks import ASKED_HEADER, Asked
from mxg.decide.reasons import plain
from mxg.decide.templates import environment
from mxg.vocab import RecipientState

# The longest subject line shown; a longer one is cut (the page shows it
# whole).
MAX_SUBJECT = 200


def subject_of(message: bytes) -> str:
    """The decoded Subject of a message's header section, one line."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    subject = BytesHeaderParser(policy=default).parsebytes(head).get("Subject", "")
    # Control characters (a NUL, an escape, as raw bytes or in an encoded
    # word) become spaces: the notice's own Subject carries this text, and
    # RFC 5322 §3.2.5 allows no control character in a header field.
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in str(subject))
    return " ".join(text.split())


def when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def recipients_view(rows: Sequence[Any]) -> list[dict[str, str]]:
    out = []
    for r in rows:
        de, en = plain(r["reason"])
        out.append({"address": r["address"], "reason_de": de, "reason_en": en})
    return out


def others_view(states: Sequence[str]) -> str:
    """What the notice may say of the other recipients: ``none`` (there
    are none, say nothing), ``delivered`` (every one was), ``usual``
    (some are still on their way, or bounced: the usual course)."""
    if not states:
        return "none"
    return "delivered" if all(s == RecipientState.SENT for s in states) else "usual"


def build_notice(
    cfg: Config,
    msg: Any,
    rows: Sequence[Any],
    *,
    subject: str,
    link: str | None,
    expires_ms: int,
    choices: Sequence[str],
    others: Sequence[str] = (),
    asked: Asked | None = None,
) -> bytes:
    """The complete notice, CRLF line ends; `others` are the states of
    the message's recipients not waiting for a decision, so that the
    notice says what became of them; `asked` is its record, for recovery
    (`mxg.decide.marks`)."""
    env = environment(cfg.decisions.templates)
    lifetime_end = msg["received_ms"] + int(cfg.queue.max_lifetime * 1000)
    values = {
        "gateway": cfg.server.hostname,
        "queue_id": msg["queue_id"],
        "subject": subject[:MAX_SUBJECT],
        "recipients": recipients_view(rows),
        "link": link,
        "expires": when(expires_ms),
        "lifetime_end": when(lifetime_end),
        "choices": list(choices),
        "others": others_view(others),
    }
    body = env.get_template("notice.txt").render(values)
    title = " ".join(env.get_template("notice-subject.txt").render(values).split())
    m = EmailMessage(policy=SMTP)
    m["From"] = f"Mail Gateway <{cfg.postmaster}>"
    m["To"] = f"<{msg['sender']}>"
    m["Subject"] = title
    m["Date"] = formatdate(usegmt=True)
    m["Message-ID"] = f"<{msg['queue_id']}.{secrets.token_hex(4)}.ask@{cfg.server.hostname}>"
    # RFC 3834 §5: made by the gateway, so no auto-reply answers it.
    m["Auto-Submitted"] = "auto-generated"
    m["X-Mxg-Queue-ID"] = msg["queue_id"]
    if asked is not None:
        m[ASKED_HEADER] = asked.header()
    m.set_content(body, charset="utf-8", cte="quoted-printable")
    return m.as_bytes()
