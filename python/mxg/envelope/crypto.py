"""The envelope's cryptography: PBKDF2-HMAC-SHA256 turns the password
into an AES-256 key, AES-256-GCM seals the whole original message.

The parameters are those the recipient's browser can repeat with
WebCrypto alone (``deriveKey`` with PBKDF2, ``decrypt`` with AES-GCM), so
no script library is shipped in the page:

- salt: 16 random octets per envelope (NIST SP 800-132 §5.1: at least 128
  bits), so one password never gives two envelopes the same key;
- iterations: 600,000 at least (OWASP's figure for PBKDF2-HMAC-SHA256);
- nonce: 12 random octets (NIST SP 800-38D §8.2.2; one message per key,
  since the key is new with each salt);
- associated data: the format's name and version, so a page of another
  version cannot be fed this ciphertext unnoticed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from mxg.envelope.password import canonical
from mxg.errors import EnvelopeError

FORMAT = "mxg-envelope-1"
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32
MIN_ITERATIONS = 600_000


@dataclass(frozen=True)
class Sealed:
    """What the page holds besides its code and text."""

    salt: bytes
    nonce: bytes
    iterations: int
    ciphertext: bytes  # with GCM's 16-octet tag at its end, as WebCrypto wants it


def derive_key(password: str, salt: bytes, iterations: int) -> bytes:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, iterations=iterations)
    return kdf.derive(canonical(password))


def encrypt(plaintext: bytes, password: str, iterations: int = MIN_ITERATIONS) -> Sealed:
    if iterations < MIN_ITERATIONS:
        raise EnvelopeError(f"PBKDF2 needs at least {MIN_ITERATIONS} iterations, not {iterations}")
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    key = derive_key(password, salt, iterations)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, FORMAT.encode())
    return Sealed(salt, nonce, iterations, ciphertext)


def decrypt(sealed: Sealed, password: str) -> bytes:
    """The original message; `EnvelopeError` for a wrong password or an
    altered file (GCM cannot tell the two apart)."""
    key = derive_key(password, sealed.salt, sealed.iterations)
    try:
        return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, FORMAT.encode())
    except InvalidTag:
        raise EnvelopeError("wrong password, or the envelope was altered") from None
