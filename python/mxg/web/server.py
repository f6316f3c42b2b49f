"""Serving an ASGI app inside the relay: sockets bound before the
privilege drop, TLS with the operator's certificate, and hypercorn on
whichever event loop runs the relay (asyncio with uvloop, or trio).

The sockets are bound and the certificate and key read while mxg still
runs as the user it was started as (ARCHITECTURE.md rule 8: a port below
1024 and a key readable by root alone work as for SMTP); hypercorn then
gets them ready-made and binds nothing itself. It runs as a task of the
relay's task group and stops with it: a stop asks it to finish the
requests under way, for at most `GRACE` seconds.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import sniffio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.middleware import ProxyFixMiddleware
from hypercorn.typing import ASGIFramework
from starlette.applications import Starlette

from mxg.errors import WebError
from mxg.web import peercert

# Seconds the requests under way get to finish when the relay stops.
GRACE = 2.0
# Connections the kernel queues for accept: monitoring and operators are
# few, a burst of dashboards refreshing at once is not.
BACKLOG = 128
# Idle HTTP/1.1 keep-alive connections are closed after this long.
KEEP_ALIVE = 30.0

# hypercorn's own messages (errors in a connection, a failed handshake)
# go to mxg's log; its "Running on ..." lines are not needed, mxg logs
# its listeners itself.
_server_log = logging.getLogger("mxg.web.server")
_server_log.setLevel(logging.WARNING)


@dataclass
class Bound:
    """One listener's sockets, bound and listening, and its TLS context."""

    sockets: list[socket.socket]
    tls: ssl.SSLContext | None = None
    addresses: list[str] = field(default_factory=list)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def close(self) -> None:
        for s in self.sockets:
            s.close()

    @property
    def in_clear_off_loopback(self) -> list[str]:
        """The addresses served in plain HTTP that are not loopback: there
        bearer tokens, logins and decision links cross the network in
        clear (docs/operations.md, "Web surface": HTTPS, or loopback
        behind a proxy that speaks it)."""
        if self.tls is not None:
            return []
        return [a for a in self.addresses if not _loopback(a)]


def bind(
    what: str,
    listen: list[str],
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    client_ca: Path | None = None,
) -> Bound:
    """Binds every address of `listen` (``ip:port``, IPv6 in brackets) and
    loads the certificate chain and key, and the CA of client
    certificates; `what` names the listener in errors (``web.listen``).
    Raises WebError with one line naming the address or file."""
    tls = _tls_context(what, tls_cert, tls_key, client_ca) if tls_cert and tls_key else None
    sockets: list[socket.socket] = []
    try:
        for addr in listen:
            sockets.append(_listen(what, addr))
    except WebError:
        for s in sockets:
            s.close()
        raise
    addresses = [_address(s) for s in sockets]
    return Bound(sockets, tls, addresses)


def _listen(what: str, addr: str) -> socket.socket:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # [::] means IPv6 only; 0.0.0.0 is listed apart for IPv4.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, int(port)))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise WebError(f"{what}: cannot listen on {addr}: {e.strerror or e}") from None
    return sock


def _loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tls_context(what: str, cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """TLS 1.2 and 1.3 with forward-secret AEAD suites only, as the
    inbound SMTP server offers; HTTP/2 and HTTP/1.1 by ALPN. With
    `client_ca`, a client certificate is asked for and, when one is sent,
    verified against it (a client without one may still use a token)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise WebError(
            f"{what}: cannot load the certificate {cert} and key {key}: {detail}"
        ) from None
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as e:
            detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise WebError(f"{what}: cannot load the client CA {client_ca}: {detail}") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class _Ready(HypercornConfig):
    """hypercorn's configuration with the sockets and TLS context made
    beforehand (it would bind and read files itself otherwise)."""

    def __init__(self, bound: Bound, root_path: str) -> None:
        super().__init__()
        self._bound = bound
        self.errorlog = _server_log
        self.accesslog = None
        self.backlog = BACKLOG
        self.keep_alive_timeout = KEEP_ALIVE
        self.graceful_timeout = GRACE
        self.include_server_header = False
        self.root_path = root_path

    @property
    def ssl_enabled(self) -> bool:
        return self._bound.tls is not None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self._bound.tls

    def create_sockets(self) -> Sockets:
        if self._bound.tls is not None:
            return Sockets(list(self._bound.sockets), [], [])
        return Sockets([], list(self._bound.sockets), [])


async def serve(
    app: Starlette,
    bound: Bound,
    stop: anyio.Event,
    *,
    proxy_hops: int = 0,
    root_path: str = "",
) -> None:
    """Serves `app` on the bound sockets until `stop` is set; on the
    running event loop, whichever anyio backend it is."""
    # Starlette's ASGI types are looser than hypercorn's; the protocol is
    # the same.
    served = cast(ASGIFramework, app)
    if proxy_hops > 0:
        # X-Forwarded-For/-Proto of the last `proxy_hops` proxies are
        # believed (the client address and scheme the app sees); from
        # anyone else they are ignored.
        served = ProxyFixMiddleware(served, mode="legacy", trusted_hops=proxy_hops)
    if bound.tls is not None and bound.tls.verify_mode != ssl.CERT_NONE:
        # Client certificates reach the routes (mxg.web.peercert).
        peercert.install()
        served = cast(ASGIFramework, peercert.PeerCertificates(cast(peercert.App, served)))
    config = _Ready(bound, root_path)
    backend = sniffio.current_async_library()
    serve_on: Any
    if backend == "trio":
        from hypercorn.trio import serve as serve_on  # noqa: PLC0415
    else:
        from hypercorn.asyncio import serve as serve_on  # noqa: PLC0415
    await serve_on(served, config, shutdown_trigger=stop.wait)
