"""The ``mxg`` command.

``mxg run`` starts the relay; ``mxg config check|example`` validates or
prints configuration; ``mxg queue list|show|flush|hold|release|delete``
works on the queue of a running or stopped relay (through its database;
the relay picks changes up within a second); ``mxg version``.

One module per command group: `run`, `config`, `queue`, `classify`,
`check`; `parser` builds the command line and holds `main` (the
``mxg`` console script and ``python -m mxg``). Each imports the heavy
modules only in the subcommand that needs them.
"""

from __future__ import annotations

from mxg.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
