"""The log line format: the direct path `event` takes (no LogRecord) writes
exactly what the logging module's path writes, and falls back to it when
an operator's filter or another handler is in play."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxg import deliverylog
from mxg.deliverylog import delivery_log, event, flush_logs, log, setup_logging

# RFC 3339 in UTC with milliseconds.
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def logfile(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "mxg.log"
    yield path
    root = logging.getLogger("mxg")
    for h in root.handlers:
        h.close()
    root.handlers[:] = []
    root.filters[:] = []
    deliverylog._direct.handler = None


def lines(path: Path) -> list[str]:
    flush_logs()
    return path.read_text(encoding="utf-8").splitlines()


def test_text_lines_quote_values_with_spaces_and_skip_empty_fields(logfile: Path) -> None:
    setup_logging("info", "text", logfile)
    assert deliverylog._direct.handler is not None
    event(delivery_log, "sent", queue_id="Q1", to="<a@b.test>", reply="250 2.0.0 Ok", dsn=None)
    event(log, "received", logging.INFO, size=12, why="")
    got = lines(logfile)
    assert re.fullmatch(
        STAMP + r' info mxg\.delivery: sent queue_id=Q1 to=<a@b\.test> reply="250 2\.0\.0 Ok"',
        got[0],
    )
    assert re.fullmatch(STAMP + r' info mxg: received size=12 why=""', got[1])


@pytest.mark.parametrize(
    "value",
    [
        'say "hi"',
        "a=b",
        "tab\there",
        "ctl \x01\x1f\x7f \u2028 é 😀 \\ \r\n\b\f",
        "lone \udcff surrogate",  # as surrogateescape leaves undecodable octets
    ],
)
def test_quoted_values_are_json_strings(logfile: Path, value: str) -> None:
    # Shippers parse a quoted value as a JSON string; a reply text may hold
    # anything a remote server sent.
    setup_logging("info", "text", logfile)
    event(log, "x", reply=value)
    flush_logs()
    line = logfile.read_text(encoding="utf-8").split("\n")[0]
    quoted = line.split(" reply=", 1)[1]
    assert json.loads(quoted) == value
    if "surrogate" not in value:
        assert quoted == json.dumps(value, ensure_ascii=False)


def test_the_direct_path_writes_what_the_logging_module_writes(logfile: Path) -> None:
    setup_logging("info", "text", logfile)
    fields = {"queue_id": "Q2", "from": "<s@x.test>", "text": 'say "hi"', "code": 451}
    event(log, "deferred", logging.WARNING, **fields)
    log.log(logging.WARNING, "deferred", extra={"mxg_fields": fields})
    direct, through_logging = lines(logfile)
    # The same line but for the time each was written (milliseconds apart).
    for line in (direct, through_logging):
        assert re.match(STAMP + " ", line), line
    assert direct.split(" ", 1)[1] == through_logging.split(" ", 1)[1]
    assert 'text="say \\"hi\\""' in direct


def test_the_direct_path_builds_no_log_record(
    logfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_logging("info", "text", logfile)

    def no_record(*_: object, **__: object) -> logging.LogRecord:
        raise AssertionError("a LogRecord was built")

    monkeypatch.setattr(logging.Logger, "makeRecord", no_record)
    event(log, "received", queue_id="Q6")
    event(delivery_log, "deferred", logging.WARNING, queue_id="Q6")
    assert len(lines(logfile)) == 2


def test_json_lines_carry_the_same_fields(logfile: Path) -> None:
    setup_logging("info", "json", logfile)
    event(delivery_log, "sent", queue_id="Q3", code=250, method="dane-ee")
    event(log, "below the level", logging.DEBUG, queue_id="Q4")
    (only,) = lines(logfile)
    line = json.loads(only)
    assert re.fullmatch(STAMP, line.pop("time"))
    assert line == {
        "level": "info",
        "logger": "mxg.delivery",
        "msg": "sent",
        "queue_id": "Q3",
        "code": 250,
        "method": "dane-ee",
    }


def test_warnings_reach_the_file_without_a_flush(logfile: Path) -> None:
    setup_logging("info", "text", logfile)
    event(log, "MTA-STS policy unavailable", logging.WARNING, domain="x.test")
    assert "MTA-STS policy unavailable domain=x.test" in logfile.read_text()


def test_a_filter_is_honoured_by_falling_back_to_the_logging_module(logfile: Path) -> None:
    setup_logging("info", "text", logfile)
    (handler,) = logging.getLogger("mxg").handlers
    handler.addFilter(lambda r: getattr(r, "mxg_fields", {}).get("queue_id") != "HIDE")
    event(delivery_log, "sent", queue_id="HIDE")
    event(delivery_log, "sent", queue_id="SHOW")
    (only,) = lines(logfile)
    assert only.endswith("sent queue_id=SHOW")


def test_a_second_handler_gets_every_line_too(logfile: Path) -> None:
    setup_logging("info", "text", logfile)
    extra = io.StringIO()
    second = logging.StreamHandler(extra)
    logging.getLogger("mxg").addHandler(second)
    event(delivery_log, "sent", queue_id="Q5")
    assert lines(logfile)[0].endswith("sent queue_id=Q5")
    assert extra.getvalue() == "sent\n"
