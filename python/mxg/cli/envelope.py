"""``mxg envelope seal MESSAGE [--password-file F | --generate] -o PAGE
[--mail FILE --sender ADDR --to ADDR]`` seals a message file into a
recipient's page (and, with --mail, its carrier mail);
``mxg envelope open PAGE [--password-file F] -o MESSAGE`` opens one.

A password is never an argument (it would sit in the shell's history and
in every process listing): it is typed at a prompt without echo, read
from a file's first line, or generated and printed once to the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from mxg.cli.common import _config_path
from mxg.errors import EnvelopeError


def _typed(confirm: bool) -> str:
    if not sys.stdin.isatty():
        raise EnvelopeError("envelope: no terminal to type the password: give --password-file")
    first = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise EnvelopeError("envelope: the two passwords differ")
    return first


def _from_file(name: str) -> str:
    """The file's first line ("-": standard input), without its line end."""
    if name == "-":
        text = sys.stdin.readline()
    else:
        with Path(name).open(encoding="utf-8") as f:
            text = f.readline()
    return text.rstrip("\r\n")


def _password(args: argparse.Namespace, *, sealing: bool) -> str:
    from mxg.envelope import check_password, generate_password

    if sealing and args.generate:
        password = generate_password()
        # Once, to the terminal (not the log): the operator passes it on.
        print(f"password: {password}", file=sys.stderr if args.out == "-" else sys.stdout)
        return password
    password = _from_file(args.password_file) if args.password_file else _typed(sealing)
    if sealing:
        check_password(password)
    return password


def _settings(args: argparse.Namespace) -> tuple[Path | None, int, str]:
    """[envelope] templates and iterations, server.hostname; the defaults
    when no configuration file is given or found."""
    from mxg.config.load import load_config

    cfg = load_config(_config_path(args))
    return cfg.envelope.templates, cfg.envelope.iterations, cfg.server.hostname


def _write(name: str, data: bytes) -> None:
    if name == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(name).write_bytes(data)


def cmd_envelope_seal(args: argparse.Namespace) -> int:
    from mxg import envelope

    if args.mail and not (args.sender and args.to):
        raise EnvelopeError("envelope seal: --mail needs --sender and --to")
    original = Path(args.message).read_bytes()
    templates, iterations, hostname = _settings(args)
    password = _password(args, sealing=True)
    page = envelope.page(original, password, templates=templates, iterations=iterations)
    _write(args.out, page)
    if args.mail:
        mail = envelope.seal(
            original,
            password,
            sender=args.sender,
            recipients=args.to,
            hostname=hostname,
            templates=templates,
            iterations=iterations,
        )
        _write(args.mail, mail)
    return 0


def cmd_envelope_open(args: argparse.Namespace) -> int:
    from mxg import envelope

    page = Path(args.page).read_bytes()
    _write(args.out, envelope.unseal(page, _password(args, sealing=False)))
    return 0


def add_envelope_parser(sub: Any) -> None:
    env = sub.add_parser("envelope", help="seal a message into a secure envelope, or open one")
    esub = env.add_subparsers(dest="envelope_cmd", required=True)
    seal = esub.add_parser(
        "seal",
        help="seal a message file (RFC 5322) into a recipient's HTML page",
        description="Encrypts the whole message (AES-256-GCM, key from the password by "
        "PBKDF2-HMAC-SHA256) into one self-contained HTML page that opens offline in a "
        "browser. The password is typed (twice, without echo), read from --password-file, "
        "or generated with --generate and printed once. See docs/secure-envelope.md.",
    )
    seal.add_argument("message", help="the message file")
    how = seal.add_mutually_exclusive_group()
    how.add_argument("--password-file", help="read the password from this file's first line")
    how.add_argument("--generate", action="store_true", help="generate a password, print it once")
    seal.add_argument("-o", "--out", required=True, help="the page to write ('-': stdout)")
    seal.add_argument("--mail", help="also write the carrier mail to this file")
    seal.add_argument("--sender", help="with --mail: the envelope sender")
    seal.add_argument("--to", action="append", help="with --mail: a recipient (repeatable)")
    seal.set_defaults(fn=cmd_envelope_seal)

    opened = esub.add_parser("open", help="decrypt a page back into the message")
    opened.add_argument("page", help="the envelope's HTML page")
    opened.add_argument("--password-file", help="read the password from this file's first line")
    opened.add_argument("-o", "--out", required=True, help="the message to write ('-': stdout)")
    opened.set_defaults(fn=cmd_envelope_open)
