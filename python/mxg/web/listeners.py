"""The relay's HTTP listeners, ``[web]`` and ``[metrics]``: bound at
start before the privilege drop, served as one task of the relay's task
group, stopped with it."""

from __future__ import annotations

import logging

import anyio
from starlette.applications import Starlette

from mxg.config import Config
from mxg.deliverylog import event, log
from mxg.web import server
from mxg.web.app import METRICS_ROUTES, WEB_ROUTES, build_app
from mxg.web.surface import Surface


class Listeners:
    def __init__(self, cfg: Config, web: server.Bound | None, metrics: server.Bound | None) -> None:
        self._cfg = cfg
        self._web = web
        self._metrics = metrics
        self._stop = anyio.Event()
        self._stopped = anyio.Event()
        self._served = False

    @classmethod
    def bind(cls, cfg: Config) -> Listeners:
        """Binds what is configured (nothing by default: both ``listen``
        lists are empty); WebError when an address or certificate fails."""
        web = metrics = None
        if cfg.web.listen:
            web = server.bind(
                "web.listen", cfg.web.listen, cfg.web.tls_cert, cfg.web.tls_key, cfg.web.client_ca
            )
        if cfg.metrics.listen:
            try:
                metrics = server.bind(
                    "metrics.listen", cfg.metrics.listen, cfg.metrics.tls_cert, cfg.metrics.tls_key
                )
            except Exception:
                if web is not None:
                    web.close()
                raise
        return cls(cfg, web, metrics)

    @property
    def any(self) -> bool:
        return self._web is not None or self._metrics is not None

    def close(self) -> None:
        """Closes the sockets of listeners that were bound but never served
        (the servers close their own)."""
        if self._served:
            return
        for bound in (self._web, self._metrics):
            if bound is not None:
                bound.close()

    async def serve(self, surface: Surface) -> None:
        """Serves until `stop`; each listener on its own task."""
        self._served = True
        try:
            async with anyio.create_task_group() as tg:
                if self._web is not None:
                    web = self._cfg.web
                    tg.start_soon(
                        self._serve_one,
                        "web",
                        build_app(surface, WEB_ROUTES),
                        self._web,
                        web.proxy_hops,
                        web.root_path,
                    )
                if self._metrics is not None:
                    app = build_app(surface, METRICS_ROUTES)
                    tg.start_soon(self._serve_one, "metrics", app, self._metrics, 0, "")
        finally:
            self._stopped.set()

    async def _serve_one(
        self, name: str, app: Starlette, bound: server.Bound, proxy_hops: int, root_path: str
    ) -> None:
        event(
            log,
            f"{name} listening",
            addresses=",".join(f"{bound.scheme}://{a}" for a in bound.addresses),
        )
        if name == "web" and (clear := bound.in_clear_off_loopback):
            event(
                log,
                "web surface in plain HTTP off loopback: tokens, logins and decision links"
                " cross the network in clear; set web.tls_cert and web.tls_key, or listen"
                " on loopback behind an HTTPS proxy",
                logging.WARNING,
                addresses=",".join(clear),
            )
        try:
            await server.serve(app, bound, self._stop, proxy_hops=proxy_hops, root_path=root_path)
        except Exception as e:
            # The web surface failing must not take mail down with it.
            event(log, f"{name} listener stopped", logging.ERROR, error=repr(e))

    async def stop(self) -> None:
        """Asks the servers to finish the requests under way and waits for
        them, at most a little longer than their grace period."""
        self._stop.set()
        with anyio.move_on_after(server.GRACE + 1):
            await self._stopped.wait()
