"""The gateway's own Ed25519 signing key: made at first start, kept in
the data directory readable by the relay's user alone (rule 8), and used
to sign what must hold up later without trusting the database: the audit
trail's checkpoints (and the per-message proofs built on them).

The public key can be exported (``mxg keys export``) and given to whoever
checks a proof or an audit trail offline; its `key_id` (the first 16 hex
digits of the SHA-256 of the raw key) names it in what it signed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from mxg.errors import MxgError

KEY_FILE = "signing-key.pem"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public(path: Path) -> Ed25519PublicKey:
    """A public key as ``mxg keys export`` writes it (PEM)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as e:
        raise MxgError(f"{path}: not a readable public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise MxgError(f"{path}: not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class Verifier:
    public: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self.public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def verifier(self) -> Verifier:
        return Verifier(self.public)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    @classmethod
    def load(cls, data_dir: Path) -> SigningKey:
        """The data directory's key; MxgError when there is none or it is
        unreadable (an operator's command does not make one)."""
        path = data_dir / KEY_FILE
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise MxgError(
                f"{path}: no signing key yet (the relay makes one at its first start)"
            ) from None
        except OSError as e:
            raise MxgError(f"{path}: cannot read the signing key: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            pem = f.read()
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except ValueError as e:
            raise MxgError(f"{path}: not a usable signing key: {e}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise MxgError(f"{path}: not an Ed25519 key")
        return cls(key)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKey:
        """The key, made on first use: written to a new file with mode
        0600 (O_EXCL, never through a link, rule 8a), then renamed into
        place, so a crash leaves either no key or a whole one."""
        path = data_dir / KEY_FILE
        if path.exists() or path.is_symlink():
            return cls.load(data_dir)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = data_dir / f".{KEY_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        dir_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return cls(key)
