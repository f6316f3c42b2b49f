"""A seeded corpus of RFC 5322 messages with ground truth for the content
scanner (``mxg._core.scan``).

Every message is built with the stdlib :mod:`email` package and carries the
values that were planted in it, per detector key ("iban", "tax-id", "card",
"kvnr", "keyword:health", "regex:aktenzeichen"). Valid values are generated
from their check-digit algorithms; decoys have the same shapes but fail the
check (or a structure rule, or a word boundary), so a scanner that only
pattern-matches is caught as a false positive.

Generation is deterministic: one ``random.Random(seed)`` drives everything,
and MIME boundaries are set explicitly (the stdlib would draw them from the
global ``random`` module). Any value that would also be valid for another
detector (a Luhn-valid run inside an IBAN, a tax ID inside a card number) is
drawn again, so the ground truth never depends on how a scanner resolves
such overlaps.

:func:`reference_scan` is a small Python model of the specified scanner; the
corpus test checks that it agrees with the ground truth, which proves the
generator before the Rust scanner exists.
"""

from __future__ import annotations

import base64
import functools
import html
import itertools
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email import quoprimime
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.utils import format_datetime
from html.parser import HTMLParser

DEFAULT_SEED = 20240611
DEFAULT_SIZE = 300

KEYWORD_LIST = "health"
REGEX_LIST = "aktenzeichen"
# An Aktenzeichen (file reference) as an organisation would configure it.
AKTENZEICHEN = r"\bAZ[- ]\d{3}/\d{2}\b"

# German and English health/social terms (special categories of personal
# data, GDPR Art. 9). The scanner matches whole words only.
KEYWORDS: tuple[str, ...] = (
    "Diagnose",
    "Befund",
    "Krankheit",
    "Sozialhilfe",
    "Therapie",
    "Pflegegrad",
    "Arbeitsunfähigkeit",
    "Schwerbehinderung",
    "diagnosis",
    "disability",
    "welfare",
    "pregnancy",
)
# Words that contain a keyword but are not it: no match under whole-word
# matching. "Sozialhilfeämter" and "Fußbefund" put a non-ASCII letter next to
# the keyword, so an ASCII-only word boundary is caught too.
KEYWORD_NEAR_MISSES: tuple[str, ...] = (
    "Diagnosen",
    "Fehldiagnose",
    "Befundbericht",
    "Vorbefunde",
    "Fußbefund",
    "Krankheitsbild",
    "Sozialhilfeämter",
    "Physiotherapie",
    "Therapieplan",
    "Pflegegrades",
    "Arbeitsunfähigkeitsbescheinigung",
    "Schwerbehinderungen",
    "diagnoses",
    "misdiagnosis",
    "disabilities",
)

DETECTORS: tuple[str, ...] = (
    "iban",
    "tax-id",
    "card",
    "kvnr",
    f"keyword:{KEYWORD_LIST}",
    f"regex:{REGEX_LIST}",
)
KEYWORD_KEY = f"keyword:{KEYWORD_LIST}"
REGEX_KEY = f"regex:{REGEX_LIST}"

# Generous limits: no message of the corpus may hit one.
OPTIONS: dict[str, object] = {
    "max_scan_bytes": 16 * 1024 * 1024,
    "max_depth": 8,
    "max_parts": 256,
    "keywords": [{"name": KEYWORD_LIST, "words": list(KEYWORDS)}],
    "patterns": [{"name": REGEX_LIST, "regexes": [AKTENZEICHEN]}],
}


def options_json() -> str:
    """:data:`OPTIONS` as the JSON string ``scan`` takes."""
    return json.dumps(OPTIONS, ensure_ascii=False)


@dataclass(frozen=True)
class Sample:
    """One message and its ground truth.

    ``truth`` maps a detector key to the values planted (normalised: IBAN
    and card without separators, keywords as listed); a key is absent when
    nothing was planted for it. ``decoys`` are the look-alikes in the
    message, listed so a false positive can be traced.
    """

    message: bytes
    truth: dict[str, set[str]]
    kind: str
    index: int = 0
    decoys: tuple[str, ...] = field(default=())

    @property
    def positive(self) -> bool:
        return any(self.truth.values())


# -- Check-digit algorithms -------------------------------------------------

# IBAN lengths (ISO 13616 registry) of the countries the corpus uses.
IBAN_LENGTHS = {"DE": 22, "AT": 20, "FR": 27, "NL": 18, "GB": 22, "CH": 21}


def iban_remainder(iban: str) -> int:
    """ISO 13616 / ISO 7064 MOD 97-10: move the first four characters to the
    end, replace letters by 10..35, take the number modulo 97."""
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97


def iban_valid(iban: str) -> bool:
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", iban):
        return False
    return IBAN_LENGTHS.get(iban[:2]) == len(iban) and iban_remainder(iban) == 1


def luhn_valid(digits: str) -> bool:
    """Luhn (ISO/IEC 7812-1): double every second digit from the right,
    subtract 9 from products over 9; the sum is a multiple of 10."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_check_digit(payload: str) -> str:
    return next(d for d in "0123456789" if luhn_valid(payload + d))


# Issuer identification number ranges and lengths (ISO/IEC 7812) as broadly
# as any scanner might know them: the generator rejects decoys that any of
# these would accept. (first prefix, last prefix, allowed lengths)
_CARD_RANGES: tuple[tuple[str, str, frozenset[int]], ...] = (
    # Visa: 13, 16, 19 (ISO 7812 tables); some tables also list 18. None
    # lists 14, 15 or 17, which the corpus uses as decoys.
    ("4", "4", frozenset({13, 16, 18, 19})),
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("6011", "6011", frozenset(range(16, 20))),  # Discover
    ("644", "649", frozenset(range(16, 20))),
    ("65", "65", frozenset(range(16, 20))),
    ("3528", "3589", frozenset(range(16, 20))),  # JCB
    ("300", "305", frozenset(range(14, 20))),  # Diners Club
    ("36", "36", frozenset(range(14, 20))),
    ("38", "39", frozenset(range(16, 20))),
    ("62", "62", frozenset(range(16, 20))),  # UnionPay
    ("2200", "2204", frozenset(range(16, 20))),  # Mir
    ("50", "50", frozenset(range(13, 20))),  # Maestro
    ("56", "69", frozenset(range(13, 20))),
)

# What the corpus plants: the common networks at their standard lengths.
_CARD_ISSUERS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("4",), 16),
    (tuple(str(p) for p in range(51, 56)), 16),
    (tuple(str(p) for p in range(2221, 2721)), 16),
    (("34", "37"), 15),
    (("6011", "65"), 16),
    (tuple(str(p) for p in range(3528, 3590)), 16),
)


def card_valid(digits: str) -> bool:
    if not (13 <= len(digits) <= 19 and digits.isdigit() and luhn_valid(digits)):
        return False
    return any(
        lo <= digits[: len(lo)] <= hi and len(digits) in lengths for lo, hi, lengths in _CARD_RANGES
    )


def tax_id_check_digit(first10: str) -> str:
    """ISO 7064 MOD 11,10 (hybrid system) as the BZSt specifies for the
    Steuerliche Identifikationsnummer."""
    product = 10
    for c in first10:
        s = (int(c) + product) % 10 or 10
        product = s * 2 % 11
    check = 11 - product
    return "0" if check == 10 else str(check)


def tax_id_structure_ok(first10: str) -> bool:
    """In the first ten digits exactly one digit occurs twice or three times
    and every other digit at most once; a triple must not stand all three
    in a row (the rule since 2016)."""
    counts = {d: first10.count(d) for d in set(first10)}
    repeated = [d for d, n in counts.items() if n > 1]
    if len(repeated) != 1 or counts[repeated[0]] not in (2, 3):
        return False
    return repeated[0] * 3 not in first10


def tax_id_valid(digits: str) -> bool:
    return (
        len(digits) == 11
        and digits.isdigit()
        and digits[0] != "0"
        and tax_id_structure_ok(digits[:10])
        and tax_id_check_digit(digits[:10]) == digits[10]
    )


def kvnr_check_digit(letter: str, first8: str) -> str:
    """Krankenversichertennummer (§ 290 SGB V): the letter as its position
    01..26, then the eight digits; weights 1,2,1,2,...; add the digit sums of
    the products; the last digit of the total is the check digit."""
    digits = f"{ord(letter) - ord('A') + 1:02d}{first8}"
    total = 0
    for i, c in enumerate(digits):
        p = int(c) * (1 if i % 2 == 0 else 2)
        total += p // 10 + p % 10
    return str(total % 10)


def kvnr_valid(value: str) -> bool:
    if not re.fullmatch(r"[A-Z]\d{9}", value):
        return False
    return kvnr_check_digit(value[0], value[1:9]) == value[9]


def _embedded_hits(text: str) -> set[tuple[str, str]]:
    """Every value a careless scanner could read in ``text``: separators
    (space, no-break space, hyphen) removed, every digit window of a tax ID's
    or card's length, every letter+9 digits, the whole thing as an IBAN."""
    compact = re.sub(r"[ \u00a0-]", "", text)
    hits: set[tuple[str, str]] = set()
    if iban_valid(compact):
        hits.add(("iban", compact))
    for run in re.findall(r"\d+", compact):
        for i in range(len(run) - 10):
            if tax_id_valid(run[i : i + 11]):
                hits.add(("tax-id", run[i : i + 11]))
        for width in range(13, 20):
            for i in range(len(run) - width + 1):
                if card_valid(run[i : i + width]):
                    hits.add(("card", run[i : i + width]))
    for m in re.finditer(r"(?=([A-Z]\d{9}))", compact):
        if kvnr_valid(m.group(1)):
            hits.add(("kvnr", m.group(1)))
    return hits


# -- Values and decoys ------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    """A value or decoy with its spellings. ``detector`` is the key it must
    fire (None for a decoy); ``norm`` is the value as the scanner reports
    it; ``forms`` are the spellings (the first is compact)."""

    detector: str | None
    norm: str
    forms: tuple[str, ...]
    what: str
    # A decoy may hide a valid value behind a missing word boundary on
    # purpose (an order number around a KVNR).
    hidden: frozenset[tuple[str, str]] = frozenset()

    @property
    def groupable(self) -> bool:
        return any(" " in f for f in self.forms) and self.detector in {None, "iban", "card"}


def _groups(s: str, sizes: Sequence[int], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(s[i : i + n])
        i += n
    return sep.join(out)


def _by4(s: str, sep: str = " ") -> str:
    return sep.join(s[i : i + 4] for i in range(0, len(s), 4))


class _Gen:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(n))

    def _clean(self, token: _Token) -> _Token | None:
        """The token if no spelling of it reads as anything but itself."""
        own = {(token.detector, token.norm)} if token.detector else set()
        for form in token.forms:
            if _embedded_hits(form) != own | token.hidden:
                return None
        return token

    # IBAN ----------------------------------------------------------------

    def _bban(self, country: str) -> str:
        rng = self.rng
        if country == "DE":  # Bankleitzahl 8 + account 10
            return self.digits(18)
        if country == "AT":  # Bankleitzahl 5 + account 11
            return self.digits(16)
        if country == "CH":  # clearing number 5 + account 12
            return self.digits(17)
        if country == "FR":
            # Bank 5, branch 5, account 11, RIB key: 97 - (89b + 15g + 3c) mod 97.
            bank, branch, account = self.digits(5), self.digits(5), self.digits(11)
            key = 97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97
            return f"{bank}{branch}{account}{key:02d}"
        if country == "NL":
            # Bank code + 10-digit account passing the Dutch "elfproef"
            # (weights 10..1, sum divisible by 11).
            while True:
                account = self.digits(10)
                if sum((10 - i) * int(c) for i, c in enumerate(account)) % 11 == 0:
                    return rng.choice(["ABNA", "INGB", "RABO", "TRIO", "SNSB"]) + account
        # GB: bank code, sort code 6, account 8.
        return rng.choice(["NWBK", "BARC", "HBUK", "LOYD", "MIDL"]) + self.digits(14)

    def _iban(self, valid: bool) -> _Token | None:
        country = self.rng.choice(sorted(IBAN_LENGTHS))
        bban = self._bban(country)
        check = 98 - iban_remainder(f"{country}00{bban}")
        if not valid:
            # Any other pair of check digits leaves a remainder other than 1.
            check = self.rng.choice([c for c in range(2, 99) if c != check])
        iban = f"{country}{check:02d}{bban}"
        return self._clean(
            _Token(
                "iban" if valid else None,
                iban,
                (iban, _by4(iban)),
                "iban" if valid else "iban-bad-check",
            )
        )

    # Tax ID --------------------------------------------------------------

    def _tax_first10(self, shape: str, leading_zero: bool = False) -> str:
        rng = self.rng
        while True:
            if shape == "double":
                ds = rng.sample("0123456789", 9)
                seq = [*ds, ds[0]]
            elif shape == "triple":
                ds = rng.sample("0123456789", 8)
                seq = [*ds, ds[0], ds[0]]
            elif shape == "distinct":  # no repeated digit: structure violated
                ds = rng.sample("0123456789", 10)
                seq = list(ds)
            else:  # two digits repeated: structure violated
                ds = rng.sample("0123456789", 8)
                seq = [*ds, ds[0], ds[1]]
            rng.shuffle(seq)
            s = "".join(seq)
            if shape == "triple":
                # Keep the three apart entirely, valid under any reading of
                # the "not all three in a row" rule.
                pos = [i for i, c in enumerate(s) if c == ds[0]]
                if any(b - a == 1 for a, b in itertools.pairwise(pos)):
                    continue
            if (s[0] == "0") == leading_zero:
                return s

    def _tax_id(self, what: str) -> _Token | None:
        if what == "tax-id":
            first10 = self._tax_first10(self.rng.choice(["double", "double", "double", "triple"]))
            value = first10 + tax_id_check_digit(first10)
        elif what == "tax-bad-check":
            first10 = self._tax_first10("double")
            good = int(tax_id_check_digit(first10))
            value = first10 + str((good + self.rng.randint(1, 9)) % 10)
        elif what == "tax-leading-zero":
            first10 = self._tax_first10("double", leading_zero=True)
            value = first10 + tax_id_check_digit(first10)
        else:  # tax-bad-structure
            first10 = self._tax_first10(self.rng.choice(["distinct", "two-pairs"]))
            value = first10 + tax_id_check_digit(first10)
        valid = what == "tax-id"
        return self._clean(_Token("tax-id" if valid else None, value, (value,), what))

    # Payment card --------------------------------------------------------

    def _card_forms(self, number: str) -> tuple[str, ...]:
        if len(number) == 15:  # American Express prints 4-6-5
            return (number, _groups(number, (4, 6, 5), " "), _groups(number, (4, 6, 5), "-"))
        return (number, _by4(number), _by4(number, "-"))

    def _card(self, what: str) -> _Token | None:
        rng = self.rng
        if what in {"card", "card-bad-luhn"}:
            prefixes, length = rng.choice(_CARD_ISSUERS)
            payload = rng.choice(prefixes)
        elif what == "card-unknown-iin":  # Luhn-valid, no network starts so
            payload, length = rng.choice(["0", "99"]), 16
        elif what == "card-bad-length":  # Luhn-valid Amex prefix, 16 digits
            payload, length = rng.choice(["34", "37"]), 16
        elif what == "card-visa-bad-length":  # Luhn-valid Visa prefix, no Visa length
            payload, length = "4", rng.choice([14, 15, 17])
        else:  # card-random: 16 random digits failing Luhn
            payload, length = rng.choice("123456789"), 16
        payload += self.digits(length - 1 - len(payload))
        check = luhn_check_digit(payload)
        if what in {"card-bad-luhn", "card-random"}:
            check = str((int(check) + rng.randint(1, 9)) % 10)
        number = payload + check
        valid = what == "card"
        return self._clean(
            _Token("card" if valid else None, number, self._card_forms(number), what)
        )

    # KVNR ----------------------------------------------------------------

    def _kvnr(self, what: str) -> _Token | None:
        rng = self.rng
        letter = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        first8 = self.digits(8)
        good = letter + first8 + kvnr_check_digit(letter, first8)
        if what == "kvnr":
            return self._clean(_Token("kvnr", good, (good,), what))
        if what == "kvnr-bad-check":
            bad = good[:9] + str((int(good[9]) + rng.randint(1, 9)) % 10)
            return self._clean(_Token(None, bad, (bad,), what))
        # order-id: letter + 10 digits + letter, e.g. A1234567890X. Half of
        # them start with a valid KVNR that only a missing word boundary
        # would find.
        hide = rng.random() < 0.5
        head = good if hide else letter + self.digits(9)
        order = head + self.digits(1) + rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ")
        hidden = frozenset({("kvnr", good)}) if hide else frozenset()
        return self._clean(_Token(None, order, (order,), what, hidden))

    # Words and references -------------------------------------------------

    def _keyword(self, ascii_only: bool) -> _Token:
        words = [w for w in KEYWORDS if w.isascii() or not ascii_only]
        w = self.rng.choice(words)
        return _Token(KEYWORD_KEY, w, (w,), "keyword")

    def _aktenzeichen(self) -> _Token:
        v = f"AZ{self.rng.choice('- ')}{self.digits(3)}/{self.digits(2)}"
        return _Token(REGEX_KEY, v, (v,), "aktenzeichen")

    def value(self, detector: str, ascii_only: bool) -> _Token:
        while True:
            token: _Token | None
            if detector == "iban":
                token = self._iban(True)
            elif detector == "tax-id":
                token = self._tax_id("tax-id")
            elif detector == "card":
                token = self._card("card")
            elif detector == "kvnr":
                token = self._kvnr("kvnr")
            elif detector == KEYWORD_KEY:
                token = self._keyword(ascii_only)
            else:
                token = self._aktenzeichen()
            if token is not None:
                return token

    DECOYS: tuple[str, ...] = (
        "iban-bad-check",
        "tax-bad-check",
        "tax-leading-zero",
        "tax-bad-structure",
        "card-bad-luhn",
        "card-unknown-iin",
        "card-bad-length",
        "card-visa-bad-length",
        "card-random",
        "kvnr-bad-check",
        "order-id",
        "phone",
        "date",
        "invoice",
        "zip",
        "amount",
        "keyword-near-miss",
        "aktenzeichen-near-miss",
    )

    def decoy(self, what: str, ascii_only: bool) -> _Token:
        while True:
            token = self._decoy(what, ascii_only)
            if token is not None:
                return token

    def _decoy(self, what: str, ascii_only: bool) -> _Token | None:
        rng, d = self.rng, self.digits
        if what == "iban-bad-check":
            return self._iban(False)
        if what.startswith("tax-"):
            return self._tax_id(what)
        if what.startswith("card-"):
            return self._card(what)
        if what in {"kvnr-bad-check", "order-id"}:
            return self._kvnr(what)
        if what == "phone":
            v = rng.choice(
                [
                    f"+49 30 {d(7)}",
                    f"+49 {rng.choice(['151', '171', '176'])} {d(8)}",
                    f"030 {d(8)}",
                    f"0{rng.choice(['151', '171', '89'])}-{d(7)}",
                    f"0{rng.choice(['30', '40', '69'])}{d(8)}",  # 11 digits, leading 0
                ]
            )
        elif what == "date":
            day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1990, 2030)
            v = rng.choice(
                [
                    f"{day:02d}.{month:02d}.{year}",
                    f"{year}-{month:02d}-{day:02d}",
                    f"{day}.{month}.",
                ]
            )
        elif what == "invoice":
            v = rng.choice([f"RE-{rng.randint(2015, 2030)}-{d(5)}", f"INV-{d(9)}", d(10)])
        elif what == "zip":
            v = f"{d(5)} {rng.choice(['Berlin', 'Hamburg', 'Köln', 'München'])}"
        elif what == "amount":
            v = f"{rng.randint(1, 99)}.{d(3)},{d(2)} {rng.choice(['EUR', '€'])}"
        elif what == "keyword-near-miss":
            words = [w for w in KEYWORD_NEAR_MISSES if w.isascii() or not ascii_only]
            v = rng.choice(words)
        else:  # aktenzeichen-near-miss
            v = rng.choice(
                [
                    f"AZ-{d(4)}/{d(2)}",  # four digits
                    f"AZ{d(3)}/{d(2)}",  # no separator
                    f"XAZ-{d(3)}/{d(2)}",  # no word boundary before
                    f"AZ-{d(3)}/{d(4)}",  # no word boundary after
                ]
            )
        if ascii_only:
            v = v.replace("€", "EUR").replace("ö", "oe").replace("ü", "ue")
        return self._clean(_Token(None, v, (v,), what))


# -- Text ------------------------------------------------------------------

# Filler: no digits, no keyword (the corpus test checks this).
_FILLER = {
    "de": (
        "Anbei erhalten Sie die gewünschten Unterlagen.",
        "Bitte prüfen Sie die Angaben und melden Sie sich bei Rückfragen.",
        "Die Übermittlung erfolgt gemäß unserer Vereinbarung.",
        "Für weitere Informationen stehen wir Ihnen gerne zur Verfügung.",
        "Wir bedanken uns für Ihre Geduld.",
        "Die Zahlung wird in den nächsten Tagen angewiesen.",
        "Das Büro ist über die Feiertage geschlossen.",
        "Über eine kurze Bestätigung würden wir uns freuen.",
        "Die Originale schicken wir Ihnen per Post zu.",
        "Bei Änderungen informieren Sie uns bitte rechtzeitig.",
        "Grüße auch an die Kolleginnen und Kollegen in Köln.",
        "Leider konnten wir Sie telefonisch nicht erreichen.",
    ),
    "en": (
        "Please find the requested documents attached.",
        "Let us know if anything is missing.",
        "Thanks for your quick reply.",
        "The meeting has been moved to next week.",
        "We will send the originals by post.",
        "Please confirm receipt of this message.",
        "Our office is closed over the holidays.",
        "Feel free to forward this to your colleagues.",
    ),
}
_GREETING = {
    "de": ("Sehr geehrte Frau Müller,", "Hallo Jürgen,", "Sehr geehrte Damen und Herren,"),
    "en": ("Dear Ms Smith,", "Hello John,", "Dear Sir or Madam,"),
}
_CLOSING = {
    "de": ("Mit freundlichen Grüßen\nJürgen Weiß", "Viele Grüße\nGöran Bäcker"),
    "en": ("Kind regards\nJohn Smith", "Best wishes\nMary Jones"),
}
_VALUE_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "de": {
        "iban": (
            "Bitte überweisen Sie den Betrag auf das Konto {v}.",
            "IBAN: {v}",
            "Unsere Bankverbindung lautet {v} bei der Sparkasse.",
        ),
        "tax-id": (
            "Steuer-ID: {v}",
            "Ihre steuerliche Identifikationsnummer lautet {v}.",
            "Die Identifikationsnummer {v} wurde übermittelt.",
        ),
        "card": (
            "Kartennummer: {v}",
            "Die Zahlung mit der Kreditkarte {v} wurde abgelehnt.",
        ),
        "kvnr": (
            "Versichertennummer: {v}",
            "Die Krankenversichertennummer {v} ist hinterlegt.",
        ),
        KEYWORD_KEY: (
            "Im Anhang finden Sie die Unterlagen zum Thema {v}.",
            "Stichwort: {v}, bitte vertraulich behandeln.",
        ),
        REGEX_KEY: ("Aktenzeichen {v}", "Unser Zeichen: {v}, bitte stets angeben."),
    },
    "en": {
        "iban": ("Please transfer the amount to {v} by Friday.", "IBAN: {v}"),
        "tax-id": ("Tax identification number {v} is on file.", "Tax ID: {v}"),
        "card": ("Card number {v} was charged today.", "Card: {v}"),
        "kvnr": ("Insurance number {v} belongs to the patient.", "KVNR: {v}"),
        KEYWORD_KEY: ("Regarding the {v}, see the attached letter.", "Topic: {v}."),
        REGEX_KEY: ("Reference {v} applies.", "File: {v}"),
    },
}
_DECOY_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "de": {
        "phone": ("Telefon: {v}", "Rückruf unter {v} erbeten."),
        "date": ("Datum: {v}", "Der Termin am {v} bleibt bestehen."),
        "invoice": ("Rechnung {v} ist beglichen.", "Vorgang {v}"),
        "zip": ("Anschrift: Hauptstraße, {v}",),
        "amount": ("Betrag: {v}",),
        "order-id": ("Bestellung {v} ist unterwegs.",),
        "keyword-near-miss": ("Die {v} wurden besprochen.", "Siehe {v} im Anhang."),
        "aktenzeichen-near-miss": ("Altes Zeichen {v}",),
    },
    "en": {
        "phone": ("Phone: {v}", "Call us on {v}."),
        "date": ("Date: {v}", "The appointment on {v} stands."),
        "invoice": ("Invoice {v} is paid.",),
        "zip": ("Address: Main Street, {v}",),
        "amount": ("Amount: {v}",),
        "order-id": ("Order {v} has shipped.",),
        "keyword-near-miss": ("The {v} were discussed.",),
        "aktenzeichen-near-miss": ("Old reference {v}",),
    },
}
# Shaped decoys use the templates of the detector they imitate.
_DECOY_AS = {
    "iban-bad-check": "iban",
    "tax-bad-check": "tax-id",
    "tax-leading-zero": "tax-id",
    "tax-bad-structure": "tax-id",
    "card-bad-luhn": "card",
    "card-unknown-iin": "card",
    "card-bad-length": "card",
    "card-visa-bad-length": "card",
    "card-random": "card",
    "kvnr-bad-check": "kvnr",
}
_SUBJECT_LABEL = {
    "iban": "Konto ",
    "tax-id": "Steuer-ID ",
    "card": "Karte ",
    "kvnr": "KVNR ",
    KEYWORD_KEY: "",
    REGEX_KEY: "Zeichen ",
}
_SUBJECTS = {
    "de": ("Ihre Unterlagen", "Rückfrage zu Ihrem Schreiben", "Kurze Information", "Prüfung"),
    "en": ("Your documents", "Quick question", "Follow-up"),
}


@dataclass(frozen=True)
class _Line:
    template: str
    token: _Token | None = None
    form: str = ""

    def plain(self) -> str:
        return self.template.replace("{v}", self.form) if self.token else self.template


_ENTITIES = {"ä": "&auml;", "ö": "&ouml;", "ü": "&uuml;", "Ä": "&Auml;", "Ö": "&Ouml;"}
_ENTITIES |= {"Ü": "&Uuml;", "ß": "&szlig;", "€": "&euro;"}


def _esc(text: str, entities: bool) -> str:
    out = html.escape(text, quote=False)
    if entities:
        out = "".join(_ENTITIES.get(c, c) for c in out)
    return out


def _html_line(line: _Line, style: str, entities: bool) -> str:
    before, _, after = line.template.partition("{v}")
    if line.token is None:
        content = _esc(line.template, entities)
    else:
        value = _esc(line.form, entities)
        if style == "nbsp" and line.token.groupable:
            # Groups joined by entities: after decoding, U+00A0 separates them.
            value = value.replace(" ", "&nbsp;")
        elif style == "bold":
            value = f"<b>{value}</b>" if len(line.form) % 2 else f"<strong>{value}</strong>"
        content = _esc(before, entities) + value + _esc(after, entities)
    content = content.replace("\n", "<br>\n")
    return f"<tr><td>{content}</td></tr>" if style == "cells" else f"<p>{content}</p>"


def _html(lines: Sequence[_Line], style: str, charset: str, entities: bool) -> str:
    head = (
        "<!DOCTYPE html>\n<html><head>\n"
        f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">\n'
        "</head><body>"
    )
    body = [_html_line(line, style, entities) for line in lines]
    if style == "cells":
        body = ["<table>", *body, "</table>"]
    return "\n".join([head, *body, "</body></html>"]) + "\n"


# -- MIME ------------------------------------------------------------------

POLICY = email_policy.SMTP
_PYCODEC = {"windows-1252": "cp1252", "us-ascii": "ascii"}


def _fit(text: str, charset: str) -> str:
    """Spell € out where the charset has no such character."""
    if charset == "iso-8859-1":
        return text.replace("€", "EUR")
    return text


def _encode_text(text: str, charset: str, rng: random.Random) -> bytes:
    if charset == "utf-16":
        # RFC 2781: a byte order mark says which; both orders occur.
        if rng.random() < 0.5:
            return b"\xff\xfe" + text.encode("utf-16-le")
        return b"\xfe\xff" + text.encode("utf-16-be")
    return text.encode(_PYCODEC.get(charset, charset))


def _fill_text(
    part: EmailMessage, text: str, subtype: str, charset: str, cte: str, rng: random.Random
) -> EmailMessage:
    """Make ``part`` a text/<subtype> leaf with exactly the charset and
    transfer encoding asked for (the content manager would choose its own)."""
    text = _fit(text, charset)
    if not text.endswith("\n"):
        text += "\n"
    part["Content-Type"] = f'text/{subtype}; charset="{charset}"'
    part["Content-Transfer-Encoding"] = cte
    if cte == "base64":
        # Base64 carries the canonical form: CRLF line ends (RFC 2045 6.8).
        raw = _encode_text(text.replace("\n", "\r\n"), charset, rng)
        part.set_payload(base64.encodebytes(raw).decode("ascii"))
    elif cte == "quoted-printable":
        raw = _encode_text(text, charset, rng)
        part.set_payload(quoprimime.body_encode(raw.decode("latin-1"), maxlinelen=76) + "\n")
    else:  # 7bit or 8bit: the bytes as they are
        part.set_payload(_encode_text(text, charset, rng).decode("ascii", "surrogateescape"))
    return part


def _attachment(data: bytes, ctype: str, filename: str) -> EmailMessage:
    part = EmailMessage(policy=POLICY)
    part["Content-Type"] = ctype
    part.add_header("Content-Disposition", "attachment", filename=filename)
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(data).decode("ascii"))
    return part


def _multipart(part: EmailMessage, subtype: str, boundary: str) -> EmailMessage:
    part["Content-Type"] = f'multipart/{subtype}; boundary="{boundary}"'
    return part


def _rfc822(inner: EmailMessage) -> EmailMessage:
    part = EmailMessage(policy=POLICY)
    part["Content-Type"] = "message/rfc822"
    part["Content-Disposition"] = "attachment"
    part.attach(inner)
    return part


def _encoded_words(text: str, charset: str, encoding: str, max_len: int) -> str:
    """RFC 2047 encoded words of at most ``max_len`` characters, folded;
    a value may well be cut across two words, which a decoder joins."""
    codec = _PYCODEC.get(charset, charset)

    def word(chunk: str) -> str:
        raw = chunk.encode(codec)
        if encoding == "b":
            payload = base64.b64encode(raw).decode("ascii")
        else:
            safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/"
            payload = "".join(
                "_" if b == 0x20 else chr(b) if b in safe else f"={b:02X}" for b in raw
            )
        return f"=?{charset}?{encoding}?{payload}?="

    words, chunk = [], ""
    for c in text:
        if chunk and len(word(chunk + c)) > max_len:
            words.append(word(chunk))
            chunk = ""
        chunk += c
    words.append(word(chunk))
    return "\r\n ".join(words)


# -- Messages --------------------------------------------------------------

_PLAIN_KINDS = {
    # kind: (charset, transfer encoding, language)
    "plain/7bit-ascii": ("us-ascii", "7bit", "en"),
    "plain/qp-utf-8": ("utf-8", "quoted-printable", "de"),
    "plain/base64-utf-8": ("utf-8", "base64", "de"),
    "plain/8bit-iso-8859-1": ("iso-8859-1", "8bit", "de"),
    "plain/qp-windows-1252": ("windows-1252", "quoted-printable", "de"),
    "plain/base64-utf-16": ("utf-16", "base64", "de"),
    "plain/longline-qp": ("utf-8", "quoted-printable", "de"),
    "plain/longline-8bit": ("utf-8", "8bit", "de"),
}
KINDS: tuple[str, ...] = (
    *_PLAIN_KINDS,
    "html/cells",
    "html/nbsp",
    "html/bold",
    "alternative",
    "mixed/pdf+csv",
    "mixed/csv-only",
    "mixed/attachment-name",
    "subject/rfc2047-b",
    "subject/rfc2047-q",
    "nested/1",
    "nested/2",
    "mixed/pdf-embedded",
)
# Attachment names cannot carry the Aktenzeichen (it has a slash).
_NAME_DETECTORS = tuple(d for d in DETECTORS if d != REGEX_KEY)
_CHARSETS_8BIT = ("utf-8", "iso-8859-1", "windows-1252")


@dataclass
class _Plan:
    """What goes into one message: planted tokens (each once or twice, in
    different spellings) and decoys."""

    lang: str
    values: list[_Token]
    decoys: list[_Token]

    @property
    def ascii_only(self) -> bool:
        return self.lang == "en"


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.gen = _Gen(self.rng)
        self.boundaries = 0

    def boundary(self, index: int) -> str:
        self.boundaries += 1
        return f"=_mxg_corpus_{index}_{self.boundaries}"

    # Lines --------------------------------------------------------------

    def value_lines(self, plan: _Plan, tokens: Sequence[_Token]) -> list[_Line]:
        rng, out = self.rng, []
        for t in tokens:
            templates = _VALUE_TEMPLATES[plan.lang][str(t.detector)]
            out.append(_Line(rng.choice(templates), t, rng.choice(t.forms)))
            if len(t.forms) > 1 and rng.random() < 0.2:
                # The same value again, spelled differently: still one value.
                out.append(_Line(rng.choice(templates), t, rng.choice(t.forms)))
        return out

    def decoy_lines(self, plan: _Plan) -> list[_Line]:
        out = []
        for t in plan.decoys:
            as_ = _DECOY_AS.get(t.what)
            table = _VALUE_TEMPLATES[plan.lang] if as_ else _DECOY_TEMPLATES[plan.lang]
            out.append(_Line(self.rng.choice(table[as_ or t.what]), t, self.rng.choice(t.forms)))
        return out

    def body_lines(self, plan: _Plan, tokens: Sequence[_Token], decoys: bool) -> list[_Line]:
        rng = self.rng
        middle = [_Line(s) for s in rng.sample(_FILLER[plan.lang], rng.randint(2, 4))]
        middle += self.value_lines(plan, tokens)
        if decoys:
            middle += self.decoy_lines(plan)
        rng.shuffle(middle)
        return [
            _Line(rng.choice(_GREETING[plan.lang])),
            *middle,
            _Line(rng.choice(_CLOSING[plan.lang])),
        ]

    @staticmethod
    def plain(lines: Sequence[_Line]) -> str:
        return "\n".join(line.plain() for line in lines) + "\n"

    def long_lines(self, plan: _Plan, lines: Sequence[_Line], limit: int | None) -> str:
        """All sentences on one line (padded with filler to a length that
        forces soft line breaks), or, with ``limit``, on as few lines of at
        most ``limit`` bytes as fit (RFC 5322: 998)."""
        # Every sentence ends in punctuation, so no value runs into the next.
        texts = [line.plain().replace("\n", " ") for line in lines]
        texts = [t if t[-1] in ".,:!" else t + "." for t in texts]
        target = limit - 150 if limit else self.rng.randint(1200, 3000)
        while len(" ".join(texts).encode()) < target:
            texts.insert(self.rng.randint(1, len(texts)), self.rng.choice(_FILLER[plan.lang]))
        if limit is None:
            return " ".join(texts) + "\n"
        out, cur = [], ""
        for t in texts:
            if cur and len((cur + " " + t).encode()) > limit:
                out.append(cur)
                cur = t
            else:
                cur = f"{cur} {t}" if cur else t
        return "\n".join([*out, cur]) + "\n"

    # Parts --------------------------------------------------------------

    def text_body(
        self, part: EmailMessage, plan: _Plan, tokens: Sequence[_Token], index: int
    ) -> EmailMessage:
        """A plain, HTML or alternative body in a random charset/encoding."""
        rng = self.rng
        lines = self.body_lines(plan, tokens, decoys=True)
        shape = rng.choice(["plain", "plain", "html", "alternative"])
        cte = rng.choice(["quoted-printable", "base64"])
        charset = "utf-8" if plan.ascii_only else rng.choice(_CHARSETS_8BIT)
        if shape == "plain":
            return _fill_text(part, self.plain(lines), "plain", charset, cte, rng)
        page = _html(lines, rng.choice(["cells", "nbsp", "bold"]), charset, rng.random() < 0.5)
        if shape == "html":
            return _fill_text(part, page, "html", charset, cte, rng)
        _multipart(part, "alternative", self.boundary(index))
        part.attach(_fill_text(EmailMessage(POLICY), self.plain(lines), "plain", charset, cte, rng))
        part.attach(_fill_text(EmailMessage(POLICY), page, "html", charset, cte, rng))
        return part

    def pdf(self, embedded: Sequence[_Token] = ()) -> bytes:
        """PDF-looking random bytes; ``embedded`` values sit in a text
        operator, which a scanner must not read (binary content)."""
        rng = self.rng
        data = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(rng.randint(200, 1500))
        for t in embedded:
            data += b"\nBT /F1 12 Tf (" + rng.choice(t.forms).encode() + b") Tj ET\n"
            data += rng.randbytes(rng.randint(50, 400))
        return data + b"\n%%EOF\n"

    def csv(self, plan: _Plan, tokens: Sequence[_Token], decoys: Sequence[_Token]) -> str:
        rng = self.rng
        label = {
            "iban": "IBAN",
            "tax-id": "Steuer-ID",
            "card": "Karte",
            "kvnr": "KVNR",
            KEYWORD_KEY: "Thema",
            REGEX_KEY: "Aktenzeichen",
        }
        names = ["Müller", "Schäfer", "Weiß", "Öztürk", "Bauer", "Koch"]
        rows = [f"{rng.choice(names)};Ort;{rng.choice(['Köln', 'Berlin', 'Jena'])}"]
        rows += [
            f"{rng.choice(names)};{label[str(t.detector)]};{rng.choice(t.forms)}" for t in tokens
        ]
        rows += [f"{rng.choice(names)};Referenz;{rng.choice(t.forms)}" for t in decoys]
        rng.shuffle(rows)
        return "\n".join(["Name;Feld;Wert", *rows]) + "\n"

    # Messages -----------------------------------------------------------

    def headers(self, msg: EmailMessage, plan: _Plan, index: int, subject: str | None) -> None:
        rng = self.rng
        sender = rng.choice(
            [("Jürgen Weiß", "j.weiss"), ("Mary Jones", "mary"), ("Göran Bäcker", "gb")]
        )
        msg["From"] = Address(sender[0], sender[1], "example.org")
        msg["To"] = Address("Empfänger", "empfang", "example.net")
        if subject is None:
            text = rng.choice(_SUBJECTS[plan.lang])
            subject = text if text.isascii() else _encoded_words(text, "utf-8", "q", 60)
        msg.set_raw("Subject", subject)
        when = datetime(2024, 1, 1, 9, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 500_000))
        msg["Date"] = format_datetime(when)
        msg["Message-ID"] = f"<corpus-{index}.{rng.randrange(16**8):08x}@example.org>"
        msg["MIME-Version"] = "1.0"

    def inner_message(self, plan: _Plan, tokens: Sequence[_Token], index: int) -> EmailMessage:
        inner = EmailMessage(POLICY)
        self.headers(inner, plan, index, None)
        return self.text_body(inner, plan, tokens, index)

    def subject_with(self, plan: _Plan, tokens: Sequence[_Token], encoding: str) -> str:
        rng = self.rng
        phrases = [_SUBJECT_LABEL[str(t.detector)] + rng.choice(t.forms) for t in tokens]
        head = rng.choice(["Rückfrage", "Wichtig", "Übermittlung", "Ihre Anfrage"])
        text = f"{head}: {', '.join(phrases)}" if phrases else rng.choice(_SUBJECTS["de"])
        charset = rng.choice(_CHARSETS_8BIT)
        words = _encoded_words(text, charset, encoding, rng.randint(40, 60))
        # Sometimes a plain-text prefix before the encoded words.
        return rng.choice(["", "", "Re: ", "AW: "]) + words

    def message(self, index: int, kind: str, plan: _Plan) -> EmailMessage:
        rng, tokens = self.rng, plan.values
        msg = EmailMessage(POLICY)
        subject = None
        if kind.startswith("subject/"):
            subject = self.subject_with(plan, tokens, kind[-1])
        self.headers(msg, plan, index, subject)

        if kind in _PLAIN_KINDS:
            charset, cte, _ = _PLAIN_KINDS[kind]
            lines = self.body_lines(plan, tokens, decoys=True)
            if kind == "plain/longline-qp":
                text = self.long_lines(plan, lines, None)
            elif kind == "plain/longline-8bit":
                text = self.long_lines(plan, lines, 990)
            else:
                text = self.plain(lines)
            return _fill_text(msg, text, "plain", charset, cte, rng)
        if kind.startswith("html/"):
            charset = rng.choice(_CHARSETS_8BIT)
            lines = self.body_lines(plan, tokens, decoys=True)
            page = _html(lines, kind[5:], charset, rng.random() < 0.5)
            return _fill_text(
                msg, page, "html", charset, rng.choice(["quoted-printable", "base64"]), rng
            )
        if kind == "alternative":
            charset = rng.choice(_CHARSETS_8BIT)
            lines = self.body_lines(plan, tokens, decoys=True)
            # The same lines in both parts, each value in its own spelling.
            html_lines = [
                _Line(ln.template, ln.token, rng.choice(ln.token.forms)) if ln.token else ln
                for ln in lines
            ]
            page = _html(html_lines, rng.choice(["cells", "nbsp", "bold"]), charset, True)
            _multipart(msg, "alternative", self.boundary(index))
            cte = rng.choice(["quoted-printable", "base64"])
            msg.attach(
                _fill_text(EmailMessage(POLICY), self.plain(lines), "plain", charset, cte, rng)
            )
            msg.attach(_fill_text(EmailMessage(POLICY), page, "html", charset, cte, rng))
            return msg
        if kind.startswith("subject/"):
            no_values = _Plan(plan.lang, [], plan.decoys)
            return self.text_body(msg, no_values, [], index)

        _multipart(msg, "mixed", self.boundary(index))
        if kind == "mixed/pdf+csv":
            where = {id(t): rng.choice(["body", "csv", "both"]) for t in tokens}
            in_body = [t for t in tokens if where[id(t)] != "csv"]
            in_csv = [t for t in tokens if where[id(t)] != "body"]
            msg.attach(self.text_body(EmailMessage(POLICY), plan, in_body, index))
            msg.attach(_attachment(self.pdf(), "application/pdf", "Rechnung.pdf"))
            self.attach_csv(msg, plan, in_csv)
        elif kind == "mixed/csv-only":
            msg.attach(self.text_body(EmailMessage(POLICY), _Plan(plan.lang, [], []), [], index))
            self.attach_csv(msg, plan, tokens)
        elif kind == "mixed/attachment-name":
            msg.attach(self.text_body(EmailMessage(POLICY), plan, [], index))
            for stem in [f" {t.forms[0]}" for t in tokens] or [""]:
                head = rng.choice(["Unterlagen", "Übersicht", "Scan", "Anlage", "Dokument"])
                msg.attach(_attachment(self.pdf(), "application/pdf", f"{head}{stem}.pdf"))
        elif kind.startswith("nested/"):
            msg.attach(
                self.text_body(EmailMessage(POLICY), _Plan(plan.lang, [], plan.decoys), [], index)
            )
            inner = self.inner_message(_Plan(plan.lang, [], []), tokens, index)
            if kind == "nested/2":
                mid = EmailMessage(POLICY)
                self.headers(mid, plan, index, None)
                _multipart(mid, "mixed", self.boundary(index))
                mid.attach(
                    self.text_body(EmailMessage(POLICY), _Plan(plan.lang, [], []), [], index)
                )
                mid.attach(_rfc822(inner))
                inner = mid
            msg.attach(_rfc822(inner))
        else:  # mixed/pdf-embedded: valid values only inside binary content
            msg.attach(
                self.text_body(EmailMessage(POLICY), _Plan(plan.lang, [], plan.decoys), [], index)
            )
            msg.attach(_attachment(self.pdf(tokens), "application/pdf", "Scan.pdf"))
        return msg

    def attach_csv(self, msg: EmailMessage, plan: _Plan, tokens: Sequence[_Token]) -> None:
        rng = self.rng
        charset = rng.choice(["utf-8", "windows-1252"])
        cte = rng.choice(["quoted-printable", "base64"])
        decoys = plan.decoys[: rng.randint(0, len(plan.decoys))]
        part = _fill_text(
            EmailMessage(POLICY), self.csv(plan, tokens, decoys), "csv", charset, cte, rng
        )
        part.add_header("Content-Disposition", "attachment", filename="Export Übersicht.csv")
        msg.attach(part)

    # Planning -----------------------------------------------------------

    def plan(self, kind: str) -> _Plan:
        rng, gen = self.rng, self.gen
        lang = "en" if kind == "plain/7bit-ascii" or rng.random() < 0.15 else "de"
        if kind.startswith("subject/"):
            lang = "de"
        ascii_only = lang == "en"
        decoys = [
            gen.decoy(rng.choice(_Gen.DECOYS), ascii_only)
            for _ in range(rng.choice([0, 1, 2, 3, 4]))
        ]
        values: list[_Token] = []
        if rng.random() < 0.7:
            allowed = _NAME_DETECTORS if kind == "mixed/attachment-name" else DETECTORS
            for detector in rng.sample(allowed, rng.choice([1, 1, 2, 2, 3])):
                count = 2 if rng.random() < 0.25 else 1
                seen: set[str] = set()
                while len(seen) < count:
                    token = gen.value(detector, ascii_only)
                    if token.norm not in seen:
                        seen.add(token.norm)
                        values.append(token)
        return _Plan(lang, values, decoys)


def _generate(seed: int, n: int) -> Iterator[Sample]:
    builder = _Builder(seed)
    for index in range(n):
        kind = KINDS[index % len(KINDS)]
        plan = builder.plan(kind)
        msg = builder.message(index, kind, plan)
        truth: dict[str, set[str]] = {}
        if kind != "mixed/pdf-embedded":
            for t in plan.values:
                truth.setdefault(str(t.detector), set()).add(t.norm)
        decoys = tuple(f"{t.what}: {t.forms[0]}" for t in plan.decoys)
        if kind == "mixed/pdf-embedded":
            decoys += tuple(f"in binary PDF: {t.forms[0]}" for t in plan.values)
        yield Sample(msg.as_bytes(), truth, kind, index, decoys)


@functools.cache
def _corpus(seed: int, n: int) -> tuple[Sample, ...]:
    return tuple(_generate(seed, n))


def corpus(seed: int = DEFAULT_SEED, n: int = DEFAULT_SIZE) -> list[Sample]:
    """``n`` messages, the same for the same seed. Kinds cycle through
    :data:`KINDS`; about 70 % carry planted values."""
    return list(_corpus(seed, n))


# -- Reference scanner -------------------------------------------------------


class _HtmlText(HTMLParser):
    """Text of an HTML part: character data with entities decoded; script
    and style content dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"} and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.chunks.append(data)


def html_text(page: str, joiner: str = "") -> str:
    parser = _HtmlText()
    parser.feed(page)
    parser.close()
    return joiner.join(parser.chunks)


def message_texts(raw: bytes, html_joiner: str = "") -> list[str]:
    """The texts the scanner is specified to read: the decoded Subject, every
    text/* part (HTML as text), attachment names, nested messages; binary
    content not at all."""
    msg = BytesParser(policy=email_policy.default).parsebytes(raw)
    texts = [str(msg.get("Subject", ""))]

    def walk(part: MIMEPart) -> None:
        name = part.get_filename()
        if name:
            texts.append(name)
        if part.get_content_type() == "message/rfc822":
            for inner in part.iter_parts():
                walk(inner)
        elif part.is_multipart():
            for child in part.iter_parts():
                walk(child)
        elif part.get_content_maintype() == "text":
            content = part.get_content()
            assert isinstance(content, str)
            if part.get_content_subtype() == "html":
                content = html_text(content, html_joiner)
            texts.append(content)

    walk(msg)
    return texts


_SEP = "[ \u00a0]"
_IBAN_RE = re.compile(
    rf"(?<![A-Za-z0-9])[A-Z]{{2}}\d{{2}}"
    rf"(?:[A-Z0-9]{{11,30}}|(?:{_SEP}[A-Z0-9]{{4}}){{2,7}}(?:{_SEP}[A-Z0-9]{{1,3}})?)"
    r"(?![A-Za-z0-9])"
)
_CARD_SEP = "[ \u00a0-]"
_CARD_RE = re.compile(
    rf"(?<![\w-])(?:\d{{13,19}}|\d{{4}}(?:{_CARD_SEP}\d{{4}}){{2,3}}(?:{_CARD_SEP}\d{{1,3}})?"
    rf"|\d{{4}}{_CARD_SEP}\d{{6}}{_CARD_SEP}\d{{5}})(?![\w-])"
)
_TAX_RE = re.compile(r"(?<!\w)\d{11}(?!\w)")
_KVNR_RE = re.compile(r"(?<!\w)[A-Z]\d{9}(?!\w)")
_KEYWORD_RES = {w: re.compile(rf"(?<!\w){re.escape(w)}(?!\w)", re.IGNORECASE) for w in KEYWORDS}
_AKTENZEICHEN_RE = re.compile(AKTENZEICHEN)


def detect(text: str) -> dict[str, set[str]]:
    """The specified detectors on one text, values normalised."""
    found: dict[str, set[str]] = {}

    def add(key: str, value: str) -> None:
        found.setdefault(key, set()).add(value)

    for m in _IBAN_RE.finditer(text):
        v = re.sub(_SEP, "", m.group(0))
        if iban_valid(v):
            add("iban", v)
    for m in _CARD_RE.finditer(text):
        v = re.sub(_CARD_SEP, "", m.group(0))
        if card_valid(v):
            add("card", v)
    for m in _TAX_RE.finditer(text):
        if tax_id_valid(m.group(0)):
            add("tax-id", m.group(0))
    for m in _KVNR_RE.finditer(text):
        if kvnr_valid(m.group(0)):
            add("kvnr", m.group(0))
    for w, rx in _KEYWORD_RES.items():
        if rx.search(text):
            add(KEYWORD_KEY, w)
    for m in _AKTENZEICHEN_RE.finditer(text):
        add(REGEX_KEY, m.group(0))
    return found


def reference_scan(raw: bytes, html_joiner: str = "") -> dict[str, set[str]]:
    """What a scanner following the specification must find in ``raw``."""
    found: dict[str, set[str]] = {}
    for text in message_texts(raw, html_joiner):
        for key, values in detect(text).items():
            found.setdefault(key, set()).update(values)
    return found
