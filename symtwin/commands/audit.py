"""Check the hash-chained share audit log: any edit, deletion or reordering is reported with its line.

symtwin audit verify FILE [--head HASH]   exit 0 if intact, 1 if broken
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (__doc__ or "").split("\n", 1)[1].strip()
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = sub.add_parser("verify", help="check the chain; report the first broken line and why")
    v.add_argument("file", type=Path, metavar="FILE", help="audit log (JSON lines)")
    v.add_argument(
        "--head", default=None, help="the last record's hash as published elsewhere (catches truncation)"
    )


def run(args: argparse.Namespace) -> int:
    from symtwin.governance.audit import verify

    if not args.file.exists():
        print(f"{args.file}: no such file", file=sys.stderr)
        return 2
    result = verify(args.file, expected_head=args.head)
    if result.ok:
        print(f"{args.file}: {result}")
        return 0
    print(f"{args.file}: {result}", file=sys.stderr)
    return 1
