"""``/health`` and ``/ready``: for load balancers, container engines and
monitoring, without authentication on either listener.

``/health`` says the relay is alive: the event loop that runs the
pipeline answered the request. ``/ready`` says it can take and deliver
mail (`mxg.web.ready`): 200 when the spool, the store and the resolver
are usable, 503 naming each part that is not.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from mxg.web.surface import Surface

# Probes must see the state of now, never a cached copy.
NO_STORE = {"Cache-Control": "no-store"}


def routes(surface: Surface) -> list[BaseRoute]:
    started = time.monotonic()

    async def health(_: Request) -> JSONResponse:
        uptime = round(time.monotonic() - started, 3)
        return JSONResponse({"alive": True, "uptime_seconds": uptime}, headers=NO_STORE)

    async def ready(_: Request) -> JSONResponse:
        problems = await surface.readiness.problems()
        checks = {part: problems.get(part, "ok") for part in ("spool", "store", "resolver")}
        return JSONResponse(
            {"ready": not problems, "checks": checks},
            status_code=503 if problems else 200,
            headers=NO_STORE,
        )

    return [
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/ready", ready, methods=["GET", "HEAD"]),
    ]
