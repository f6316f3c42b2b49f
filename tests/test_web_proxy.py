"""The web surface behind a reverse proxy (``[web] root_path`` and
``proxy_hops``, docs/sender-decisions.md "Behind a reverse proxy"): the
real surface served by hypercorn on both anyio backends, in front of it a
small HTTP proxy on loopback that does what the documented nginx
``location /mxg/`` does: strips the prefix, sets Host, appends the peer
to X-Forwarded-For and sets X-Forwarded-Proto. Neither nginx nor haproxy
is installed here; this proxy speaks plain HTTP/1.1 with
``Connection: close`` and nothing more. Clients come from distinct
loopback addresses (127.0.0.2, 127.0.0.3) so that the rate limit can
tell them apart."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import SocketStream

from mxg.decide import TokenKey
from mxg.store import NewMessage, now_ms
from mxg.web.auth import new_token, token_sha256
from tests.pipeline.fakes import envelope, stages
from tests.support.dns import free_port
from tests.test_web import answers, serve_and

PREFIX = "/mxg"
# The proxy's own address towards mxg, apart from the clients' and from
# 127.0.0.1, which a client straight to mxg uses.
PROXY_ADDRESS = "127.0.0.9"
# The proxy stands for one that terminated TLS: the scheme it forwards.
FORWARDED_PROTO = "https"
ADMIN = new_token()
MESSAGE = b"From: a@internal.test\r\nSubject: Befund 7\r\n\r\nDiagnose\r\n"


async def _read_request(stream: SocketStream) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive()
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += await stream.receive()
    return head, body


class Proxy:
    """``location /mxg/ { proxy_pass http://BACKEND/; proxy_set_header
    Host $host; X-Forwarded-For $proxy_add_x_forwarded_for;
    X-Forwarded-Proto $scheme; }``, one request per connection."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.port = free_port()

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        task_status.started()
        await listener.serve(self._one)

    async def _one(self, client: SocketStream) -> None:
        async with client:
            head, body = await _read_request(client)
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ")
            if not target.startswith(PREFIX + "/"):
                await client.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            peer = client.extra(anyio.abc.SocketAttribute.remote_address)[0]
            headers: list[tuple[str, str]] = []
            forwarded_for = ""
            for line in lines:
                name, _, value = line.partition(":")
                low = name.strip().lower()
                if low == "x-forwarded-for":
                    forwarded_for = value.strip()
                elif low not in ("connection", "x-forwarded-proto"):
                    headers.append((name.strip(), value.strip()))
            chain = f"{forwarded_for}, {peer}" if forwarded_for else peer
            headers += [
                ("X-Forwarded-For", chain),
                ("X-Forwarded-Proto", FORWARDED_PROTO),
                ("Connection", "close"),
            ]
            upstream_head = f"{method} {target[len(PREFIX) :]} {version}\r\n" + "".join(
                f"{n}: {v}\r\n" for n, v in headers
            )
            async with await anyio.connect_tcp(
                "127.0.0.1", self.backend_port, local_host=PROXY_ADDRESS
            ) as upstream:
                await upstream.send(upstream_head.encode("latin-1") + b"\r\n" + body)
                response = b""
                try:
                    while True:
                        response += await upstream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
            await client.send(response)


class Site:
    """The relay's web surface with one message parked and a link to it."""

    def __init__(self, tmp_path: Path, toml: str) -> None:
        self.web_port = free_port()
        self.st, self.engine = stages(
            tmp_path,
            f'[data]\ndirectory = "{tmp_path}"\n[web]\nlisten = ["127.0.0.1:{self.web_port}"]\n'
            f'root_path = "{PREFIX}"\npublic_url = "https://intra.example{PREFIX}"\n'
            f"{toml}[decisions]\nrate_limit = 3\n"
            f'[[web.token]]\nname = "ops"\nrole = "admin"\nsha256 = "{token_sha256(ADMIN)}"\n',
        )
        ctx = self.st.ctx
        ctx.tokens = TokenKey(bytes(range(32)))
        env = envelope("Q1", ["a@plain.test"])
        ctx.store.add_messages([NewMessage(env, "high", {}, ["high"])])
        self.engine.spool["Q1"] = (env, MESSAGE)
        ctx.store.db.execute(
            "UPDATE recipients SET status='awaiting-sender', asked=1, reason='validation-failure'"
        )
        self.token, claims = ctx.tokens.issue("Q1", now_ms() + 3_600_000)
        ctx.store.mark_asked("Q1", [0], claims.token_id, claims.expires_ms)
        self.proxy = Proxy(self.web_port)

    def run(self, backend: str, requests: Callable[[], Awaitable[None]]) -> None:
        async def behind_the_proxy() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(self.proxy.serve)
                await requests()
                tg.cancel_scope.cancel()

        serve_and(self.st.ctx.cfg, self.st.ctx, answers, backend, behind_the_proxy)

    def client(self, address: str) -> httpx.AsyncClient:
        """A client on its own loopback address, through the proxy."""
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.proxy.port}",
            transport=httpx.AsyncHTTPTransport(local_address=address),
            headers={"Connection": "close"},
            timeout=10,
        )


def _same_origin_under_prefix(location: str, path: str) -> None:
    # Relative (no scheme, no host, not "//host"): the browser stays on
    # the proxy's origin, whatever Host or X-Forwarded-Host said.
    assert location == f"{PREFIX}{path}", location


def test_the_surface_works_under_the_proxys_prefix(tmp_path: Path, backend: str) -> None:
    site = Site(tmp_path, "proxy_hops = 1\n")

    async def requests() -> None:
        async with site.client("127.0.0.2") as c:
            page = await c.get(f"{PREFIX}/decide/{site.token}")
            assert page.status_code == 200, page.text
            assert "Befund 7" in page.text and "a@plain.test" in page.text
            # The form posts back to the page's own URL, under the prefix.
            assert '<form method="post">' in page.text
            cookie = page.headers["set-cookie"].lower()
            assert f"path={PREFIX}/decide/" in cookie
            # Redirects stay under the prefix, relative to the origin.
            for path, to in (("/ui", "/ui/"), ("/ui/", "/ui/login")):
                r = await c.get(PREFIX + path, headers={"X-Forwarded-Host": "evil.example"})
                assert r.status_code == 303, (path, r.status_code, r.text)
                _same_origin_under_prefix(r.headers["location"], to)
            login = await c.get(f"{PREFIX}/ui/login")
            assert login.status_code == 200
            login_cookie = login.headers["set-cookie"].lower()
            assert f"path={PREFIX}/ui/login" in login_cookie
            # X-Forwarded-Proto is believed: the login cookie is for https only.
            assert "secure" in login_cookie
            assert f'action="{PREFIX}/ui/login"' in login.text
            # A login through the proxy: its session cookie and every
            # redirect stay under the prefix. (The cookies are Secure, for
            # the https the proxy stands for; sent here by hand.)
            nonce = login.headers["set-cookie"].split(";")[0]
            csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
            assert csrf
            done = await c.post(
                f"{PREFIX}/ui/login",
                data={"csrf": csrf.group(1), "token": ADMIN},
                headers={"Cookie": nonce},
            )
            assert done.status_code == 303, done.text
            _same_origin_under_prefix(done.headers["location"], "/ui/")
            session = next(
                v for k, v in done.headers.multi_items() if k == "set-cookie" and "mxg_session" in v
            )
            assert f"path={PREFIX}/ui;" in session.lower() + ";" and "secure" in session.lower()
            summary = await c.get(f"{PREFIX}/ui/", headers={"Cookie": session.split(";")[0]})
            assert summary.status_code == 200, summary.text
            assert f'action="{PREFIX}/ui/logout"' in summary.text

    site.run(backend, requests)


def test_the_rate_limit_counts_each_forwarded_client(tmp_path: Path, backend: str) -> None:
    site = Site(tmp_path, "proxy_hops = 1\n")
    url = f"{PREFIX}/decide/{site.token}"

    async def requests() -> None:
        async with site.client("127.0.0.2") as a, site.client("127.0.0.3") as b:
            # A forged X-Forwarded-For of A's own does not give it a new
            # budget: the one proxy believed appends the address it saw.
            codes = [
                (await a.get(url, headers={"X-Forwarded-For": f"203.0.113.{i}"})).status_code
                for i in range(5)
            ]
            assert codes == [200, 200, 200, 429, 429]
            # B comes through the same proxy and has its own budget.
            assert (await b.get(url)).status_code == 200

    site.run(backend, requests)


def test_without_proxy_hops_x_forwarded_for_is_ignored(tmp_path: Path, backend: str) -> None:
    site = Site(tmp_path, "proxy_hops = 0\n")
    url = f"{PREFIX}/decide/{site.token}"

    async def requests() -> None:
        async with site.client("127.0.0.2") as a, site.client("127.0.0.3") as b:
            # Every request comes from the proxy's address: one budget for
            # all, whatever X-Forwarded-For says.
            codes = [(await a.get(url)).status_code for _ in range(2)]
            codes.append((await b.get(url)).status_code)
            codes.append((await b.get(url)).status_code)
            assert codes == [200, 200, 200, 429]
            # Nor is X-Forwarded-Proto: the scheme is the connection's.
            login = await a.get(f"{PREFIX}/ui/login")
            assert "secure" not in login.headers["set-cookie"].lower()
        # Straight to the surface, a client naming other addresses in
        # X-Forwarded-For is still one client.
        async with httpx.AsyncClient(timeout=10) as direct:
            direct_url = f"http://127.0.0.1:{site.web_port}/decide/{site.token}"
            got = [
                (await direct.get(direct_url, headers={"X-Forwarded-For": f"198.51.100.{i}"}))
                for i in range(4)
            ]
            assert [r.status_code for r in got] == [200, 200, 200, 429]

    site.run(backend, requests)
