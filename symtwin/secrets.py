"""Secrets come from the environment or a credentials directory, never from the site config.

``{env: NAME}`` reads the environment variable NAME; ``{credential: NAME}`` reads the file NAME from
``$CREDENTIALS_DIRECTORY`` (set by systemd's ``LoadCredential=``) or from the directory given to the
service. Files must not be readable by group or others.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from symtwin.config.schema import SecretRef


class SecretError(Exception):
    """A secret the config refers to cannot be read; the message says which and how to provide it."""


def resolve(ref: SecretRef | None, what: str, credentials_dir: str | Path | None = None) -> str | None:
    """The secret's value, or None when ``ref`` is None. ``what`` names it in errors ("MQTT password")."""
    if ref is None:
        return None
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise SecretError(f"{what}: environment variable {ref.env} is not set; set it in the service's "
                              f"environment file (mode 0400) or use {{credential: NAME}}")
        return value
    assert ref.credential is not None
    base = credentials_dir or os.environ.get("CREDENTIALS_DIRECTORY")
    if not base:
        raise SecretError(f"{what}: credential {ref.credential!r} needs $CREDENTIALS_DIRECTORY (systemd "
                          "LoadCredential=) or --credentials-dir")
    path = Path(base) / ref.credential
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SecretError(f"{what}: credential file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"{what}: {path} is readable by group or others (mode {stat.S_IMODE(mode):o}); "
                          f"chmod 0400 it")
    return path.read_text(encoding="utf-8").rstrip("\n")
