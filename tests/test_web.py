"""The web surface: hypercorn serving the relay's Starlette apps on the
running anyio backend (asyncio and trio), HTTPS with the operator's
certificate, readiness naming the failing part, clean stops, and binding
errors as one line. tests/e2e/test_metrics.py runs it inside `mxg run`."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import dns.asyncresolver
import httpx
import pytest

from mxg.config import Config
from mxg.errors import WebError
from mxg.metrics.collector import Sources, registry
from mxg.pipeline.context import Context
from mxg.web import DnsCheck, Listeners, Readiness, Surface, server
from tests.pipeline.fakes import stages
from tests.support.certs import self_signed
from tests.support.dns import free_port, free_udp_tcp_port


def surface(ctx: Context, dns_check: Callable[[], Awaitable[str | None]]) -> Surface:
    sources = Sources(ctx.counts, ctx.store, lambda: {"inbound_sessions": 1})
    ctx.cfg.spool_dir.mkdir(parents=True, exist_ok=True)
    readiness = Readiness(ctx.cfg.spool_dir, ctx.store, lambda: None, dns_check)
    return Surface(ctx, readiness, registry(sources))


async def answers() -> str | None:
    return None


def serve_and(
    cfg: Config,
    ctx: Context,
    dns_check: Callable[[], Awaitable[str | None]],
    backend: str,
    requests: Callable[[], Awaitable[None]],
) -> None:
    """Serves both listeners on `backend`, runs `requests`, stops them."""

    async def main() -> None:
        listeners = Listeners.bind(cfg)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(listeners.serve, surface(ctx, dns_check))
                await requests()
                await listeners.stop()

    anyio.run(main, backend=backend)


def test_both_listeners_serve_on_the_running_backend(tmp_path: Path, backend: str) -> None:
    web, metrics = free_port(), free_port()
    st, _ = stages(
        tmp_path,
        f'[data]\ndirectory = "{tmp_path}"\n[web]\nlisten = ["127.0.0.1:{web}"]\n'
        f'[metrics]\nlisten = ["127.0.0.1:{metrics}"]\n',
    )
    st.ctx.counts.message_received("normal")

    async def requests() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            for port in (web, metrics):
                health = await client.get(f"http://127.0.0.1:{port}/health")
                assert health.status_code == 200
                assert health.json()["alive"] is True
                assert health.headers["cache-control"] == "no-store"
                ready = await client.get(f"http://127.0.0.1:{port}/ready")
                assert ready.status_code == 200, ready.text
                assert ready.json() == {
                    "ready": True,
                    "checks": {"spool": "ok", "store": "ok", "resolver": "ok"},
                }
            scraped = await client.get(f"http://127.0.0.1:{metrics}/metrics")
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert 'mxg_messages_received_total{class="normal"} 1.0' in scraped.text
            assert "mxg_inbound_sessions_total 1.0" in scraped.text
            # Not on the operator's surface: metrics are for the monitoring
            # network's listener only.
            assert (await client.get(f"http://127.0.0.1:{web}/metrics")).status_code == 404

    serve_and(st.ctx.cfg, st.ctx, answers, backend, requests)
    # Stopped: the ports are closed again.
    for port in (web, metrics):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_ready_names_the_resolver_when_it_does_not_answer(tmp_path: Path, backend: str) -> None:
    port = free_port()
    st, _ = stages(
        tmp_path, f'[data]\ndirectory = "{tmp_path}"\n[metrics]\nlisten = ["127.0.0.1:{port}"]\n'
    )
    # A resolver nobody answers for: nothing listens on its port.
    dead = dns.asyncresolver.Resolver(configure=False)
    dead.nameservers = ["127.0.0.1"]
    dead.port = free_udp_tcp_port()
    check = DnsCheck(dead, "secure.test")

    async def requests() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            ready = await client.get(f"http://127.0.0.1:{port}/ready")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["spool"] == checks["store"] == "ok"
        assert (
            checks["resolver"].startswith("secure.test SOA") or "no answer" in (checks["resolver"])
        ), checks

    serve_and(st.ctx.cfg, st.ctx, check, backend, requests)


def test_ready_names_the_store_when_it_cannot_be_read(tmp_path: Path, backend: str) -> None:
    port = free_port()
    st, _ = stages(
        tmp_path, f'[data]\ndirectory = "{tmp_path}"\n[metrics]\nlisten = ["127.0.0.1:{port}"]\n'
    )

    async def requests() -> None:
        st.ctx.store.close()  # as if the index had gone away under the relay
        async with httpx.AsyncClient(timeout=10) as client:
            ready = await client.get(f"http://127.0.0.1:{port}/ready")
            assert ready.status_code == 503
            assert ready.json()["checks"]["store"] != "ok"
            # The queue families are left out; the rest is still served.
            scraped = await client.get(f"http://127.0.0.1:{port}/metrics")
            assert scraped.status_code == 200
            assert "mxg_inbound_sessions_total" in scraped.text
            assert "mxg_queue_messages" not in scraped.text

    serve_and(st.ctx.cfg, st.ctx, answers, backend, requests)


def test_https_with_the_operators_certificate(tmp_path: Path, backend: str) -> None:
    cert, key = self_signed(tmp_path / "certs", "localhost")
    port = free_port()
    st, _ = stages(
        tmp_path,
        f'[data]\ndirectory = "{tmp_path}"\n[web]\nlisten = ["127.0.0.1:{port}"]\n'
        f'tls_cert = "{cert}"\ntls_key = "{key}"\n',
    )
    trust = ssl.create_default_context(cafile=str(cert))
    trust.check_hostname = False

    async def requests() -> None:
        async with httpx.AsyncClient(verify=trust, timeout=10) as client:
            health = await client.get(f"https://127.0.0.1:{port}/health")
            assert health.status_code == 200
        # No plain HTTP on an HTTPS listener.
        async with httpx.AsyncClient(timeout=10) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{port}/health")

    serve_and(st.ctx.cfg, st.ctx, answers, backend, requests)


def test_a_taken_address_or_unreadable_key_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(WebError) as e:
            server.bind("metrics.listen", [addr])
    assert str(e.value) == f"metrics.listen: cannot listen on {addr}: Address already in use"
    cert, _ = self_signed(tmp_path, "localhost")
    with pytest.raises(WebError) as e:
        server.bind("web.listen", ["127.0.0.1:0"], cert, tmp_path / "missing.pem")
    assert str(e.value).startswith(f"web.listen: cannot load the certificate {cert} and key")
    assert "\n" not in str(e.value)


def test_nothing_listens_unless_configured(tmp_path: Path) -> None:
    cfg = Config()
    assert cfg.web.listen == [] and cfg.metrics.listen == []
    assert not Listeners.bind(cfg).any


def test_plain_http_off_loopback_is_named_for_the_start_warning(tmp_path: Path) -> None:
    """Tokens and decision links in clear on a network: the relay warns
    at start (listeners.py); loopback (behind a proxy) and HTTPS do not."""
    addresses = ["127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080", "[2001:db8::25]:8080"]
    plain = server.Bound([], None, addresses)
    assert plain.in_clear_off_loopback == ["0.0.0.0:8080", "[2001:db8::25]:8080"]
    cert, key = self_signed(tmp_path, "localhost")
    https = server.bind("web.listen", ["127.0.0.1:0"], cert, key)
    try:
        https.addresses.append("0.0.0.0:8443")
        assert https.in_clear_off_loopback == []
    finally:
        https.close()
    loopback = server.bind("web.listen", ["127.0.0.1:0"])
    try:
        assert loopback.in_clear_off_loopback == []
    finally:
        loopback.close()
