"""Operator configuration: one TOML file loaded into pydantic models.

Every problem is reported at once, each as ``FILE: key.path: reason``, and
mxg does not start half-configured (ARCHITECTURE.md rule 12). Values may be
overridden from the environment as ``MXG_<SECTION>__<KEY>=<TOML value>``,
e.g. ``MXG_SERVER__LISTEN='["0.0.0.0:25"]'`` or ``MXG_RUN__BACKEND=trio``.
Durations are seconds or a number with a unit: ``90s``, ``5m``, ``4h``, ``5d``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mxg.classes import CLASSES, ClassesConfig, ClassifyConfig, ClassPolicy, Rule
from mxg.config_base import (
    PIN,
    Method,
    PositiveSeconds,
    Seconds,
    Section,
    TransportLevel,
)
from mxg.errors import ConfigError
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


def _check_scan_options(options: dict[str, Any]) -> None:
    """Compiles the scanner's options the way the data plane will (its
    regex syntax is Rust's), so a bad pattern or word list stops the start."""
    if not options["patterns"] and not options["keywords"]:
        return
    from mxg import _core  # noqa: PLC0415  (the extension is only needed here)

    _core.scan(b"", json.dumps(options))


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


class Config(Section):
    server: ServerConfig = ServerConfig()
    limits: LimitsConfig = LimitsConfig()
    data: DataConfig = DataConfig()
    dns: DnsConfig = DnsConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    queue: QueueConfig = QueueConfig()
    dsn: DsnConfig = DsnConfig()
    log: LogConfig = LogConfig()
    run: RunConfig = RunConfig()
    policy: list[DomainPolicy] = []
    classify: ClassifyConfig = ClassifyConfig()
    classes: ClassesConfig = ClassesConfig()
    # Named sender groups for rules ("group:NAME"): address/domain patterns.
    groups: dict[str, list[str]] = {}
    rule: list[Rule] = []

    @model_validator(mode="after")
    def _rules(self) -> Config:
        names: set[str] = set()
        for r in self.rule:
            if r.name in names:
                raise ValueError(f"rule name {r.name!r} is used twice")
            names.add(r.name)
            for p in r.sender + r.recipient:
                if p.startswith("group:") and p[6:] not in self.groups:
                    raise ValueError(f"rule {r.name!r}: no group {p[6:]!r} in [groups]")
        _check_scan_options(self.scan_options())
        return self

    def class_policy(self, name: str) -> ClassPolicy:
        """The class's requirement; `delivery.default_level`, when set,
        still gives the level of class normal (older configurations)."""
        policy = self.classes.of(name)
        legacy = self.delivery.default_level
        if (
            name == "normal"
            and legacy is not None
            and "normal" not in self.classes.model_fields_set
        ):
            return policy.model_copy(update={"level": legacy})
        return policy

    def rcpt_check_classes(self) -> set[str]:
        """Classes that rules on the envelope alone (or the default) can
        give and that refuse (`reject`) with a requirement content cannot
        relax: for those, recipients are checked at RCPT."""
        candidates: set[str] = {self.classify.default_class} | {
            r.risk_class for r in self.rule if r.envelope_only
        }
        out: set[str] = set()
        for name in candidates:
            policy = self.class_policy(name)
            relaxes = bool(policy.e2e_level) or (
                name == "normal" and self.classify.honour_tls_required_no
            )
            if policy.on_unmet == "reject" and not relaxes:
                out.add(name)
        return out

    def scan_options(self) -> dict[str, Any]:
        """What the content scanner in the data plane looks for."""
        c = self.classify
        headers = {c.marker_header, "TLS-Required"} | {
            r.header.name for r in self.rule if r.header is not None
        }
        return {
            "max_scan_bytes": c.max_scan_bytes,
            "max_depth": c.max_depth,
            "max_parts": c.max_parts,
            "headers": sorted(headers, key=str.lower),
            "keywords": [{"name": r.name, "words": r.keywords} for r in self.rule if r.keywords],
            "patterns": [{"name": r.name, "regexes": r.patterns} for r in self.rule if r.patterns],
        }

    @field_validator("policy")
    @classmethod
    def _unique_domains(cls, v: list[DomainPolicy]) -> list[DomainPolicy]:
        seen: set[str] = set()
        for p in v:
            if p.domain in seen:
                raise ValueError(f"domain {p.domain!r} has more than one [[policy]]")
            seen.add(p.domain)
        return v

    def policy_for(self, domain: str) -> DomainPolicy | None:
        return next((p for p in self.policy if p.domain == domain), None)

    @property
    def spool_dir(self) -> Path:
        return self.data.directory / "spool"

    @property
    def db_path(self) -> Path:
        return self.data.directory / "queue.db"

    @property
    def postmaster(self) -> str:
        return self.dsn.postmaster or f"postmaster@{self.server.hostname}"

    def refusing_classes(self) -> list[str]:
        """Classes whose on_unmet refuses the message at the end of DATA."""
        return [c for c in CLASSES if self.classes.of(c).on_unmet == "reject"]

    def verdict_screen(self) -> dict[str, Any] | None:
        """Which messages the data plane must ask about at the end of DATA.
        A message's class is the highest of the default class, its marker
        header and the rules that fire; when neither the default nor any
        rule yields a refusing class, only a marker naming one can, and the
        data plane accepts every other message without asking. None: every
        message is asked about."""
        refusing = self.refusing_classes()
        if self.classify.default_class in refusing or any(
            r.risk_class in refusing for r in self.rule
        ):
            return None
        return {"header": self.classify.marker_header, "classes": refusing}

    def engine_json(self) -> dict[str, Any]:
        """The engine configuration handed to the Rust data plane."""
        s, lim, d = self.server, self.limits, self.delivery
        return {
            "hostname": s.hostname,
            "listen": s.listen,
            "spool_dir": str(self.spool_dir),
            "client_networks": s.client_networks,
            "max_connections": s.max_connections,
            "max_connections_per_client": s.max_connections_per_client,
            "outsiders": s.outsiders,
            "max_outsider_connections": s.max_outsider_connections,
            "max_message_memory": lim.max_message_memory,
            "tls_cert": str(s.tls_cert) if s.tls_cert else None,
            "tls_key": str(s.tls_key) if s.tls_key else None,
            "shutdown_grace_ms": _ms(s.shutdown_grace),
            "in_flow_delay_ms": _ms(s.in_flow_delay),
            "in_flow_limit": s.in_flow_limit,
            "max_receiving": s.max_receiving,
            # Sessions wait for a verdict only when some class may reject.
            "scan": self.scan_options(),
            "rcpt_checks": bool(self.rcpt_check_classes()),
            "verdict_deadline_ms": (
                _ms(self.classify.verdict_deadline) if self.refusing_classes() else 0
            ),
            "verdict_screen": self.verdict_screen(),
            "limits": {
                "max_command_line": lim.max_command_line,
                "max_data_line": lim.max_data_line,
                "max_message_size": lim.max_message_size,
                "max_recipients": lim.max_recipients,
                "max_errors": lim.max_errors,
                "command_timeout_ms": _ms(lim.command_timeout),
                "data_timeout_ms": _ms(lim.data_timeout),
            },
            "outbound": {
                "helo_name": d.helo_name,
                "port": d.port,
                "connect_timeout_ms": _ms(d.connect_timeout),
                "greeting_timeout_ms": _ms(d.greeting_timeout),
                "command_timeout_ms": _ms(d.command_timeout),
                "data_init_timeout_ms": _ms(d.data_init_timeout),
                "data_block_timeout_ms": _ms(d.data_block_timeout),
                "data_done_timeout_ms": _ms(d.data_done_timeout),
                "max_per_destination": d.max_per_destination,
                "max_messages_per_connection": d.max_messages_per_connection,
                "idle_timeout_ms": _ms(d.idle_timeout),
                "ca_file": str(d.ca_file) if d.ca_file else None,
            },
        }


def _ms(seconds: float) -> int:
    """A duration for the engine: every duration crosses the boundary in
    whole milliseconds, rounded, so that "0.5s" arrives as 500 (through
    ``int(seconds)`` it arrived as 0, which turned timeouts and connection
    reuse off)."""
    return round(seconds * 1000)


ENV_PREFIX = "MXG_"


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    data: dict[str, Any] = {}
    problems: list[str] = []
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word is taken as a string
        if not section or not key:
            problems.append(f"environment {name}: expected MXG_<SECTION>__<KEY>")
            continue
        data.setdefault(section, {})[key] = value
    return data, problems


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Relative paths in a config file are relative to that file."""
    for section, key in (
        ("data", "directory"),
        ("server", "tls_cert"),
        ("server", "tls_key"),
        ("log", "file"),
    ):
        _resolve_path(data.get(section), key, base)
    delivery = data.get("delivery")
    _resolve_path(delivery, "ca_file", base)
    for policy in data.get("policy") or []:
        _resolve_path(policy, "ca_file", base)


def _resolve_path(table: object, key: str, base: Path) -> None:
    if isinstance(table, dict) and isinstance(table.get(key), str) and table[key]:
        p = Path(table[key])
        if not p.is_absolute():
            table[key] = str(base / p)


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Loads and validates; raises ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    where = str(path) if path else "(embedded defaults)"
    data: dict[str, Any] = {}
    problems: list[str] = []
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError([f"{where}: cannot read: {e.strerror or e}"]) from None
        except UnicodeDecodeError as e:
            raise ConfigError([f"{where}: not UTF-8 text: {e}"]) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([f"{where}: TOML syntax: {e}"]) from None
        _resolve_paths(data, path.parent.resolve())
    env, env_problems = _env_overrides(environ)
    problems += env_problems
    merged = _merge(data, env)
    try:
        config = Config.model_validate(merged)
    except ValidationError as e:
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            source = where
            if len(err["loc"]) >= 2 and str(err["loc"][1]) in env.get(str(err["loc"][0]), {}):
                source = (
                    f"environment {ENV_PREFIX}{str(err['loc'][0]).upper()}__"
                    f"{str(err['loc'][1]).upper()}"
                )
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append(f"{source}: {key}: {msg}")
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config
