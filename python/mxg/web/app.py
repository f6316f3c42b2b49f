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
from starlette.routing import BaseRoute

from mxg.web import api, decide, health, metrics, ui
from mxg.web.surface import Surface

RouteGroup = Callable[[Surface], list[BaseRoute]]

# The operator's web surface; authenticated features are added here.
WEB_ROUTES: tuple[RouteGroup, ...] = (health.routes, api.routes, decide.routes, ui.routes)
# The monitoring network's listener: no authentication, so nothing that
# reads a message or changes the queue ever goes here.
METRICS_ROUTES: tuple[RouteGroup, ...] = (health.routes, metrics.routes)


def build_app(surface: Surface, groups: Sequence[RouteGroup]) -> Starlette:
    app = Starlette(routes=[route for group in groups for route in group(surface)])
    # Starlette would answer `/ui` or `/decide/TOKEN/` with a redirect to an
    # absolute URL built from the request's Host header: a redirect to any
    # host a client names. The surface redirects only where a page says so,
    # to a path under web.root_path (ui.py); anything else is 404.
    app.router.redirect_slashes = False
    return app
