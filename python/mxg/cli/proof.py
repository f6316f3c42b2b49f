"""``mxg proof QUEUE-ID|MESSAGE-ID`` writes a signed proof of how a
message was protected (JSON, and an HTML page to read and file);
``mxg proof verify FILE [--key PUB]`` checks one offline and names every
field changed since it was signed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mxg.cli.common import _load
from mxg.cli.queue import _store
from mxg.errors import MxgError

# `mxg proof verify` found the proof altered: apart from 1 (an error) and
# 2 (usage or configuration).
EXIT_ALTERED = 3


def _queue_ids(store: Any, wanted: str) -> list[str]:
    """A queue ID, or the messages with this Message-ID (a client may have
    sent one message twice)."""
    if store.message(wanted) is not None:
        return [wanted]
    found: list[str] = store.queue_ids_with_message_id(wanted)
    if not found:
        raise MxgError(f"proof: no message with queue ID or Message-ID {wanted!r}")
    return found


def cmd_proof(args: argparse.Namespace) -> int:
    from mxg import proof, proof_html
    from mxg.signing import SigningKey

    cfg = _load(args)
    store = _store(args)
    key = SigningKey.load(cfg.data.directory)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for qid in _queue_ids(store, args.message):
        document = proof.build(store, cfg, qid)
        if document is None:  # gone between the lookup and now (retention)
            continue
        signed = proof.sign(document, key)
        json_path, html_path = out / f"{qid}.proof.json", out / f"{qid}.proof.html"
        json_path.write_text(json.dumps(signed, indent=2, ensure_ascii=False) + "\n")
        html_path.write_text(proof_html.render(signed))
        print(f"{qid}: {json_path} {html_path}")
    return 0


def cmd_proof_verify(args: argparse.Namespace) -> int:
    from mxg import proof
    from mxg.signing import SigningKey, Verifier, load_public

    try:
        document = json.loads(Path(args.file).read_text())
    except (OSError, ValueError) as e:
        raise MxgError(f"{args.file}: not a readable proof: {e}") from None
    if not isinstance(document, dict):
        raise MxgError(f"{args.file}: not a proof (a JSON object is expected)")
    if args.key:
        verifier = Verifier(load_public(Path(args.key)))
    else:
        verifier = SigningKey.load(_load(args).data.directory).verifier()
    check = proof.verify(document, verifier)
    if check.ok:
        print(f"{args.file}: proof intact, signed by key {verifier.key_id}")
        return 0
    print(f"{args.file}: proof ALTERED")
    if check.problem:
        print(f"  {check.problem}")
    for what, paths in (
        ("changed", check.changed),
        ("added", check.added),
        ("removed", check.removed),
    ):
        for p in paths:
            print(f"  {what}: {p}")
    print(f"  (checked with key {verifier.key_id})", file=sys.stderr)
    return EXIT_ALTERED


def add_proof_parser(sub: Any) -> None:
    pr = sub.add_parser(
        "proof",
        help="write a signed proof of how a message was protected, or verify one",
        description="mxg proof QUEUE-ID|MESSAGE-ID writes QUEUE-ID.proof.json (signed with "
        "the gateway's Ed25519 key) and QUEUE-ID.proof.html; mxg proof verify FILE checks a "
        "proof and names every field changed since it was signed (exit 0 intact, 3 altered).",
    )
    pr.add_argument("message", help="queue ID or Message-ID; 'verify' to check a proof")
    pr.add_argument("file", nargs="?", help="with verify: the proof's JSON file")
    pr.add_argument("--out", default=".", help="directory for the proof files (default: .)")
    pr.add_argument("--key", help="with verify: public key file (mxg keys export)")
    pr.set_defaults(fn=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    if args.message == "verify":
        if not args.file:
            raise MxgError("proof verify: name the proof's JSON file")
        return cmd_proof_verify(args)
    if args.file:
        raise MxgError("proof: one queue ID or Message-ID at a time")
    return cmd_proof(args)
