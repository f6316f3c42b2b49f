"""Exit statuses of the ``mxg`` command, and the one line each error gets
on standard error instead of a traceback (docs/operations.md, "Exit
statuses"). The numbers above 2 are those of sysexits.h, which service
managers and Postfix-minded operators know: systemd may be told not to
restart on 78 (``RestartPreventExitStatus=``), since a configuration
error stays until someone fixes it, while 75 is worth a retry.

``mxg check`` adds two statuses no error uses: 3 (a domain only below
the required level) and 4 (a domain unresolvable); see `mxg.check`.
"""

from __future__ import annotations

import logging
import os
import sys

from mxg.errors import ConfigError, InstanceBusy, MxgError, UsageError

OK = 0
# The command could not do what was asked (start-up refused: data
# directory unsafe, address in use, store unusable; no such message).
ERROR = 1
# The command line was wrong (argparse prints the usage; a UsageError,
# what argparse cannot see, is one line).
USAGE = 2
# A bug in mxg: one line here, the traceback in the log (or with MXG_DEBUG=1).
SOFTWARE = 70
# Another mxg holds the data directory (rule 11a): try again later.
TEMPFAIL = 75
# The configuration is invalid, or names what this host lacks.
CONFIG = 78
# Interrupted (SIGINT) in a command other than `mxg run`.
INTERRUPTED = 130


def exit_status(e: BaseException) -> int:
    """Writes `e` as one line per problem and returns its exit status;
    re-raises what is not an error (SystemExit) and, with MXG_DEBUG set,
    an unexpected exception with its traceback."""
    if isinstance(e, BaseExceptionGroup):
        # A task group's failure (a start-up refusal): its first error of
        # mxg's own is the cause, the rest follows from it.
        leaves = _leaves(e)
        e = next((x for x in leaves if isinstance(x, MxgError)), leaves[0])
    match e:
        case KeyboardInterrupt():
            return INTERRUPTED
        case ConfigError():
            lines, status = e.problems, CONFIG
        case UsageError():
            lines, status = [str(e)], USAGE
        case InstanceBusy():
            lines, status = [str(e)], TEMPFAIL
        case MxgError():
            lines, status = [str(e)], ERROR
        case OSError():
            where = f"{e.filename}: " if e.filename else ""
            lines, status = [f"{where}{e.strerror or e}"], ERROR
        case Exception() if not os.environ.get("MXG_DEBUG"):
            return _internal(e)
        case _:
            raise e
    for line in lines:
        _say(line)
    return status


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out += _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out


def _internal(e: Exception) -> int:
    root = logging.getLogger("mxg")
    if root.handlers:
        # The relay's log keeps the traceback for the bug report.
        root.error("internal error", exc_info=e)
        where = "the traceback is in the log"
    else:
        where = "MXG_DEBUG=1 shows the traceback"
    _say(f"internal error: {type(e).__name__}: {e} ({where})")
    return SOFTWARE


def _say(line: str) -> None:
    print(f"mxg: {line}", file=sys.stderr)
