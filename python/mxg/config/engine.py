"""The configuration the Rust data plane gets (``engine_json``): what the
engine needs of `Config`, in its own shape (``rust/mxg-relay/src/config.rs``),
every duration in whole milliseconds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mxg.config.model import Config


def engine_json(cfg: Config) -> dict[str, Any]:
    """The engine configuration handed to the Rust data plane."""
    s, lim, d = cfg.server, cfg.limits, cfg.delivery
    return {
        "hostname": s.hostname,
        "listen": s.listen,
        "spool_dir": str(cfg.spool_dir),
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
        "scan": cfg.scan_options(),
        "rcpt_checks": bool(cfg.rcpt_check_classes()),
        "verdict_deadline_ms": (
            _ms(cfg.classify.verdict_deadline) if cfg.refusing_classes() else 0
        ),
        "verdict_screen": cfg.verdict_screen(),
        # On PostgreSQL the 250 waits for the store (docs/cluster.md).
        "store_ack_ms": _ms(cfg.data.store_ack_timeout) if cfg.data.store else None,
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
