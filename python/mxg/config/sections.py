"""The sections of the configuration file, one pydantic model each
(``[server]``, ``[limits]``, ``[data]``, ``[dns]``, ``[delivery]``,
``[queue]``, ``[dsn]``, ``[log]``, ``[web]``, ``[metrics]``, ``[run]``
and the per-domain ``[[policy]]``), with the checks on their own values;
the rules and classes are in `mxg.config.classes`."""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, field_validator, model_validator

from mxg.config.base import (
    PIN,
    Method,
    PositiveSeconds,
    Seconds,
    Section,
    TransportLevel,
)
from mxg.vocab import Level


def _default_hostname() -> str:
    return socket.getfqdn() or "localhost"


class ServerConfig(Section):
    """The inbound SMTP server, facing the internal mail server."""

    hostname: str = Field(default_factory=_default_hostname)
    listen: list[str] = ["127.0.0.1:10025"]
    client_networks: list[str] = ["127.0.0.0/8", "::1/128"]
    max_connections: int = Field(1000, ge=1)
    max_connections_per_client: int = Field(200, ge=1)
    # Clients outside client_networks: "refuse" (554 5.7.1 instead of the
    # greeting) or "allow" (a session, refused at RCPT, in its own pool of
    # max_outsider_connections, apart from max_connections). Rule 7.
    outsiders: Literal["refuse", "allow"] = "refuse"
    max_outsider_connections: int = Field(50, ge=1)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    shutdown_grace: Seconds = 30
    # Inflow control, as Postfix's in_flow_delay: while more received
    # messages than in_flow_limit wait for the control plane, a new MAIL
    # pauses until it catches up, at most in_flow_delay (0 turns it off).
    in_flow_delay: Seconds = 1
    in_flow_limit: int = Field(100, ge=1)
    # Admission to the content phase: at most max_receiving transactions at
    # once read their content and wait for the durable commit; the next one
    # waits before its 354, at most in_flow_delay (0 turns it off). More in
    # flight add only waiting after the end of data, and memory.
    max_receiving: int = Field(64, ge=0)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one address is needed")
        return _check_listen(v)

    @field_validator("client_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not a network (e.g. 10.0.0.0/8)") from None
            if ipaddress.ip_network(net, strict=False).prefixlen == 0:
                raise ValueError(f"{net!r} would make mxg an open relay")
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self


def _check_listen(v: list[str]) -> list[str]:
    """Each address is ``ip:port``, IPv6 in brackets."""
    for addr in v:
        host, sep, port = addr.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{addr!r} is not ip:port")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise ValueError(f"{addr!r}: IPv6 addresses need brackets, e.g. [::1]:25")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError(f"{addr!r}: {host!r} is not an IP address") from None
    return v


class HttpListenerConfig(Section):
    """An HTTP listener of the relay: off while ``listen`` is empty; HTTPS
    with the operator's certificate chain and key when both are given."""

    listen: list[str] = []
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: list[str]) -> list[str]:
        return _check_listen(v)

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpListenerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self


# The roles of the admin API and the operator pages: `read` sees the
# queue, messages, evidence and partners; `admin` also changes them.
WebRole = Literal["read", "admin"]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class WebToken(Section):
    """A bearer token of the admin API and the operator pages, kept only
    as the SHA-256 of the token (``mxg web token NAME`` makes one). The
    name is who acts in the audit trail."""

    name: str
    role: WebRole
    sha256: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _TOKEN_NAME.match(v):
            raise ValueError(f"{v!r}: letters, digits and . _ @ - only, at most 64")
        return v

    @field_validator("sha256")
    @classmethod
    def _hash(cls, v: str) -> str:
        v = v.lower()
        if not _HEX64.match(v):
            raise ValueError("the SHA-256 of the token: 64 hexadecimal digits")
        return v


class WebCertificate(Section):
    """A client certificate (verified against ``web.client_ca``) and its
    role, named by its subject as RFC 4514 writes it
    (``CN=ops-alice,O=Example``) or by the SHA-256 of the certificate."""

    subject: str = ""
    sha256: str = ""
    role: WebRole

    @field_validator("sha256")
    @classmethod
    def _hash(cls, v: str) -> str:
        v = v.lower().replace(":", "")
        if v and not _HEX64.match(v):
            raise ValueError("the certificate's SHA-256: 64 hexadecimal digits")
        return v

    @model_validator(mode="after")
    def _one(self) -> WebCertificate:
        if bool(self.subject) == bool(self.sha256):
            raise ValueError("name the certificate by subject or by sha256 (one of them)")
        return self


class WebConfig(HttpListenerConfig):
    """The web surface for operators (``/health``, ``/ready``, the admin
    API and the operator pages), off by default."""

    # Reverse proxies in front of mxg whose X-Forwarded-For and
    # X-Forwarded-Proto are believed (0: none, the peer is the client).
    proxy_hops: int = Field(0, ge=0, le=5)
    # The path prefix under which a reverse proxy publishes the surface
    # ("/mxg"); empty when it is served at the root.
    root_path: str = ""
    # The address senders reach the surface at, as links in notices carry
    # it ("https://mail-gw.example.org", with the proxy's prefix if any);
    # never taken from a request's Host or X-Forwarded-* headers.
    public_url: str = ""
    # Who may use the admin API and the operator pages (docs/admin-api.md).
    token: list[WebToken] = []
    certificate: list[WebCertificate] = []
    # The CA whose client certificates the listener asks for and verifies.
    client_ca: Path | None = None
    # How long a login to the operator pages lasts.
    session_lifetime: PositiveSeconds = 8 * 3600

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        if not v:
            return v
        u = urlsplit(v)
        if u.scheme not in ("https", "http") or not u.hostname or u.query or u.fragment:
            raise ValueError(f"{v!r} is not an http(s) URL such as https://mail-gw.example.org")
        return v.rstrip("/")

    @field_validator("root_path")
    @classmethod
    def _root_path(cls, v: str) -> str:
        if v and (not v.startswith("/") or v.endswith("/") or "//" in v):
            raise ValueError(f"{v!r} is not a path prefix such as /mxg")
        return v

    @field_validator("token")
    @classmethod
    def _unique_tokens(cls, v: list[WebToken]) -> list[WebToken]:
        for what in ("name", "sha256"):
            seen = [getattr(t, what) for t in v]
            if len(set(seen)) != len(seen):
                raise ValueError(f"two tokens have the same {what}")
        return v

    @model_validator(mode="after")
    def _client_ca(self) -> WebConfig:
        if self.certificate and self.client_ca is None:
            raise ValueError("certificate entries need client_ca, the CA that issued them")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("client_ca needs HTTPS: give tls_cert and tls_key")
        return self


class DecisionsConfig(Section):
    """Sender decisions (``on_unmet = "ask-sender"``): the links of the
    notices, the decision page's limits and the notice's templates
    (docs/sender-decisions.md)."""

    # How long a notice's link works; never beyond the message's lifetime.
    token_lifetime: PositiveSeconds = 7 * 86400
    # A directory of templates that replace the shipped ones of the same
    # name (notice.txt, page.html, result.html); empty: the shipped ones.
    templates: Path | None = None
    # Requests per client address and minute to /decide/; past it, 429.
    rate_limit: int = Field(30, ge=1, le=10_000)
    # The largest request body the decision page reads (a form of a few
    # fields and a typed password); larger ones get 413.
    max_body: int = Field(16 * 1024, ge=1024, le=1024 * 1024)


class MetricsConfig(HttpListenerConfig):
    """The Prometheus endpoint with ``/health`` and ``/ready``, without
    authentication: for a monitoring network only. Off by default."""


class LimitsConfig(Section):
    """Inbound limits; defaults follow RFC 5321 §4.5.3."""

    max_command_line: int = Field(2048, ge=512)
    max_data_line: int = Field(1000, ge=1000)
    max_message_size: int = Field(50 * 1024 * 1024, ge=1024)
    # Message octets all sessions together may hold in memory while they
    # receive (ARCHITECTURE.md rule 12b); past it a message gets 452 4.3.1.
    max_message_memory: int = Field(512 * 1024 * 1024, ge=1024 * 1024)
    max_recipients: int = Field(1000, ge=100)
    max_errors: int = Field(20, ge=1)
    command_timeout: PositiveSeconds = 300
    data_timeout: PositiveSeconds = 300


class DataConfig(Section):
    """Where the spool and the queue/audit database live."""

    directory: Path = Path("mxg-data")
    # The store: "" is the embedded SQLite file in `directory` (the
    # default); a postgresql:// URL puts it on a PostgreSQL server
    # (docs/cluster.md). The spool stays in `directory` either way.
    store: str = ""
    # On a PostgreSQL store a message's 250 waits until it is committed
    # there with its spool file (docs/cluster.md); past this the client
    # gets 451 4.3.0 and sends it again later.
    store_ack_timeout: PositiveSeconds = 30

    @field_validator("store")
    @classmethod
    def _store_url(cls, v: str) -> str:
        if v and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be empty (the embedded SQLite store) or a postgresql:// URL")
        return v


def _default_node() -> str:
    # The short host name: what an operator sees in `mxg cluster status`.
    return socket.gethostname().split(".")[0] or "localhost"


# A node's name: in logs, `mxg cluster status` and the store's owner
# column; short and plain, so it needs no quoting anywhere.
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ClusterConfig(Section):
    """This node of a cluster on a PostgreSQL store (docs/cluster.md);
    without a PostgreSQL store it is not used."""

    # Unique per store: a second relay with the same name stops at start.
    node: str = Field(default_factory=_default_node)
    # How often the node renews its lease, and how long a lease lasts:
    # a node silent for `lease` is dead and others take over its messages.
    heartbeat: PositiveSeconds = 2
    lease: PositiveSeconds = 15
    # `mxg cluster drain`: how long in-flight deliveries may take to
    # finish before the node releases what is left and stops.
    drain_timeout: PositiveSeconds = 300

    @field_validator("node")
    @classmethod
    def _node(cls, v: str) -> str:
        if not _NODE_NAME.match(v):
            raise ValueError(
                f"{v!r} is not a node name (letters, digits, '.', '_', '-';"
                " at most 63, starting with a letter or digit)"
            )
        return v

    @model_validator(mode="after")
    def _lease_outlasts_heartbeats(self) -> ClusterConfig:
        # Fencing starts after half a lease without renewal: at least one
        # renewal must be able to fail before that, and one more before
        # another node takes over.
        if self.lease < 3 * self.heartbeat:
            raise ValueError(
                f"lease ({self.lease:g}s) must be at least three heartbeats"
                f" ({3 * self.heartbeat:g}s)"
            )
        return self


class DnsConfig(Section):
    """The resolver: the system's unless nameservers are given."""

    nameservers: list[str] = []
    port: int = Field(53, ge=1, le=65535)
    timeout: PositiveSeconds = 10
    cache_size: int = Field(100_000, ge=0)
    # ARCHITECTURE.md rule 3: the AD bit counts only from a resolver the
    # operator declares validating and trusted (normally on this host).
    trust_ad: bool = False
    # A name known to be DNSSEC-signed; its SOA must come back with AD.
    dnssec_probe: str = "."

    @field_validator("nameservers")
    @classmethod
    def _ips(cls, v: list[str]) -> list[str]:
        for ns in v:
            try:
                ipaddress.ip_address(ns)
            except ValueError:
                raise ValueError(f"{ns!r} is not an IP address") from None
        return v


class DeliveryConfig(Section):
    """The outbound client; timeouts per RFC 5321 §4.5.3.2."""

    port: int = Field(25, ge=1, le=65535)
    helo_name: str = ""
    # Deprecated: the level of class normal ([classes.normal] level).
    default_level: TransportLevel | None = None
    tls_profile: Literal["bsi-tr-02102-2", "modern"] = "bsi-tr-02102-2"
    # Authentication methods that count for the qualified level.
    qualified_methods: list[Method] = [
        Method.DANE_EE,
        Method.DANE_TA,
        Method.MTA_STS,
        Method.DNSSEC_PKIX,
    ]
    # Look up and apply MTA-STS policies (RFC 8461).
    mta_sts: bool = True
    # Extra PKIX trust anchors (PEM) next to the system's roots, e.g. a
    # private CA of partner organisations.
    ca_file: Path | None = None
    address_preference: Literal["ipv4", "ipv6"] = "ipv4"
    max_addresses: int = Field(10, ge=1)
    connect_timeout: PositiveSeconds = 30
    greeting_timeout: PositiveSeconds = 300
    command_timeout: PositiveSeconds = 300
    data_init_timeout: PositiveSeconds = 120
    data_block_timeout: PositiveSeconds = 180
    data_done_timeout: PositiveSeconds = 600
    max_per_destination: int = Field(20, ge=1)
    max_messages_per_connection: int = Field(100, ge=1)
    idle_timeout: Seconds = 5
    max_jobs: int = Field(2000, ge=1)
    # The partner ledger's ratchet (store/partners.py): a delivery below a
    # partner's remembered authenticated method is logged ("warn"), or
    # refused as unmet until `mxg partners accept` ("enforce").
    ratchet: Literal["off", "warn", "enforce"] = "off"
    # Add "X-MXG-Protection: <level>; method=...; tls=..." on the way out,
    # stating what each delivery's session achieved; any such field the
    # message already carries is removed first (docs/configuration.md).
    protection_header: bool = False


class QueueConfig(Section):
    """Retries and lifetimes (RFC 5321 §4.5.4.1: retry after at least 30
    minutes, give up after 4-5 days; mxg tries sooner first)."""

    retry_schedule: list[PositiveSeconds] = [60, 300, 900, 1800, 3600, 7200, 14400]
    max_lifetime: PositiveSeconds = 5 * 86400
    delay_warning_after: Seconds = 4 * 3600
    scan_interval: PositiveSeconds = 1

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("needs at least one interval")
        return v


class RetentionConfig(Section):
    """How long finished messages' metadata, evidence and audit records
    are kept (GDPR Art. 5(1)(e): no longer than needed). 0 keeps them."""

    keep: Seconds = 90 * 86400
    prune_interval: PositiveSeconds = 3600


class DsnConfig(Section):
    """Delivery status notifications (RFC 3464)."""

    postmaster: str = ""
    return_full_message_limit: int = Field(1024 * 1024, ge=0)

    @field_validator("postmaster")
    @classmethod
    def _addr(cls, v: str) -> str:
        if v and ("@" not in v or v.startswith("@") or v.endswith("@")):
            raise ValueError(f"{v!r} is not a mail address")
        return v


class EnvelopeConfig(Section):
    """The secure envelope (docs/secure-envelope.md): a message sealed
    with a password into an HTML page, sent in a carrier mail."""

    # A directory whose page.html, carrier.txt, carrier-subject.txt,
    # envelope.css, mime.js, envelope.js replace the shipped ones, file by file.
    templates: Path | None = None
    # PBKDF2-HMAC-SHA256 iterations; 600,000 is OWASP's floor for it.
    iterations: int = Field(600_000, ge=600_000, le=10_000_000)


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    file: Path | None = None


class DomainPolicy(Section):
    """Per-domain transport policy (like Postfix's smtp_tls_policy_maps)."""

    domain: str
    # Raises the level messages to this domain need (never lowers it).
    min_level: TransportLevel = Level.NONE
    # Methods that count for qualified here; empty: delivery.qualified_methods.
    methods: list[Method] = []
    # Operator pins: "spki-sha256:<hex>" (the server key) or
    # "cert-sha256:<hex>" (the certificate); they authenticate by method
    # "pinned" and, once given, must match.
    pins: list[str] = []
    # Only these MX hosts (exact names or "*.example.org" for one label).
    mx: list[str] = []
    # A private CA pin: the server's chain must lead to a certificate of
    # this PEM file (it need not send it) and its certificate must be valid
    # for one of cert_names (default: the MX host name); method "pinned".
    ca_file: Path | None = None
    cert_names: list[str] = []
    # The CA certificates of ca_file, DER as hex, read once at load.
    _ca_der: list[str] = PrivateAttr(default_factory=list)

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        v = v.strip().rstrip(".").lower()
        if not v or "@" in v or " " in v:
            raise ValueError(f"{v!r} is not a domain")
        return v

    @field_validator("pins")
    @classmethod
    def _pins(cls, v: list[str]) -> list[str]:
        for pin in v:
            if not PIN.match(pin.lower()):
                raise ValueError(f"{pin!r} is not spki-sha256:<64 hex> or cert-sha256:<64 hex>")
        return [p.lower() for p in v]

    @model_validator(mode="after")
    def _pinned_needs_pins(self) -> DomainPolicy:
        if "pinned" in self.methods and not self.pins and self.ca_file is None:
            raise ValueError("method 'pinned' needs pins or ca_file")
        if self.cert_names and self.ca_file is None:
            raise ValueError("cert_names needs ca_file")
        if self.ca_file is not None:
            self._ca_der = _read_ca_file(self.ca_file)
        return self

    @property
    def ca_certificates(self) -> list[str]:
        """The pinned CA certificates (DER, hex)."""
        return self._ca_der


def _read_ca_file(path: Path) -> list[str]:
    """The certificates of a PEM file as DER hex; a clear error when the
    file is unreadable or holds none."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read CA file {path}: {e}") from None
    blocks = re.findall(
        r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, flags=re.DOTALL
    )
    if not blocks:
        raise ValueError(f"{path} holds no PEM certificate")
    try:
        return [ssl.PEM_cert_to_DER_cert(b).hex() for b in blocks]
    except ValueError as e:
        raise ValueError(f"{path}: bad PEM certificate: {e}") from None


class RunConfig(Section):
    backend: Literal["asyncio", "trio"] = "asyncio"
    user: str = ""
