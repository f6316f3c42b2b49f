"""Reloading a running relay (SIGHUP) and reopening its log (SIGUSR1).

A reload reads the configuration file again and checks all of it, as a
start does; the engine then builds its new settings (which may still fail,
for instance on a certificate that does not load). Only when both succeed
does the relay switch: a bad configuration is refused whole, with one log
line saying why, and the running one stays. Sessions, transactions and
deliveries in progress are never interrupted: they finish under the
settings they started with (`rust/mxg-relay/src/inbound/reload.rs`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mxg.config import Config, LogConfig, load_config
from mxg.config.reload import keep_started, restart_keys
from mxg.deliverylog import event, log, setup_logging
from mxg.errors import ConfigError, MxgError
from mxg.pipeline.engine import Engine


def apply_reload(
    running: Config, path: Path | None, engine: Engine
) -> tuple[Config, list[str]] | None:
    """The configuration now in force and notes for the log, or None when
    the new one was refused (logged) and `running` stays."""
    where = str(path) if path else "(embedded defaults)"
    try:
        new = load_config(path)
    except ConfigError as e:
        _refused(where, "; ".join(e.problems))
        return None
    applied = keep_started(new, running)
    if applied.log.file is not None and applied.log.file != running.log.file:
        # Checked before anything changes, so a log file that cannot be
        # opened refuses the reload instead of applying half of it.
        try:
            with open(applied.log.file, "a", encoding="utf-8"):
                pass
        except OSError as e:
            _refused(where, f"log.file: cannot open {applied.log.file}: {e.strerror or e}")
            return None
    try:
        notes = engine.reload(json.dumps(applied.engine_json()))
    except MxgError as e:
        _refused(where, str(e))
        return None
    restart = restart_keys(running, new)
    if restart:
        notes.append(f"needs a restart: {', '.join(restart)}")
    return applied, notes


def _refused(where: str, reason: str) -> None:
    event(
        log,
        "reload refused, the running configuration stays",
        logging.ERROR,
        config=where,
        reason=reason,
    )


def log_reloaded(path: Path | None, notes: list[str]) -> None:
    event(log, "configuration reloaded", config=str(path) if path else "(embedded defaults)")
    for note in notes:
        event(log, note, logging.WARNING)


def reopen_logs(cfg: LogConfig) -> None:
    """Opens the log file anew (or standard error) with `cfg`'s level and
    format; when that fails the old destination stays and says why."""
    try:
        setup_logging(cfg.level, cfg.format, cfg.file)
    except OSError as e:
        event(
            log,
            "cannot reopen the log file: logging goes on to the old one",
            logging.ERROR,
            file=str(cfg.file),
            reason=e.strerror or str(e),
        )
