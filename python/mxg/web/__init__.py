"""The web surface: one ASGI app (Starlette) per listener, served by
hypercorn inside the relay's own task group, on asyncio or trio alike, so
that every route sees the relay's store and state and stops with it.

- ``[web]``: the operator's surface (``/health`` and ``/ready`` today;
  authenticated features such as an admin API are added as route groups);
  HTTPS with the operator's certificate, or plain HTTP behind a reverse
  proxy (docs/operations.md, "Web surface").
- ``[metrics]``: ``/metrics``, ``/health`` and ``/ready`` without
  authentication, for a monitoring network.

Both are off by default. One concern a module: `server` (sockets, TLS,
hypercorn on the running backend), `listeners` (both listeners' life in
the relay), `surface` (what routes see), `app` (the route groups of each
listener), `health` and `ready` (liveness and readiness), `metrics`
(the Prometheus endpoint).
"""

from __future__ import annotations

from mxg.web.listeners import Listeners
from mxg.web.ready import DnsCheck, Readiness
from mxg.web.surface import Surface

__all__ = ["DnsCheck", "Listeners", "Readiness", "Surface"]
