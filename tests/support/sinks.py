"""Receiving SMTP servers for tests (aiosmtpd), each on its own 127.x
address, with scriptable answers per recipient."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class _RequireTlsSMTP(SMTP):
    """aiosmtpd refuses MAIL parameters it does not know; this one also
    takes REQUIRETLS (RFC 8689 §4.1), which the handler then sees among the
    mail options."""

    def _getparams(self, params: Any) -> dict[str, str | bool] | None:
        result = super()._getparams(params)
        if result is not None:
            result.pop("REQUIRETLS", None)
        return result


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _RequireTlsSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: str

    @property
    def message_id(self) -> str:
        return str(message_from_bytes(self.data).get("Message-ID", "")).strip()


# A policy maps a recipient to None (accept) or a reply like "450 4.2.0 busy".
Policy = Callable[[str], str | None]


@dataclass
class Sink:
    address: str
    port: int
    rcpt_policy: Policy = field(default=lambda rcpt: None)
    messages: list[Received] = field(default_factory=list)
    rcpt_attempts: list[str] = field(default_factory=list)
    mail_attempts: list[str] = field(default_factory=list)
    # The parameters of each MAIL command (SIZE=…, REQUIRETLS, …).
    mail_params: list[list[str]] = field(default_factory=list)
    ehlo_count: int = 0
    # Offer REQUIRETLS after STARTTLS (RFC 8689 §4.1).
    requiretls: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        with self.lock:
            self.ehlo_count += 1
        session.host_name = hostname
        if self.requiretls and session.ssl is not None:
            responses.insert(len(responses) - 1, "250-REQUIRETLS")
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        with self.lock:
            self.mail_attempts.append(address)
            self.mail_params.append(list(mail_options))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self.lock:
            self.rcpt_attempts.append(address)
        verdict = self.rcpt_policy(address)
        if verdict:
            return verdict
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.messages.append(
                Received(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or envelope.content or b""),
                    str(session.peer[0]) if session.peer else "",
                )
            )
        return "250 2.0.0 Message accepted"

    def start(self, **kwargs: Any) -> Sink:
        self.controller = _Controller(
            self,
            hostname=self.address,
            port=self.port,
            ready_timeout=10,
            decode_data=False,
            **kwargs,
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for m in self.messages for r in m.rcpt_tos]
