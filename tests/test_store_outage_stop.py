"""A relay stopped (SIGTERM) while its PostgreSQL store is unreachable:
it stops within its usual bounds, says in one line that the store was
unreachable, runs the shutdown steps that need no store, and exits 0
(docs/operations.md, "Exit statuses"): every acknowledged message is in
the spool, and the next start settles it with the store."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.mxgproc import MxgProcess
from tests.support.pgproxy import cutting_proxy
from tests.support.postgres import Postgres

UNREACHABLE = "store unreachable at shutdown"


def _config(tmp_path: Path, url: str) -> str:
    return (
        '[server]\nhostname = "mx.example.test"\nlisten = ["@LISTEN@"]\n'
        f'[data]\ndirectory = "{tmp_path / "data"}"\nstore = "{url}"\n'
    )


def test_a_stop_while_the_store_is_unreachable_exits_0_with_one_line(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.migrated_database()
    with cutting_proxy(postgres.port) as proxy:
        node = MxgProcess(tmp_path, _config(tmp_path, proxy.url(url))).start()
        proxy.refuse()
        began = time.monotonic()
        code = node.stop()
        took = time.monotonic() - began
    log = node.log_text()
    assert code == 0, log
    assert "Traceback" not in log, log
    assert log.count(UNREACHABLE) == 1, log
    assert log.rstrip().splitlines()[-1].endswith("stopped"), "the local steps ran to the end"
    assert took < 30, f"stopped in {took:.1f} s"
    # The data directory is free again: a relay starts on it (with the
    # store back) and stops cleanly.
    node = MxgProcess(tmp_path, _config(tmp_path, url)).start()
    assert node.stop() == 0
