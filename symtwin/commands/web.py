"""Live-view helpers: hash a user's password for the site config's web.users.

symtwin web hash-password            prompts twice (no echo) and prints scrypt$n$r$p$salt$hash
echo -n PW | symtwin web hash-password --stdin
Put the printed hash into web.users[].password_hash, or into an environment variable referenced as
{env: NAME}. The password itself never goes into a file.
"""

from __future__ import annotations

import argparse
import getpass
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (__doc__ or "").split("\n", 1)[1].strip()
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    h = sub.add_parser(
        "hash-password", help="print the scrypt hash of a password read from the terminal or stdin"
    )
    h.add_argument(
        "--stdin", action="store_true", help="read the password from the first line of stdin (no prompt)"
    )
    h.add_argument(
        "--cost",
        type=int,
        default=None,
        metavar="N",
        help="scrypt cost parameter n, a power of two (default 16384)",
    )


def run(args: argparse.Namespace) -> int:
    from symtwin.web.auth import DEFAULT_N, AuthError, hash_password

    if args.stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ; nothing printed", file=sys.stderr)
            return 1
    n = args.cost if args.cost is not None else DEFAULT_N
    try:
        print(hash_password(password, n=n))
    except (AuthError, ValueError) as exc:
        print(f"cannot hash: {exc}", file=sys.stderr)
        return 2
    return 0
