"""The client certificate of each HTTPS connection, for the routes.

hypercorn verifies a client certificate when the TLS context asks for one
(`mxg.web.server`), but does not hand it to the application. Its
connection classes are therefore given a subclass that notes the
verified certificate of each connection while it is open, by the
connection's two addresses; `PeerCertificates`, the outermost layer of
the app, puts it in the request's scope as the ASGI TLS extension does
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM), where
`mxg.web.auth` reads it. Nothing else in the relay reads or changes
these classes of hypercorn.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hypercorn.asyncio import run as asyncio_run
from hypercorn.asyncio import tcp_server as asyncio_tcp
from hypercorn.trio import run as trio_run
from hypercorn.trio import tcp_server as trio_tcp
from hypercorn.utils import parse_socket_addr

Address = tuple[Any, ...]
# (client, server) of each open connection with a verified certificate.
_OPEN: dict[tuple[Address, Address], str] = {}


def _note(ssl_object: Any, sock: Any) -> tuple[Address, Address] | None:
    if ssl_object is None or sock is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    client = parse_socket_addr(sock.family, sock.getpeername())
    server = parse_socket_addr(sock.family, sock.getsockname())
    if client is None or server is None:
        return None
    key = (tuple(client), tuple(server))
    _OPEN[key] = ssl.DER_cert_to_PEM_cert(der)
    return key


class _AsyncioServer(asyncio_tcp.TCPServer):
    async def run(self) -> None:
        # asyncio (and uvloop) finish the handshake before the connection
        # is handed over.
        try:
            key = _note(
                self.writer.get_extra_info("ssl_object"), self.writer.get_extra_info("socket")
            )
        except OSError:
            key = None
        try:
            await super().run()
        finally:
            if key is not None:
                _OPEN.pop(key, None)


class _TrioServer(trio_tcp.TCPServer):
    async def run(self) -> None:
        key = None
        stream = self.stream
        transport = getattr(stream, "transport_stream", None)
        if transport is not None:
            # trio shakes hands on first use; a second do_handshake (in
            # hypercorn's run) returns at once. A failure is left for
            # hypercorn's run to meet and handle as it does.
            try:
                import trio  # noqa: PLC0415

                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await stream.do_handshake()
                key = _note(stream, transport.socket)
            except Exception:
                key = None
        try:
            await super().run()
        finally:
            if key is not None:
                _OPEN.pop(key, None)


def install() -> None:
    """Makes hypercorn's servers note client certificates (idempotent)."""
    setattr(asyncio_run, "TCPServer", _AsyncioServer)  # noqa: B010
    setattr(trio_run, "TCPServer", _TrioServer)  # noqa: B010


Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


class PeerCertificates:
    """ASGI middleware: the connection's verified client certificate in
    the scope's TLS extension. Outermost, so that it sees the connection's
    own addresses (before a proxy's X-Forwarded-For replaces the client)."""

    def __init__(self, app: App) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        client, server = scope.get("client"), scope.get("server")
        if client and server:
            pem = _OPEN.get((tuple(client), tuple(server)))
            if pem is not None:
                extensions = dict(scope.get("extensions") or {})
                extensions["tls"] = {**extensions.get("tls", {}), "client_cert_chain": [pem]}
                scope = {**scope, "extensions": extensions}
        await self._app(scope, receive, send)
