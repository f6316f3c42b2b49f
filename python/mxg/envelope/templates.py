"""The envelope's templates: shipped in ``templates/`` beside this module,
each replaceable by a file of the same name in the operator's directory
(``[envelope] templates``), file by file.

``page.html`` is rendered with HTML autoescaping; ``carrier.txt`` and
``carrier-subject.txt`` are plain text; ``mime.js``, ``envelope.js`` and
``envelope.css`` are taken as they are (the page allows them by hash). A
missing variable is an error, not an empty string (`StrictUndefined`), so
a mistyped name in an edited template stops the envelope instead of
sending a carrier with a gap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from mxg.errors import EnvelopeError

SHIPPED = Path(__file__).with_name("templates")


class Templates:
    """The templates of one directory over the shipped ones."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is not None and not directory.is_dir():
            raise EnvelopeError(f"envelope templates: {directory} is not a directory")
        paths = [str(p) for p in (directory, SHIPPED) if p is not None]
        loader = jinja2.FileSystemLoader(paths)
        self._html = jinja2.Environment(
            loader=loader, autoescape=True, undefined=jinja2.StrictUndefined
        )
        self._text = jinja2.Environment(
            loader=loader, autoescape=False, undefined=jinja2.StrictUndefined
        )
        self._loader = loader

    def html(self, name: str, **values: Any) -> str:
        return self._render(self._html, name, values)

    def text(self, name: str, **values: Any) -> str:
        return self._render(self._text, name, values)

    def asset(self, name: str) -> str:
        """A file taken as it is (script, style)."""
        try:
            source, _, _ = self._loader.get_source(self._text, name)
        except jinja2.TemplateNotFound:
            raise EnvelopeError(f"envelope template {name} is missing") from None
        return source

    @staticmethod
    def _render(env: jinja2.Environment, name: str, values: dict[str, Any]) -> str:
        try:
            return env.get_template(name).render(**values)
        except jinja2.TemplateNotFound:
            raise EnvelopeError(f"envelope template {name} is missing") from None
        except jinja2.TemplateError as e:
            where = f"{name}:{e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) else name
            raise EnvelopeError(f"envelope template {where}: {e.message}") from None
