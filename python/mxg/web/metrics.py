"""``/metrics``: the Prometheus text format of the relay's own registry
(`mxg.metrics.collector`), served only on the ``[metrics]`` listener.

The families are made on the event loop, where the counts they read are
kept, so the numbers of one scrape belong together; a scrape reads the
queue index through indexed queries only (milliseconds)."""

from __future__ import annotations

from prometheus_client import generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mxg.web.health import NO_STORE
from mxg.web.surface import Surface

# The text format every Prometheus reads (what generate_latest writes for
# names of the classic character set, as all of mxg's are).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def routes(surface: Surface) -> list[BaseRoute]:
    async def metrics(_: Request) -> Response:
        body = generate_latest(surface.registry)
        return Response(body, media_type=CONTENT_TYPE, headers=NO_STORE)

    return [Route("/metrics", metrics, methods=["GET", "HEAD"])]
