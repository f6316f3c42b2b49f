"""Where a domain wants its reports: the ``_smtp._tls.<domain>`` TXT
record (RFC 8460 §3), parsed strictly and bounded, and looked up through
mxg's own resolver with a small cache.

Only ``mailto:`` and ``https:`` URIs count (§3); each is at most
`MAX_URI` characters and at most `MAX_RUA` of them are used: a domain
cannot make mxg send a report to hundreds of places or carry a
kilobyte-long address into a mail envelope."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# More destinations than this are ignored (in the record's order).
MAX_RUA = 4
# An address longer than this is malformed (RFC 5321 §4.5.3.1.3: a path
# is at most 256 octets; a URL this long is no reporting endpoint).
MAX_URI = 256
# The whole TXT record: a record beyond this is refused.
MAX_RECORD = 2048
# How long an answer (or its absence) is kept, at most.
CACHE_SECONDS = 3600.0

# §3: field-delim = *WSP ";" *WSP; tlsrpt-ext-name and -value.
_EXT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_EXT_VALUE = re.compile(r"^[\x21-\x3a\x3c\x3e-\x7e]+$")
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}$")


class RecordError(ValueError):
    """A TLSRPT record that cannot be used; the text says why."""


@dataclass(frozen=True)
class Rua:
    """One report destination: ``mailto`` with its address, or ``https``
    with its URL; `destination` is what the rate limit counts by (the
    mail domain or the web host)."""

    uri: str
    scheme: str  # mailto | https
    target: str  # the address, or the URL

    @property
    def destination(self) -> str:
        if self.scheme == "mailto":
            return self.target.rpartition("@")[2].lower()
        return (urlsplit(self.target).hostname or "").lower()


def parse_record(records: list[str]) -> list[Rua]:
    """The destinations of a ``_smtp._tls`` TXT record set. §3: records
    not starting with ``v=TLSRPTv1;`` are discarded; exactly one must
    remain. Raises RecordError."""
    ours = [r for r in records if r.startswith("v=TLSRPTv1")]
    if len(ours) != 1:
        raise RecordError(f"expected one v=TLSRPTv1 record, found {len(ours)}")
    record = ours[0]
    if len(record) > MAX_RECORD:
        raise RecordError(f"record longer than {MAX_RECORD} characters")
    fields = [f.strip(" \t") for f in record.split(";")]
    if fields[0] != "v=TLSRPTv1":
        raise RecordError("the record must begin with v=TLSRPTv1;")
    if len(fields) < 2:
        raise RecordError("no rua field")
    if fields[-1] == "":
        fields.pop()  # a trailing field-delim is allowed
    rua: list[Rua] | None = None
    for f in fields[1:]:
        name, eq, value = f.partition("=")
        if not eq or not name:
            raise RecordError(f"malformed field {f[:40]!r}")
        if name == "rua":
            if rua is not None:
                raise RecordError("rua given twice")
            rua = _parse_rua(value)
        elif not _EXT_NAME.match(name) or not _EXT_VALUE.match(value):
            raise RecordError(f"malformed field {f[:40]!r}")
        # Unknown fields are ignored (§3).
    if not rua:
        raise RecordError("no rua field")
    return rua


def _parse_rua(value: str) -> list[Rua]:
    out: list[Rua] = []
    for part in value.split(","):
        uri = part.strip(" \t")
        if not uri:
            raise RecordError("an empty rua URI")
        if len(uri) > MAX_URI:
            raise RecordError(f"a rua URI longer than {MAX_URI} characters")
        out.append(_parse_uri(uri))
    # Beyond MAX_RUA they are ignored, the first ones kept (§3 names no
    # order, the record's own is the operator's).
    return list(dict.fromkeys(out))[:MAX_RUA]


def _parse_uri(uri: str) -> Rua:
    scheme, colon, rest = uri.partition(":")
    scheme = scheme.lower()
    if not colon:
        raise RecordError(f"rua {uri[:60]!r} is not a URI")
    if any(c <= " " or c == "\x7f" for c in uri):
        raise RecordError(f"rua {uri[:60]!r} contains a space or control character")
    if scheme == "mailto":
        # RFC 6068: mailto:addr; hfields (?subject=...) are not used.
        address = unquote(rest.partition("?")[0])
        local, at, host = address.rpartition("@")
        if "," in address or not at or not _LOCAL.match(local) or not _HOST.match(host):
            raise RecordError(f"rua {uri[:60]!r} is not one mail address")
        if local.startswith(".") or local.endswith(".") or ".." in local:
            raise RecordError(f"rua {uri[:60]!r} is not one mail address")
        return Rua(uri, "mailto", f"{local}@{host.lower()}")
    if scheme == "https":
        parts = urlsplit(uri)
        if not parts.hostname or not _HOST.match(parts.hostname) or parts.username:
            raise RecordError(f"rua {uri[:60]!r} has no usable host")
        try:
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise RecordError(f"rua {uri[:60]!r} has a bad port") from None
        return Rua(uri, "https", uri)
    raise RecordError(f"rua {uri[:60]!r}: only mailto: and https: are used")


TxtLookup = Callable[[str], Awaitable[list[str] | None]]
"""TXT strings at a name; None when it has none (NXDOMAIN, no TXT).
Raises on a failed lookup (SERVFAIL, timeout)."""


class Discovery:
    """Report destinations by domain, cached (answers and their absence)
    for `CACHE_SECONDS`; a failed lookup is not cached."""

    def __init__(self, lookup: TxtLookup, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._clock = clock
        self._cache: dict[str, tuple[float, list[Rua] | RecordError]] = {}

    async def rua(self, domain: str) -> list[Rua]:
        """The domain's destinations; [] when it publishes no record.
        Raises RecordError for a malformed record and OSError-like lookup
        failures from the lookup itself."""
        hit = self._cache.get(domain)
        now = self._clock()
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], RecordError):
                raise hit[1]
            return hit[1]
        txt = await self._lookup(f"_smtp._tls.{domain}")
        result: list[Rua] | RecordError
        if txt is None or not any(t.startswith("v=TLSRPTv1") for t in txt):
            result = []
        else:
            try:
                result = parse_record(txt)
            except RecordError as e:
                result = e
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[domain] = (now + CACHE_SECONDS, result)
        if isinstance(result, RecordError):
            raise result
        return result


def dns_lookup(resolver: object) -> TxtLookup:
    """A `TxtLookup` through the configured dnspython resolver
    (`DnsResolver.raw`)."""
    import dns.exception  # noqa: PLC0415
    import dns.resolver  # noqa: PLC0415

    async def lookup(name: str) -> list[str] | None:
        try:
            answer = await resolver.resolve(name, "TXT", search=False)  # type: ignore[attr-defined]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as e:
            raise LookupFailed(f"TXT {name}: {e}") from None
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]

    return lookup


class LookupFailed(Exception):
    """The TXT lookup failed (SERVFAIL, timeout): try again later."""
