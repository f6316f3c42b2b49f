"""``mxg prune [--keep DURATION] [--dry-run]``: removes what `[retention]`
no longer keeps, now, as the relay does every `prune_interval`."""

from __future__ import annotations

import argparse
from typing import Any

from mxg.cli.common import _load, operator
from mxg.cli.queue import _store
from mxg.errors import MxgError


def cmd_prune(args: argparse.Namespace) -> int:
    from mxg.config.base import parse_duration
    from mxg.signing import SigningKey
    from mxg.store import now_ms

    cfg = _load(args)
    keep = cfg.retention.keep
    if args.keep:
        try:
            parsed = parse_duration(args.keep)
        except ValueError as e:
            raise MxgError(f"prune --keep: {e}") from None
        assert isinstance(parsed, float)  # parse_duration of a str
        keep = parsed
    if keep <= 0:
        raise MxgError("prune: [retention] keep is 0 (keep everything); give --keep")
    cutoff = now_ms() - int(keep * 1000)
    store = _store(args)
    key = SigningKey.load(cfg.data.directory)
    pruned = store.prune(
        cutoff, lambda m: (key.key_id, key.sign(m)), actor=operator(), dry_run=args.dry_run
    )
    verb = "would remove" if args.dry_run else "removed"
    covered = (
        f", covered by a checkpoint at record {pruned.checkpoint_seq}"
        if pruned.checkpoint_seq
        else ""
    )
    print(
        f"{verb} {pruned.messages} finished message(s) and {pruned.audit_records} audit "
        f"record(s) older than {keep / 86400:g} days{covered}"
    )
    return 0


def add_prune_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prune",
        help="remove finished messages, evidence and audit records older than [retention] keep",
    )
    p.add_argument("--keep", help="override [retention] keep, e.g. 30d")
    p.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    p.set_defaults(fn=cmd_prune)
