"""``mxg web token NAME --role read|admin``: makes a bearer token for the
admin API and the operator pages, prints it once, and prints the
``[[web.token]]`` table that goes into the configuration with the
token's SHA-256 (the configuration never holds the token itself)."""

from __future__ import annotations

import argparse
from typing import Any

from mxg.errors import MxgError


def cmd_web_token(args: argparse.Namespace) -> int:
    from mxg.config.sections import WebToken
    from mxg.web.auth import new_token, token_sha256

    token = new_token()
    try:
        entry = WebToken(name=args.name, role=args.role, sha256=token_sha256(token))
    except ValueError as e:
        raise MxgError(
            f"web token: {args.name!r} is not a name: letters, digits and . _ @ - only"
        ) from e
    print(f"token: {token}")
    print("(shown once: give it to its user; mxg keeps only its SHA-256)")
    print()
    print("# add to the configuration, then reload (SIGHUP):")
    print("[[web.token]]")
    print(f'name = "{entry.name}"')
    print(f'role = "{entry.role}"')
    print(f'sha256 = "{entry.sha256}"')
    return 0


def add_web_parser(sub: Any) -> None:
    w = sub.add_parser("web", help="the web surface: tokens for the admin API and pages")
    wsub = w.add_subparsers(dest="web_cmd", required=True)
    t = wsub.add_parser(
        "token",
        help="make a bearer token; prints it once and the configuration lines",
        description="Makes a random token (256 bits) and prints it with the [[web.token]] "
        "table to add to the configuration, which holds only its SHA-256. The name is "
        "recorded as the actor of what the token's user changes.",
    )
    t.add_argument("name", help="who uses it, e.g. alice or monitoring")
    t.add_argument("--role", choices=["read", "admin"], required=True)
    t.set_defaults(fn=cmd_web_token)
