"""The ``symtwin`` command line. Subcommands live in ``symtwin.commands.<name>`` and are imported only
when they run, so ``symtwin --help`` stays fast and never loads numba or CasADi."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# name → module under symtwin.commands, in the order `--help` lists them.
COMMANDS = (
    "validate", "schema", "sim", "run", "commission", "simulate", "evaluate", "forecast", "calibrate",
    "certs", "governance", "audit", "settle", "web",
)


def _version() -> str:
    try:
        return version("symtwin")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def _summary(module: str) -> str | None:
    """First docstring line of a command module, read without importing it (keeps --help cheap)."""
    spec = importlib.util.find_spec(f"symtwin.commands.{module}")
    if spec is None or spec.origin is None:
        return None
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8")))
    return (doc or "").strip().splitlines()[0] if doc else ""


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="symtwin",
        description="Digital twin and model-predictive control for heat and steam exchanges in an "
        "industrial-symbiosis park.",
        epilog="Run `symtwin COMMAND --help` for a command's options. Exit codes: 0 ok, 1 a check failed, "
        "2 bad config or usage.",
    )
    parser.add_argument("--version", action="version", version=f"symtwin {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for name in COMMANDS:
        summary = _summary(name)
        if summary is None:
            continue  # command not built yet
        subparsers[name] = sub.add_parser(name, help=summary, description=summary)
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    # Only the chosen command's module is imported, to add its arguments.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    if chosen in subparsers:
        module = importlib.import_module(f"symtwin.commands.{chosen}")
        module.add_arguments(subparsers[chosen])
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 0 if not argv else 2
    # Default: our own INFO lines, libraries' warnings; -v adds every decision, -vv everything at DEBUG.
    ours = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=logging.DEBUG if args.verbose >= 2 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.verbose < 2:
        for name in ("symtwin", "twin", "sim", "adapters", "controllers"):
            logging.getLogger(name).setLevel(ours)
        if args.verbose == 0:
            logging.getLogger("controllers.supervisor").setLevel(logging.WARNING)
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
