"""Secret keys the relay keeps in its data directory (the decision links'
HMAC key, the operator pages' session key): random bytes made on first
use, never through a link, and whole or not at all after a crash."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mxg.errors import MxgError


def read_or_make(data_dir: Path, name: str, size: int, what: str) -> bytes:
    """The key in `data_dir / name`, made on first use like the signing
    key: a new file with mode 0600 (O_EXCL, O_NOFOLLOW), written, synced
    and renamed into place. `what` names the key in errors."""
    path = data_dir / name
    if not (path.exists() or path.is_symlink()):
        tmp = data_dir / f".{name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, secrets.token_bytes(size))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise MxgError(f"{path}: cannot read the {what}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        key = f.read()
    if len(key) != size:
        raise MxgError(f"{path}: not a {what} ({len(key)} bytes, not {size})")
    return key
