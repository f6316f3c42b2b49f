"""``mxg decide``: an operator takes a sender's decision for a recipient
parked by ``on_unmet = "ask-sender"``, through the same implementation
as the decision page (`mxg.decide`), on the queue database of a running
or stopped relay (the relay picks the change up within one queue scan).
A choice the class does not offer, and class ``secret`` at normal risk
always (ARCHITECTURE.md rule 8b), needs ``--force`` and a ``--reason``;
both are recorded with the operator's name."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mxg.cli.common import _load, operator
from mxg.cli.queue import _store
from mxg.errors import MxgError


def add_decide_parser(sub: Any) -> None:
    from mxg.decide import CHOICES

    p = sub.add_parser(
        "decide",
        help="take the sender's decision for a recipient awaiting it",
        description="For a recipient in the state awaiting-sender (on_unmet = ask-sender): "
        "keep trying until the message's lifetime ends, send at class normal's level "
        "(normal), send as a secure envelope, or cancel (--dsn: with a DSN to the sender). "
        "Recorded with the operator's name in the message's events and the audit trail.",
    )
    p.add_argument("queue_id")
    p.add_argument("--recipient", required=True, help="the parked recipient's address")
    p.add_argument("--choice", required=True, choices=CHOICES)
    p.add_argument("--dsn", action="store_true", help="with --choice cancel: send a DSN")
    p.add_argument("--reason", default="", help="why (recorded; required with --force)")
    p.add_argument(
        "--password-file",
        help="with --choice envelope: a file holding the password (else one is generated)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="a choice the class does not offer (secret at normal risk); needs --reason",
    )
    p.set_defaults(fn=cmd_decide)


def cmd_decide(args: argparse.Namespace) -> int:
    from mxg.ops import deciding
    from mxg.ops.spool import spooled

    cfg = _load(args)
    store = _store(args)
    wanted = args.recipient.strip()
    rows = deciding.named(store, args.queue_id, [wanted])
    deciding.checked(
        args.choice,
        dsn=args.dsn,
        password=bool(args.password_file),
        force=args.force,
        reason=args.reason,
    )
    password, carrier = "", None
    if args.choice == "envelope":
        # Sealed from the spooled message (read only); the relay spools
        # the carrier at its next scan.
        _, original = spooled(cfg.spool_dir, args.queue_id)
        msg = store.message(args.queue_id)
        password, carrier = deciding.seal(
            cfg, msg["sender"], rows, typed=_typed(args.password_file), original=original
        )
    done = deciding.take(
        store,
        cfg,
        args.queue_id,
        rows,
        args.choice,
        actor=operator(),
        client="cli",
        dsn=args.dsn,
        reason=args.reason,
        force=args.force,
        carrier=carrier,
    )
    extra = f" at level {done.detail['level']}" if "level" in done.detail else ""
    print(f"{args.queue_id}: {wanted}: {done.choice}{extra}")
    if password and not args.password_file:
        # Shown once, to the operator's terminal; kept nowhere.
        print(f"password (give it to the recipient by phone or text message): {password}")
    return 0


def _typed(password_file: str | None) -> str:
    """The password from --password-file; "" to generate one."""
    if not password_file:
        return ""
    try:
        typed = Path(password_file).read_text().rstrip("\r\n")
    except OSError as e:
        raise MxgError(f"{password_file}: {e.strerror or e}") from None
    if not typed:
        raise MxgError(f"{password_file}: empty (leave --password-file out to generate one)")
    return typed
