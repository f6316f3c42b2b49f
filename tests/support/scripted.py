"""A tiny SMTP server whose answers a test scripts, for client behaviour
that real servers rarely show (EHLO refused, slow replies)."""

from __future__ import annotations

import socketserver
import ssl
import threading
import time
from collections.abc import Callable

# Maps an upper-cased command verb to a reply line, or None for the default.
Script = Callable[[str], str | None]

DEFAULTS = {
    "EHLO": "250-scripted\r\n250 PIPELINING",
    "HELO": "250 scripted",
    "MAIL": "250 2.1.0 ok",
    "RCPT": "250 2.1.5 ok",
    "DATA": "354 go",
    "RSET": "250 2.0.0 ok",
    "STARTTLS": "220 2.0.0 ready",
    "QUIT": "221 2.0.0 bye",
    "NOOP": "250 2.0.0 ok",
}


class ScriptedServer:
    def __init__(
        self,
        host: str,
        port: int,
        script: Script = lambda verb: None,
        data_delay: float = 0.0,
        tls: ssl.SSLContext | None = None,
        after_starttls: bytes = b"",
    ) -> None:
        self.commands: list[str] = []
        self.messages = 0
        self.active = 0
        self.max_active = 0
        self.tls_sessions = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with outer.lock:
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                self.counted = True
                try:
                    self._session()
                finally:
                    self._leave()

            def _leave(self) -> None:
                # A session ends for the count when it answers QUIT: the
                # client may open its next connection as soon as it has the
                # 221, before this thread gets to return.
                with outer.lock:
                    if self.counted:
                        outer.active -= 1
                        self.counted = False

            def _send(self, text: str) -> None:
                self.wfile.write(
                    text.replace("\r\n", "\n").replace("\n", "\r\n").encode() + b"\r\n"
                )

            def _session(self) -> None:
                self._send("220 scripted ESMTP")
                while line := self.rfile.readline():
                    cmd = line.decode(errors="replace").strip()
                    verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
                    with outer.lock:
                        outer.commands.append(cmd)
                    reply = script(verb) or DEFAULTS.get(verb, "502 5.5.1 unknown")
                    if verb == "STARTTLS" and tls is not None:
                        # Bytes a man in the middle might append to the 220,
                        # in the same segment; the client must throw them
                        # away (RFC 3207 §4.2).
                        self.wfile.write(reply.encode() + b"\r\n" + after_starttls)
                    else:
                        if verb == "QUIT":
                            self._leave()
                        self._send(reply)
                    if verb == "DATA" and (script(verb) or DEFAULTS["DATA"]).startswith("354"):
                        while self.rfile.readline() not in (b".\r\n", b""):
                            pass
                        time.sleep(data_delay)
                        with outer.lock:
                            outer.messages += 1
                        self._send(script("DATA-END") or "250 2.0.0 stored")
                    if verb == "QUIT":
                        return
                    if verb == "STARTTLS" and tls is not None:
                        self.request = tls.wrap_socket(self.request, server_side=True)
                        self.rfile = self.request.makefile("rb")
                        self.wfile = self.request.makefile("wb", buffering=0)
                        with outer.lock:
                            outer.tls_sessions += 1

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> ScriptedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
