"""Engine.reload (SIGHUP in a running relay): new sessions get the new
inbound settings, a session open at the reload finishes under the ones it
started with, what outlives a generation (the connection table) is
carried over, and a configuration the engine cannot apply changes
nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mxg.errors import EngineConfigError
from tests.engine_fixtures import Running, engine_config
from tests.support.smtp import RawSmtp

Start = Callable[..., Running]


def _reload(r: Running, tmp_path: Path, **over: Any) -> list[str]:
    return r.engine.reload(json.dumps(engine_config(tmp_path, **over)))


def _ehlo_size(r: Running) -> int:
    c = RawSmtp(r.port)
    assert c.reply().startswith("220")
    ehlo = c.cmd("EHLO internal.test")
    c.cmd("QUIT")
    (size,) = [line[4:] for line in ehlo.splitlines() if line[4:].startswith("SIZE ")]
    return int(size.split()[1])


def test_new_sessions_get_the_new_settings_and_an_open_one_finishes(
    start_engine: Start, tmp_path: Path
) -> None:
    r = start_engine(limits={"max_message_size": 1_000_000})
    assert _ehlo_size(r) == 1_000_000
    old = RawSmtp(r.port)
    assert old.reply().startswith("220")
    assert old.cmd("EHLO internal.test").startswith("250")
    assert old.cmd("MAIL FROM:<a@internal.test>").startswith("250")

    # 127.0.0.1 is no longer a client network: new sessions are refused.
    assert _reload(r, tmp_path, client_networks=["10.0.0.0/8"]) == []
    new = RawSmtp(r.port)
    assert new.reply().startswith("554 5.7.1")
    # The session opened before finishes its transaction as it started.
    assert old.cmd("RCPT TO:<x@example.net>").startswith("250")
    assert old.cmd("DATA").startswith("354")
    assert old.cmd("Subject: before the reload\r\n\r\nx\r\n.").startswith("250")
    assert old.cmd("QUIT").startswith("221")
    assert len(r.wait_events("received")) == 1

    assert _reload(r, tmp_path, limits={"max_message_size": 2_000_000}) == []
    assert _ehlo_size(r) == 2_000_000


def test_the_connection_table_is_carried_over(start_engine: Start, tmp_path: Path) -> None:
    """A session open at the reload still holds its slot: with
    max_connections 1 after the reload, a second one is refused."""
    r = start_engine()
    held = RawSmtp(r.port)
    assert held.reply().startswith("220")
    _reload(r, tmp_path, max_connections=1)
    second = RawSmtp(r.port)
    assert second.reply().startswith("421 4.7.0")
    held.cmd("QUIT")
    assert held.closed()
    # Its slot goes back just after the close: the next one gets it.
    deadline = time.monotonic() + 5
    while not (reply := RawSmtp(r.port).reply()).startswith("220"):
        assert time.monotonic() < deadline, reply
        time.sleep(0.05)


def test_a_configuration_the_engine_cannot_apply_changes_nothing(
    start_engine: Start, tmp_path: Path
) -> None:
    r = start_engine(limits={"max_message_size": 1_000_000})
    with pytest.raises(EngineConfigError, match=r"gone\.pem"):
        _reload(
            r,
            tmp_path,
            tls_cert=str(tmp_path / "gone.pem"),
            limits={"max_message_size": 2_000_000},
        )
    with pytest.raises(EngineConfigError, match="unknown field"):
        _reload(r, tmp_path, no_such_key=1)
    assert _ehlo_size(r) == 1_000_000
