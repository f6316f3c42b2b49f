"""Sender decisions (``on_unmet = "ask-sender"``): what the sender of a
message whose recipients cannot get their level is told and may choose.

One concern a module: `tokens` (the signed, expiring links and the form's
CSRF value), `reasons` (typed reasons in plain German and English),
`templates` (the operator-editable jinja2 templates, shipped defaults in
``templates/``), `notice` (the bilingual notice mail), `choices` (which
choices a class allows and what each does: one implementation for the
decision page, ``mxg.web.decide``, and ``mxg decide``). The SQL is
`mxg.store.decisions`; when a recipient is asked about,
`mxg.pipeline.asking`.
"""

from __future__ import annotations

from mxg.decide.choices import CHOICES, DecisionRefused, decide, offered
from mxg.decide.tokens import Claims, TokenError, TokenKey

__all__ = ["CHOICES", "Claims", "DecisionRefused", "TokenError", "TokenKey", "decide", "offered"]
