"""The production service against the real site: OPC UA in and out, history, live view, /metrics.

Secrets (OPC UA, MQTT and InfluxDB passwords/tokens) come from the environment or from a credentials
directory ($CREDENTIALS_DIRECTORY with systemd's LoadCredential=), never from the config.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from symtwin.commands._common import add_config_argument, load_or_exit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--port", type=int, default=None, help="live view and /metrics port (default: web.port)")
    parser.add_argument("--host", default=None, help="address the live view listens on (default: web.host)")
    parser.add_argument("--state-dir", type=Path, default=Path("var"),
                        help="where the local history store and dead letters are kept (default var)")
    parser.add_argument("--credentials-dir", type=Path, default=None,
                        help="directory of secret files (default $CREDENTIALS_DIRECTORY)")


def run(args: argparse.Namespace) -> int:
    from symtwin.runtime.app import RunOptions, serve
    from symtwin.secrets import SecretError

    site = load_or_exit(args.config)
    web = site.config.web
    opts = RunOptions(simulate=False, host=args.host or web.host, port=web.port if args.port is None else args.port,
                      state_dir=args.state_dir, credentials_dir=args.credentials_dir, progress=False)
    try:
        return asyncio.run(serve(site, opts))
    except SecretError as exc:
        logging.getLogger("symtwin").error("%s", exc)
        return 2
