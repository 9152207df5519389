"""Generate the self-signed OPC UA client certificate and key (application URI in SubjectAltName).

Writes ``client_cert.der`` (what the client sends and what the server operator puts in the server's
trust list), ``client_cert.pem`` (same certificate, readable) and ``client_key.pem`` (mode 0600) into
``--out``. Existing files are kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="directory to write the certificate and key into"
    )
    parser.add_argument(
        "--application-uri",
        required=True,
        help="ApplicationUri the client announces (adapters.opcua.application_uri in the site config), e.g. urn:acme:symtwin",
    )
    parser.add_argument(
        "--hostname",
        action="append",
        default=None,
        help="DNS name or IP address for SubjectAltName (repeatable; default: this machine's host name)",
    )
    parser.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing certificate and key")


def run(args: argparse.Namespace) -> int:
    from adapters.opcua.certs import CertificateError, generate_certificate

    hostnames = args.hostname or [socket.gethostname()]
    if args.days < 1:
        print("symtwin certs: --days must be at least 1", file=sys.stderr)
        return 2
    try:
        paths = generate_certificate(
            args.out, args.application_uri, hostnames, force=args.force, days=args.days
        )
    except CertificateError as exc:
        print(f"symtwin certs: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"symtwin certs: cannot write into {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"certificate: {paths.cert_der} (and {paths.cert_pem.name})")
    print(f"private key: {paths.key_pem}")
    print(f"application URI: {args.application_uri}; hosts: {', '.join(hostnames)}")
    print("Give the server operator the certificate to trust; keep the key on this machine.")
    return 0
