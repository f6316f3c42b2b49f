"""``mxg run``: starts the relay on the configured event loop, stops it
on SIGTERM or SIGINT, and turns a start-up refusal into one line for the
operator."""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from mxg.cli.common import _load
from mxg.errors import MxgError


def cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from mxg.deliverylog import setup_logging
    from mxg.pipeline import Relay

    # Rule 8: every file the relay creates (spool, store, WAL, log) is
    # readable by its user alone, whatever umask it was started with.
    os.umask(0o077)
    cfg = _load(args)
    backend = args.backend or cfg.run.backend
    setup_logging(cfg.log.level, cfg.log.format, cfg.log.file)
    relay = Relay(cfg)

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
                    async for _ in sigs:
                        relay.stop()
                        return

            tg.start_soon(signals)
            await relay.run()
            tg.cancel_scope.cancel()

    options: dict[str, Any] = {"use_uvloop": True} if backend == "asyncio" else {}
    try:
        anyio.run(main, backend=backend, backend_options=options)
    except BaseExceptionGroup as group:
        # A start-up refusal (lock held, unsafe directory, port taken) is
        # one line for the operator, not the task group's traceback.
        mxg_errors, _rest = group.split(MxgError)
        if mxg_errors is None:
            raise
        raise _leaves(mxg_errors)[0] from None
    return 0


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out += _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out
