"""TLS reports inside the relay: the daily run after the UTC day has
closed (from ``[tlsrpt] send_hour``), the runs an operator asks for
(``mxg tlsrpt send``, a request row the relay serves within seconds),
and the `Outbox` that hands report mail to mxg's own queue and POSTs
https reports.

Report mail is spooled as a message of mxg's own (origin ``local``) of
class normal whose classification says ``tlsrpt``: it is delivered
opportunistically, with no DANE, MTA-STS or pin enforced and never
through ``on_unmet`` (RFC 8460 §5.3: reports are delivered despite TLS
failures; BSI TR-03108 09-M), and its own sessions are not counted for
the next report (§5.3)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import msgspec

from mxg.boundary import Envelope, Recipient, decode_envelope, encode
from mxg.deliverylog import event, log
from mxg.errors import EngineStopped, MxgError, SpoolError
from mxg.pipeline.context import Context
from mxg.pipeline.storage import survives_a_full_store
from mxg.store import NewMessage, now_ms
from mxg.tlsrpt.record import Discovery, dns_lookup
from mxg.tlsrpt.report import Report
from mxg.tlsrpt.send import DaySender, SendError, pending, settings

# How often the relay looks for requests (mxg tlsrpt send) and, every
# SCHEDULE_EVERY of those, whether a day's reports are due.
REQUEST_POLL = 2.0
SCHEDULE_EVERY = 30
# Days before the one that closed last that are still reported (a relay
# that was down at send_hour catches up); older ones are not sent any more.
CATCH_UP_DAYS = 2
# The aggregate is kept this many days (mxg tlsrpt show), then pruned.
KEEP_DAYS = 31
# An https report POST: the answer's body is read at most this far.
MAX_RESPONSE = 64 * 1024


def classification(report: Report) -> dict[str, Any]:
    return {
        "class": "normal",
        "tlsrpt": True,
        "tls_optional": True,
        "fired": [
            {
                "rule": "tlsrpt",
                "class": "normal",
                "why": f"TLS report (RFC 8460) for {report.domain}, {report.day}",
            }
        ],
    }


class RelayOutbox:
    def __init__(self, ctx: Context, on_queued: Callable[[], None]) -> None:
        self._ctx = ctx
        self._on_queued = on_queued

    async def mail(self, message: bytes, sender: str, to: str, report: Report) -> str:
        engine = self._ctx.engine
        envelope = Envelope(
            queue_id="",
            received_ms=now_ms(),
            sender=sender,
            recipients=[Recipient(to, ["FAILURE"])],
            origin="local",
            size=len(message),
        )
        try:
            raw = await anyio.to_thread.run_sync(engine.inject, encode(envelope), message)
        except (EngineStopped, SpoolError) as e:
            raise SendError(f"cannot queue the report mail: {e}") from None
        stored = decode_envelope(raw)
        self._ctx.store.add_messages(
            [NewMessage(stored, "normal", classification(report), ["normal"])]
        )
        event(log, "TLS report queued", queue_id=stored.queue_id, to=f"<{to}>")
        self._on_queued()
        return stored.queue_id

    async def post(self, url: str, body: bytes) -> str:
        """POSTs to the URL's host at the addresses mxg's own resolver gives
        (not the system's), with SNI, Host and the certificate checked for
        the host name (PKIX, system roots and ``delivery.ca_file``)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        addresses = await self._addresses(host)
        if not addresses:
            raise SendError(f"POST {url}: {host} has no address")
        netloc_host = host if parts.port is None else f"{host}:{parts.port}"
        last = ""
        for address in addresses:
            literal = f"[{address}]" if ":" in address else address
            netloc = literal if parts.port is None else f"{literal}:{parts.port}"
            target = urlunsplit(("https", netloc, parts.path or "/", parts.query, ""))
            try:
                return await self._post_once(url, target, netloc_host, host, body)
            except _Unreachable as e:
                last = str(e)
        raise SendError(last)

    async def _post_once(self, url: str, target: str, netloc: str, host: str, body: bytes) -> str:
        import httpx  # noqa: PLC0415

        from mxg.dns import http_client  # noqa: PLC0415

        timeout = self._ctx.cfg.tlsrpt.http_timeout
        try:
            async with http_client(self._ctx.cfg.delivery.ca_file) as client:
                request = client.build_request(
                    "POST",
                    target,
                    content=body,
                    headers={
                        "Host": netloc,
                        "Content-Type": "application/tlsrpt+gzip",
                        "User-Agent": "mxg TLS-RPT",
                    },
                    extensions={"sni_hostname": host},
                    timeout=timeout,
                )
                with anyio.fail_after(timeout):
                    response = await client.send(request, stream=True)
                    try:
                        read = 0
                        async for chunk in response.aiter_raw():
                            read += len(chunk)
                            if read > MAX_RESPONSE:
                                break
                    finally:
                        await response.aclose()
        except httpx.ConnectError as e:
            raise _Unreachable(f"POST {url}: {e}") from None
        except (httpx.HTTPError, TimeoutError, OSError) as e:
            raise SendError(f"POST {url}: {type(e).__name__}: {e}") from None
        status = f"{response.status_code} {response.reason_phrase}".strip()
        if 200 <= response.status_code < 300:
            return f"POST {url}: {status}"
        # A 4xx will not change on a retry; 408 and 429 ask for later.
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        raise SendError(f"POST {url}: {status}", permanent=permanent)

    async def _addresses(self, name: str) -> list[str]:
        import dns.exception  # noqa: PLC0415

        resolver: Any = getattr(self._ctx.resolver, "raw", None)
        out: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await resolver.resolve(name, rdtype, search=False)
            except dns.exception.DNSException:
                continue
            out += [r.address for r in answer]
        return out


class _Unreachable(SendError):
    """One address could not be connected to: the next one is tried."""


def discovery(ctx: Context) -> Discovery:
    """Lookups through the relay's own resolver, cached (`Discovery`)."""
    raw = getattr(ctx.resolver, "raw", None)
    if raw is None:
        raise MxgError("TLS reports need mxg's DNS resolver")
    return Discovery(dns_lookup(raw))


def due_days(now: datetime, send_hour: int) -> list[str]:
    """The closed days whose reports may go now, oldest first."""
    last = now.date() - timedelta(days=1 if now.hour >= send_hour else 2)
    return [(last - timedelta(days=i)).isoformat() for i in range(CATCH_UP_DAYS, -1, -1)]


async def reporter(ctx: Context, on_queued: Callable[[], None]) -> None:
    """Serves requests, sends each closed day's reports once, and prunes
    the aggregate once a day (also while reports are off: the counts are
    kept for ``mxg tlsrpt show``, never longer than `KEEP_DAYS`)."""
    if getattr(ctx.resolver, "raw", None) is None:
        return  # a resolver double (tests in process): no TXT lookups
    finished: set[str] = set()
    lookups = discovery(ctx)
    outbox = RelayOutbox(ctx, on_queued)
    polls = 0
    pruned = ""
    while True:
        await anyio.sleep(REQUEST_POLL)
        if not ctx.housekeeper:
            continue  # in a cluster, the housekeeper sends them
        polls += 1
        try:
            with survives_a_full_store():
                for req in ctx.store.tlsrpt_requests():
                    await _serve(ctx, req, lookups, outbox)
                if polls % SCHEDULE_EVERY:
                    continue
                today = datetime.now(UTC).date()
                if pruned != today.isoformat():
                    ctx.store.prune_tlsrpt((today - timedelta(days=KEEP_DAYS)).isoformat())
                    pruned = today.isoformat()
                if ctx.cfg.tlsrpt.active:
                    await _scheduled(ctx, lookups, outbox, finished)
        except Exception as e:
            # Reports are beside the message path: a bug here must not take
            # the relay down. Logged with its traceback, tried next time.
            log.error("TLS reports: internal error", exc_info=e)


async def _scheduled(
    ctx: Context, lookups: Discovery, outbox: RelayOutbox, finished: set[str]
) -> None:
    """The closed days' reports not yet sent; a day is finished when no
    destination is left to try."""
    now = datetime.now(UTC)
    for day in due_days(now, ctx.cfg.tlsrpt.send_hour):
        if day in finished:
            continue
        try:
            sender = DaySender(ctx.store, settings(ctx.cfg), lookups, outbox)
        except MxgError as e:
            # `mxg config check` names this too; said once a day, not at
            # every tick.
            if f"error {now.date()}" not in finished:
                finished.add(f"error {now.date()}")
                event(log, "TLS reports not sent", logging.ERROR, error=str(e))
            return
        outcomes = await sender.run(day, pause=anyio.lowlevel.checkpoint)
        if not pending(outcomes):
            finished.add(day)


async def _serve(ctx: Context, req: Any, lookups: Discovery, outbox: RelayOutbox) -> None:
    """One run an operator asked for; its outcomes go back in the row."""
    try:
        sender = DaySender(ctx.store, settings(ctx.cfg), lookups, outbox)
        outcomes = await sender.run(req["day"], [req["domain"]] if req["domain"] else None)
        result = msgspec.json.encode([o.__dict__ for o in outcomes]).decode()
        ctx.store.finish_tlsrpt_request(req["id"], result, "")
    except MxgError as e:
        ctx.store.finish_tlsrpt_request(req["id"], "[]", str(e))
