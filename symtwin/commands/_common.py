"""Helpers shared by subcommands: loading a config the same way everywhere."""

from __future__ import annotations

import argparse
import sys

from symtwin.config import EXIT_CONFIG_ERROR, ConfigError, LoadedSite, load_site


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="site config (YAML), e.g. configs/kalundborg.yaml")


def load_or_exit(path: str) -> LoadedSite:
    """Load a site config or print every problem to stderr and exit with code 2."""
    try:
        return load_site(path)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
