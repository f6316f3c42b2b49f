"""The ``envelope`` choice: the parked recipients' copy of the message
sealed with a password (`mxg.envelope.seal`) into a carrier mail, which
the relay spools as a new message at the class's ``carrier_level``.

The password is the sender's (checked for strength) or generated; it is
handed back to be shown once and kept nowhere: the carrier holds neither
it nor any plaintext, so storing the carrier until the relay spools it
(`mxg.store.decisions`) keeps no secret."""

from __future__ import annotations

from collections.abc import Sequence

from mxg.config import Config
from mxg.envelope import check_password, generate_password, seal


def password_for(typed: str) -> str:
    """The sender's password when typed (WeakPassword when too weak),
    else a generated one."""
    if typed:
        check_password(typed)
        return typed
    return generate_password()


def carrier_for(
    cfg: Config, sender: str, addresses: Sequence[str], original: bytes, password: str
) -> bytes:
    """The carrier mail; CPU-bound (PBKDF2): run it off the event loop."""
    return seal(
        original,
        password,
        sender=sender,
        recipients=list(addresses),
        hostname=cfg.server.hostname,
        templates=cfg.envelope.templates,
        iterations=cfg.envelope.iterations,
    )
