"""``mxg audit show|verify|checkpoint`` and ``mxg keys export``: reads and
checks the tamper-evident audit trail (`mxg.audit_trail`), signs its tail
now, and prints the gateway's public key for whoever checks offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mxg.cli.common import _load
from mxg.cli.queue import _store

# `mxg audit verify` found the trail broken: apart from 1 (an error) and 2
# (usage or configuration), so that a script cannot take one for the other.
EXIT_BROKEN = 3


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from mxg.audit_trail import verify
    from mxg.signing import SigningKey, Verifier, load_public

    store = _store(args)
    if args.key:
        verifier = Verifier(load_public(Path(args.key)))
    else:
        verifier = SigningKey.load(_load(args).data.directory).verifier()
    verdict = verify(store, verifier)
    span = f"records {verdict.first}-{verdict.last}" if verdict.records else "no records"
    summary = f"{verdict.records} audit records ({span}), {verdict.checkpoints} checkpoints"
    if verdict.broken is None:
        print(f"audit trail intact: {summary}, signed by key {verifier.key_id}")
        return 0
    print(f"audit trail BROKEN at record {verdict.broken.seq}: {verdict.broken.what}")
    print(f"  ({summary})", file=sys.stderr)
    return EXIT_BROKEN


def cmd_audit_show(args: argparse.Namespace) -> int:
    """The trail's records (stored compressed, so SQL cannot read them),
    oldest first: all, those after a record, or one message's."""
    import orjson

    from mxg.evidence import rfc3339

    store = _store(args)
    if args.queue_id:
        records = [r for r in store.audit_of(args.queue_id) if r.seq > args.after]
    else:
        records = list(store.audit_records(args.after))
    if args.limit:
        records = records[: args.limit]
    for r in records:
        if args.json:
            row = {
                "seq": r.seq,
                "at": rfc3339(r.at_ms),
                "kind": r.kind,
                "queue_id": r.queue_id,
                "actor": r.actor,
                "data": orjson.Fragment(r.data),
                "block": r.block,
                "block_hash": r.block_hash.hex(),
            }
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        else:
            print(
                f"{r.seq:>8} {rfc3339(r.at_ms)} {r.kind:<14} {r.queue_id or '-':<18} "
                f"{r.actor:<16} {r.data}"
            )
    return 0


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    from mxg.audit_trail import sign_checkpoint
    from mxg.signing import SigningKey

    key = SigningKey.load(_load(args).data.directory)
    checkpoint = sign_checkpoint(_store(args), key)
    if checkpoint is None:
        print("nothing to sign: the last record is already covered by a checkpoint")
    else:
        print(f"checkpoint signed at record {checkpoint.seq} (key {checkpoint.key_id})")
    return 0


def cmd_keys_export(args: argparse.Namespace) -> int:
    from mxg.signing import SigningKey, public_pem

    # SigningKey.load says in one line when there is no key yet.
    key = SigningKey.load(_load(args).data.directory)
    sys.stdout.write(public_pem(key.public).decode())
    return 0


def add_audit_parsers(sub: Any) -> None:
    """``mxg audit ...`` and ``mxg keys ...`` on the command line."""
    au = sub.add_parser("audit", help="the tamper-evident audit trail")
    ausub = au.add_subparsers(dest="audit_cmd", required=True)
    ash = ausub.add_parser(
        "show",
        help="print the trail's records",
        description="Prints audit records oldest first: all of them, those after a record "
        "number, or one message's. The records are stored compressed; this is how to read them.",
    )
    ash.add_argument("queue_id", nargs="?", help="only this message's records")
    ash.add_argument("--after", type=int, default=0, help="only records after this number")
    ash.add_argument("--limit", type=int, default=0, help="at most this many records")
    ash.add_argument("--json", action="store_true", help="JSON lines")
    ash.set_defaults(fn=cmd_audit_show)
    av = ausub.add_parser(
        "verify",
        help="check every record and signed checkpoint",
        description="Walks the hash chain and checks the signed checkpoints; names the first "
        "record that was changed, removed, inserted or moved. Exit status: 0 intact, 3 broken, "
        "1 or 2 an error.",
    )
    av.add_argument("--key", help="public key file (mxg keys export); default: the relay's own")
    av.set_defaults(fn=cmd_audit_verify)
    ac = ausub.add_parser("checkpoint", help="sign the trail's last record now")
    ac.set_defaults(fn=cmd_audit_checkpoint)
    keys = sub.add_parser("keys", help="the gateway's signing key")
    ksub = keys.add_subparsers(dest="keys_cmd", required=True)
    ke = ksub.add_parser("export", help="print the public key (PEM)")
    ke.set_defaults(fn=cmd_keys_export)
