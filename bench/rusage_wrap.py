"""Runs a command and writes the CPU time of it and all its reaped
descendants (getrusage RUSAGE_CHILDREN) to a JSON file when it exits.

    python -m bench.rusage_wrap OUT.json -- command args...

SIGTERM and SIGINT are passed on to the command. The wrapper makes itself
the child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER): Postfix's master
signals its daemons on `postfix stop` and exits without waiting for them,
so they are orphaned; as their subreaper the wrapper reaps them, and their
CPU time counts. Without this, every daemon still alive at the end of a
run (qmgr, smtpd, smtp, tlsmgr, ...) went uncounted.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_orphans() -> None:
    """Waits for every descendant that was orphaned onto the wrapper."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def main() -> int:
    out, sep, *cmd = sys.argv[1:]
    if sep != "--" or not cmd:
        print(__doc__, file=sys.stderr)
        return 2
    become_subreaper()
    child = subprocess.Popen(cmd)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    code = child.wait()
    reap_orphans()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        json.dump(
            {"utime": ru.ru_utime, "stime": ru.ru_stime, "maxrss_kb": ru.ru_maxrss, "exit": code}, f
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
