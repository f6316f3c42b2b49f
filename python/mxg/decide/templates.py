"""The templates of the notice and the decision page: jinja2, the shipped
ones in ``mxg/decide/templates/``, each replaceable by a file of the same
name in ``decisions.templates`` (docs/sender-decisions.md lists the
variables). HTML is autoescaped; the notice is plain text."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

SHIPPED = Path(__file__).parent / "templates"


@functools.lru_cache(maxsize=4)
def environment(override: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if override is not None:
        loaders.append(jinja2.FileSystemLoader(override))
    loaders.append(jinja2.FileSystemLoader(SHIPPED))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
