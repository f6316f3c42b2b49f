"""The ASGI apps of the two listeners, built from route groups.

A route group is a module's ``routes(surface)``: the web surface
(``[web]``) serves `WEB_ROUTES`, the metrics listener (``[metrics]``)
serves `METRICS_ROUTES`. A feature of the web surface (an admin API, an
operator page) is one more module under ``mxg.web`` whose ``routes`` is
added to `WEB_ROUTES`; it sees the relay through the `Surface`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from mxg.web import api, decide, health, metrics, ui
from mxg.web.surface import Surface

RouteGroup = Callable[[Surface], list[BaseRoute]]

# The operator's web surface; authenticated features are added here.
WEB_ROUTES: tuple[RouteGroup, ...] = (health.routes, api.routes, decide.routes, ui.routes)
# The monitoring network's listener: no authentication, so nothing that
# reads a message or changes the queue ever goes here.
METRICS_ROUTES: tuple[RouteGroup, ...] = (health.routes, metrics.routes)


def build_app(surface: Surface, groups: Sequence[RouteGroup]) -> Starlette:
    routes = _one_route_per_path([route for group in groups for route in group(surface)])
    app = Starlette(routes=routes)
    # Starlette would answer `/ui` or `/decide/TOKEN/` with a redirect to an
    # absolute URL built from the request's Host header: a redirect to any
    # host a client names. The surface redirects only where a page says so,
    # to a path under web.root_path (ui.py); anything else is 404.
    app.router.redirect_slashes = False
    return app


class _ByMethod:
    """One path's routes as one ASGI app, each method to its route."""

    def __init__(self, routes: list[Route]) -> None:
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = next(r for r in self._routes if scope["method"] in (r.methods or ()))
        await route.app(scope, receive, send)


def _one_route_per_path(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Routes that share a path (a page's GET and its form's POST) joined
    into one: Starlette answers another method with the first route's
    405, whose Allow would name only that route's methods, where RFC 9110
    §15.5.6 wants every method the resource supports."""
    same: dict[str, list[Route]] = {}
    for r in routes:
        if isinstance(r, Route) and r.methods:
            same.setdefault(r.path, []).append(r)
    out: list[BaseRoute] = []
    for r in routes:
        group = same.get(r.path, []) if isinstance(r, Route) else []
        if len(group) < 2:
            out.append(r)
        elif r is group[0]:
            methods = sorted({m for g in group for m in g.methods or ()})
            out.append(Route(r.path, _ByMethod(group), methods=methods, name=r.name))
    return out
