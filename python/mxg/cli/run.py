"""``mxg run``: starts the relay on the configured event loop, stops it
on SIGTERM or SIGINT, reloads its configuration on SIGHUP, reopens its
log on SIGUSR1 (and SIGHUP), and turns a start-up refusal into one line
for the operator."""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from mxg.cli.common import _config_path, _load

# SIGTERM and SIGINT stop; SIGHUP reloads; SIGUSR1 reopens the log.
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from mxg.deliverylog import setup_logging
    from mxg.pipeline import Relay

    # Rule 8: every file the relay creates (spool, store, WAL, log) is
    # readable by its user alone, whatever umask it was started with.
    os.umask(0o077)
    # Until the relay's own handlers are in place, a SIGHUP (a reload sent
    # too early) or SIGUSR1 must not end the process, which is their
    # default action.
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    cfg = _load(args)
    backend = args.backend or cfg.run.backend
    setup_logging(cfg.log.level, cfg.log.format, cfg.log.file)
    path = _config_path(args)
    relay = Relay(cfg, config_path=path.resolve() if path else None)

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def signals() -> None:
                with anyio.open_signal_receiver(*HANDLED) as sigs:
                    async for sig in sigs:
                        if sig == signal.SIGHUP:
                            relay.reload()
                        elif sig == signal.SIGUSR1:
                            relay.reopen_logs()
                        else:
                            # The receiver stays open through the shutdown
                            # grace, so that a late SIGHUP cannot end the
                            # process by its default action.
                            relay.stop()

            tg.start_soon(signals)
            await relay.run()
            tg.cancel_scope.cancel()

    options: dict[str, Any] = {"use_uvloop": True} if backend == "asyncio" else {}
    # A start-up refusal (lock held, unsafe directory, port taken) leaves
    # the task group as an exception group; `main` turns its first error
    # into one line for the operator (`mxg.cli.exits`).
    anyio.run(main, backend=backend, backend_options=options)
    return 0
