"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import Mosquitto, free_port, running_mosquitto
from tests.support.tls import TestPki, make_test_pki


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, TestPki]]:
    """mosquitto with a TLS listener (server certificate from a test CA) and a password file: user
    ``plant``, password ``s3cret``; anonymous clients refused."""
    pki = make_test_pki(tmp_path / "pki")
    pwfile = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pwfile), "plant", "s3cret"], check=True, capture_output=True
    )
    port = free_port()
    conf = (
        # As root, mosquitto would drop to its own user, which cannot read pytest's 0700 tmp dirs.
        "user root\n"
        f"listener {port} 127.0.0.1\n"
        f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        f"allow_anonymous false\npassword_file {pwfile}\n"
    )
    with running_mosquitto(tmp_path, conf, port) as broker:
        yield broker, pki
