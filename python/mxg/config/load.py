"""Loading the configuration: the TOML file, relative paths made relative
to it, ``MXG_<SECTION>__<KEY>`` overrides from the environment, and every
problem reported at once as ``FILE: key.path: reason`` (ARCHITECTURE.md
rule 12)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mxg.config.model import Config
from mxg.config.tlsrpt import mail_identity_problem
from mxg.errors import ConfigError

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
        ("web", "tls_cert"),
        ("web", "tls_key"),
        ("metrics", "tls_cert"),
        ("metrics", "tls_key"),
        ("log", "file"),
        ("envelope", "templates"),
        ("decisions", "templates"),
        ("tlsrpt", "dkim_key"),
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
    if problem := mail_identity_problem(config):
        problems.append(f"{where}: {problem}")
    if problems:
        raise ConfigError(problems)
    return config
