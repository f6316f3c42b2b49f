"""Rendering the operator pages: jinja2 templates shipped in
``mxg/web/templates/`` with autoescaping on, one stylesheet, and the
headers every page carries: a Content-Security-Policy that allows
nothing but this origin's stylesheet and forms (no script, no frame, no
other origin), no caching, no referrer."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse, Response

TEMPLATES = Path(__file__).parent / "templates"

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render(name: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    html = environment().get_template(name).render(**values)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def stylesheet() -> Response:
    return Response(
        (TEMPLATES / "style.css").read_bytes(),
        media_type="text/css",
        headers={**HEADERS, "Cache-Control": "max-age=3600"},
    )
