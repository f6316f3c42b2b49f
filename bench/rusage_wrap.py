"""Runs a command and writes the CPU time of it and all its reaped
descendants (getrusage RUSAGE_CHILDREN) to a JSON file when it exits.

    python -m bench.rusage_wrap OUT.json -- command args...

SIGTERM and SIGINT are passed on to the command. Postfix's master reaps
its daemons, so its children's CPU is included once the master exits.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys


def main() -> int:
    out, sep, *cmd = sys.argv[1:]
    if sep != "--" or not cmd:
        print(__doc__, file=sys.stderr)
        return 2
    child = subprocess.Popen(cmd)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    code = child.wait()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        json.dump(
            {"utime": ru.ru_utime, "stime": ru.ru_stime, "maxrss_kb": ru.ru_maxrss, "exit": code}, f
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
