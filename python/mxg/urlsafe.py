"""Unpadded URL-safe base64 (RFC 4648 §5), as the decision links and the
operator pages' session cookies carry their payloads and MACs."""

from __future__ import annotations

import base64


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    """Raises binascii.Error (a ValueError) on text that is not base64."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
