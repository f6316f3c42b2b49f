"""An HTTPS server for MTA-STS policies (RFC 8461 §3.3), answering per
Host header, on its own loopback address and port 443."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self


class _TlsServer:
    """A threaded HTTPS server with a certificate chain, serving `handler`
    from `start` until `stop`."""

    def __init__(
        self,
        address: str,
        port: int,
        chain: Path,
        key: Path,
        handler: type[BaseHTTPRequestHandler],
    ) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(chain, key)
        self.server = ThreadingHTTPServer((address, port), handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# Host name -> (status, content type, body, extra headers)
Pages = dict[str, tuple[int, str, bytes, dict[str, str]]]


class PolicyServer(_TlsServer):
    def __init__(self, address: str, chain: Path, key: Path, pages: Pages, port: int = 443) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0]
                outer.requests.append(f"{host}{self.path}")
                status, ctype, body, extra = pages.get(host, (404, "text/plain", b"no", {}))
                if self.path != "/.well-known/mta-sts.txt":
                    status, body = 404, b"not here"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(address, port, chain, key, Handler)


class ReportCollector(_TlsServer):
    """An HTTPS endpoint that takes TLS reports (RFC 8460 §5.4): keeps
    each POST (path, headers, body) and answers with `status`."""

    def __init__(self, address: str, port: int, chain: Path, key: Path, status: int = 200) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                outer.posts.append((self.path, dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(address, port, chain, key, Handler)
