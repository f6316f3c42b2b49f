"""A request the web surface refuses: the HTTP status and the reason in
one line. The API answers it as JSON (`web.api`), the operator pages as a
page (`web.ui`); a handler raises it before it changes anything."""

from __future__ import annotations


class Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
