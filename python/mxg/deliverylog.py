"""Logging: one structured line per delivery attempt per recipient.

Text lines read like ``key=value`` pairs (values with spaces quoted), JSON
lines carry the same keys; both are stable for log shippers.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("mxg")
delivery_log = logging.getLogger("mxg.delivery")

_FIELDS = "mxg_fields"


def _quote(v: object) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' "=\t'):
        return json.dumps(s, ensure_ascii=False)
    return s


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        head = (
            f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname.lower()} "
            f"{record.name}: {record.getMessage()}"
        )
        fields: dict[str, Any] | None = getattr(record, _FIELDS, None)
        if fields:
            head += " " + " ".join(f"{k}={_quote(v)}" for k, v in fields.items() if v is not None)
        if record.exc_info:
            head += "\n" + self.formatException(record.exc_info)
        return head


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, _FIELDS, None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str, fmt: str, file: Path | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("mxg")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def event(logger: logging.Logger, msg: str, severity: int = logging.INFO, /, **fields: Any) -> None:
    """Logs ``msg`` with structured fields (any name, ``level`` included)."""
    if logger.isEnabledFor(severity):
        logger.log(severity, msg, extra={_FIELDS: fields})


def delivery(
    *,
    queue_id: str,
    message_id: str | None,
    sender: str,
    recipient: str,
    host: str,
    ip: str,
    status: str,
    code: int | None,
    enhanced: str,
    text: str,
    tls_version: str,
    cipher: str,
    group: str,
    dnssec: str,
    method: str,
    level: str,
    delay_s: float,
    attempt: int,
    risk_class: str = "",
    required: str = "",
) -> None:
    """The delivery line (DESIGN.md: queue id, Message-ID, sender, recipient,
    relay, status, code and text, TLS, delay)."""
    relay = f"{host}[{ip}]" if host else "none"
    event(
        delivery_log,
        status,
        logging.INFO if status == "sent" else logging.WARNING,
        queue_id=queue_id,
        message_id=message_id or "",
        **{"from": f"<{sender}>"},
        to=f"<{recipient}>",
        relay=relay,
        status=status,
        code=code,
        dsn=enhanced or None,
        reply=text,
        tls=tls_version or "none",
        cipher=cipher or None,
        group=group or None,
        dnssec=dnssec or None,
        method=method or None,
        level=level or None,
        **{"class": risk_class or None},
        required=required or None,
        delay=f"{delay_s:.2f}",
        attempt=attempt,
    )
