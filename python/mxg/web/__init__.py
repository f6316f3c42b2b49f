"""The web surface: one ASGI app (Starlette) per listener, served by
hypercorn inside the relay's own task group, on asyncio or trio alike, so
that every route sees the relay's store and state and stops with it.

- ``[web]``: the operator's surface: ``/health`` and ``/ready``, the
  admin API (``/api/v1/``), the operator pages (``/ui/``) and the
  sender's decision page (``/decide/``); HTTPS with the operator's
  certificate, or plain HTTP behind a reverse proxy (docs/operations.md,
  "Web surface"; docs/admin-api.md).
- ``[metrics]``: ``/metrics``, ``/health`` and ``/ready`` without
  authentication, for a monitoring network.

Both are off by default. One concern a module: `server` (sockets, TLS,
hypercorn on the running backend), `peercert` (client certificates to
the routes), `listeners` (both listeners' life in the relay), `surface`
(what routes see), `app` (the route groups of each listener), `health`
and `ready` (liveness and readiness), `metrics` (the Prometheus
endpoint), `api` and `openapi` (the admin API and its description),
`ui` and `pages` (the operator pages), `auth`, `session` and `throttle`
(who asks, page logins, failed attempts), `decide` (the decision page).
"""

from __future__ import annotations

from mxg.web.listeners import Listeners
from mxg.web.ready import DnsCheck, Readiness
from mxg.web.surface import Surface

__all__ = ["DnsCheck", "Listeners", "Readiness", "Surface"]
