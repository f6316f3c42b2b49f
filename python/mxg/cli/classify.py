"""``mxg classify``: classifies a message file as the relay would and
shows why: its class, the rules that fired and each recipient's
transport requirement. It never sends mail."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mxg.cli.common import _load


def cmd_classify(args: argparse.Namespace) -> int:
    from mxg import _core
    from mxg.boundary import draft_envelope
    from mxg.classify import classify, requirement

    cfg = _load(args)
    message = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    features = json.loads(_core.scan(message, json.dumps(cfg.scan_options())))
    env = draft_envelope(args.sender, args.to)
    c = classify(cfg, env, features)
    reqs = [
        requirement(cfg, k, c.to_json(), cfg.policy_for(a.rpartition("@")[2].lower()))
        for a, k in zip(args.to, c.recipient_classes, strict=True)
    ]
    if args.json:
        out = c.to_json() | {
            "features": features,
            "recipients": [
                {"address": a, "class": k, "level": r.level, "e2e_missing": r.e2e_missing}
                for a, k, r in zip(args.to, c.recipient_classes, reqs, strict=True)
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"class: {c.message_class}")
    for f in c.fired:
        only = f" (recipients {', '.join(f['recipients'])})" if "recipients" in f else ""
        print(f"  {f['rule']}: {f['class']} - {f['why']}{only}")
    for note in c.notes:
        print(f"  note: {note}")
    print(f"end-to-end encrypted: {c.e2e or 'no'}")
    found = ", ".join(f"{k} {v}" for k, v in sorted(features.get("detectors", {}).items()))
    print(f"detectors: {found or 'none'}")
    for a, k, r in zip(args.to, c.recipient_classes, reqs, strict=True):
        extra = "; end-to-end encryption missing" if r.e2e_missing else ""
        print(f"<{a}>: class {k}, needs {r.level} ({r.why}){extra}")
    return 0


def add_classify_parser(sub: Any) -> None:
    cl = sub.add_parser(
        "classify",
        help="classify a message file as the relay would (never sends mail)",
        description="Scans an RFC 5322 message with the configured rules and prints its "
        "risk class, the rules that fired and each recipient's transport requirement.",
    )
    cl.add_argument("file", help="message file ('-' for standard input)")
    cl.add_argument("--from", dest="sender", default="", help="envelope sender")
    cl.add_argument("--to", action="append", default=[], help="envelope recipient (repeat)")
    cl.add_argument("--json", action="store_true")
    cl.set_defaults(fn=cmd_classify)
