"""Envelope passwords: the ones mxg generates, the check of the ones a
sender types, and the one form in which both sides feed a password to
PBKDF2.

A generated password is read out by phone or typed from an SMS, so its
alphabet leaves out what is misread or mistyped: 0/o, 1/l/i, and capitals
(a phone speaker need not say "capital"). 31 symbols give 4.95 bits each;
20 of them in four groups of five are 99 bits, above the 80 the design
asks for, and the groups keep the place while reading aloud.
"""

from __future__ import annotations

import itertools
import math
import secrets
import unicodedata

from mxg.errors import WeakPassword

ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
GROUPS = 4
GROUP_LENGTH = 5
GENERATED_BITS = GROUPS * GROUP_LENGTH * math.log2(len(ALPHABET))

# A typed password: at least this many characters. Its strength cannot be
# measured, so the floor is length, with a few obvious patterns refused;
# the decision page offers the generated one first.
MIN_TYPED_LENGTH = 12
MIN_DISTINCT = 5
# A password, not a document: bounds the work PBKDF2 does per try.
MAX_LENGTH = 256


def generate_password() -> str:
    """A fresh password such as ``k7m2p-x9qrt-4hwze-ab3nv`` (99 bits)."""
    groups = ("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS))
    return "-".join(groups)


def canonical(password: str) -> bytes:
    """The octets PBKDF2 gets: Unicode NFC (the same word typed on two
    keyboards is the same password), without surrounding white space,
    UTF-8. The recipient's page does the same (``normalize("NFC").trim()``)."""
    return unicodedata.normalize("NFC", password).strip().encode("utf-8")


def check_password(password: str) -> None:
    """Raises `WeakPassword` with the reason (in English, and in German as
    its `german`) a sender-typed password is refused; returns None when
    it may be used."""
    text = unicodedata.normalize("NFC", password).strip()
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise WeakPassword(
            "the password contains a control or invisible character",
            "das Passwort enthält ein Steuer- oder unsichtbares Zeichen",
        )
    if len(text) < MIN_TYPED_LENGTH:
        raise WeakPassword(
            f"the password is too short: {len(text)} characters, at least"
            f" {MIN_TYPED_LENGTH} are needed",
            f"das Passwort ist zu kurz: {len(text)} Zeichen, mindestens"
            f" {MIN_TYPED_LENGTH} sind nötig",
        )
    if len(text) > MAX_LENGTH:
        raise WeakPassword(
            f"the password is too long: at most {MAX_LENGTH} characters",
            f"das Passwort ist zu lang: höchstens {MAX_LENGTH} Zeichen",
        )
    if len(set(text.lower())) < MIN_DISTINCT:
        raise WeakPassword(
            f"the password repeats too few characters: at least {MIN_DISTINCT} different"
            " ones are needed",
            f"das Passwort wiederholt zu wenige Zeichen: mindestens {MIN_DISTINCT}"
            " verschiedene sind nötig",
        )
    if _is_run(text.lower()):
        raise WeakPassword(
            "the password is a run of consecutive characters (abcd…, 1234…)",
            "das Passwort ist eine Folge aufeinanderfolgender Zeichen (abcd…, 1234…)",
        )


def _is_run(text: str) -> bool:
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(text)}
    return steps in ({1}, {-1})
