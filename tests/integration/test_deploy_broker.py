"""The documented broker setup, end to end against a real mosquitto: docker/mosquitto/make-certs.sh makes
the CA and server certificate, `symtwin governance mosquitto` the TLS config and password file,
docker/make-secrets.sh puts the site's party password into symtwin's secret file — and a client using
exactly that secret file and CA logs in over TLS (hostname verified), while a wrong CA is refused.
"""

from __future__ import annotations

import getpass
import os
import queue
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from symtwin.cli import main
from tests.support.servers import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[2]


def _connect(port: int, user: str, password: str, ca: Path) -> tuple[bool, str]:
    """(accepted, why) for one TLS login to 127.0.0.1 with certificate and host name checks."""
    answers: queue.Queue[object] = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=str(ca))
    c.on_connect = lambda cl, u, f, rc, p: answers.put(rc)
    try:
        c.connect("127.0.0.1", port)
    except (ssl.SSLError, OSError) as exc:
        _close(c)
        return False, f"TLS: {exc}"
    c.loop_start()
    try:
        rc = answers.get(timeout=5)
        return not rc.is_failure, str(rc)  # type: ignore[attr-defined]
    finally:
        c.disconnect()
        c.loop_stop()
        _close(c)


def _handshake(port: int, ca: Path, server_name: str) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name),
        ):
            return "ok"
    except ssl.SSLCertVerificationError as exc:
        return f"refused: {exc.verify_message}"


def _close(c: mqtt.Client) -> None:
    sock = c.socket()
    if sock is not None:
        sock.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_documented_broker_setup_accepts_the_site_over_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "CERTS_DIR": str(tmp_path / "certs"), "CA_KEY": str(tmp_path / "ca" / "ca.key"),
           "MOSQUITTO_UID": str(os.getuid()), "KEY_BITS": "2048"}  # fmt: skip
    subprocess.run(["sh", str(REPO / "docker" / "mosquitto" / "make-certs.sh"), "broker.park.example", "127.0.0.1"],
                   env=env, check=True, capture_output=True, timeout=60)  # fmt: skip
    certs = tmp_path / "certs"
    for party in ("POWERCO", "PHARMA", "REFINERY", "UTILITY"):
        monkeypatch.delenv(f"SYMTWIN_MQTT_PASSWORD_{party}", raising=False)
    port = free_port()
    out = tmp_path / "generated"
    code = main([
        "governance", "mosquitto", str(REPO / "configs" / "kalundborg.yaml"), "--out", str(out),
        "--port", str(port), "--bind", "127.0.0.1", "--run-as-user", getpass.getuser(),
        "--tls", str(certs / "ca.crt"), str(certs / "server.crt"), str(certs / "server.key"),
    ])  # fmt: skip
    capsys.readouterr()
    assert code == 0
    secrets = tmp_path / "secrets"
    done = subprocess.run(
        ["sh", str(REPO / "docker" / "make-secrets.sh")],
        env={**os.environ, "SECRETS_DIR": str(secrets), "SYMTWIN_PARTY": "utility",
             "MQTT_PASSWORDS_ENV": str(out / "mqtt-passwords.env"), "SYMTWIN_UID": str(os.getuid())},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    password = (secrets / "symtwin_mqtt_password").read_text()

    broker = Mosquitto(tmp_path, port, (out / "mosquitto.conf").read_text())
    broker.start()
    try:
        ok, why = _connect(port, "utility", password, certs / "ca.crt")
        assert ok, why
        ok, _ = _connect(port, "utility", password + "x", certs / "ca.crt")
        assert not ok, "a wrong password was accepted"
        other = tmp_path / "other"
        subprocess.run(["sh", str(REPO / "docker" / "mosquitto" / "make-certs.sh"), "127.0.0.1"],
                       env={**env, "CERTS_DIR": str(other), "CA_KEY": str(tmp_path / "other-ca" / "ca.key")},
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        # the handshake itself: the broker's certificate verifies against its CA with host name checks,
        # and not against another CA
        assert _handshake(port, certs / "ca.crt", "broker.park.example") == "ok"
        assert _handshake(port, certs / "ca.crt", "wrong.park.example").startswith("refused")
        assert _handshake(port, other / "ca.crt", "broker.park.example").startswith("refused")
    finally:
        broker.stop()
