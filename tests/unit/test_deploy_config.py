"""The deployment's site-config part: the example validates, a plain-text secret is refused, and the
broker config generated for the compose stack points at the files compose mounts.

``symtwin validate`` runs through the real CLI entry point (``symtwin.cli.main``) on the reference park
(configs/kalundborg.yaml) with its ``adapters:`` section replaced by docker/site-adapters.example.yaml.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from symtwin.cli import main
from symtwin.config import EXIT_CONFIG_ERROR

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "docker" / "site-adapters.example.yaml").read_text()


def _site_with_example(tmp_path: Path, adapters: str = EXAMPLE) -> Path:
    base = (REPO / "configs" / "kalundborg.yaml").read_text()
    start = base.index("\nadapters:\n") + 1
    after = re.search(r"^[a-z_]+:", base[start + len("adapters:") :], flags=re.M)
    rest = base[start + len("adapters:") + after.start() :] if after else ""
    assert "\nweb:" not in base, "the reference config grew a web section: merge it here"
    (tmp_path / "profiles").symlink_to(REPO / "configs" / "profiles")
    path = tmp_path / "site.yaml"
    path.write_text(base[:start] + adapters + rest)
    return path


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(["validate", str(path)])
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_deployment_example_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _validate(_site_with_example(tmp_path), capsys)
    assert code == 0, err


PLAIN = [
    ("influx_token", "token: {credential: influx-token}", "token: s3cr3t-t0ken-4711", "adapters.influx.token"),
    ("mqtt_password", "password: {credential: mqtt-password}", "password: hunter2-mqtt", "adapters.mqtt.password"),
    ("opcua_password", "password: {credential: opcua-password}", "password: hunter2-opcua", "adapters.opcua.password"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "ref", "plain", "field"), PLAIN, ids=[p[0] for p in PLAIN])
def test_plain_text_secret_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, ref: str, plain: str, field: str
) -> None:
    assert ref in EXAMPLE
    path = _site_with_example(tmp_path, EXAMPLE.replace(ref, plain))
    code, err = _validate(path, capsys)
    assert code == EXIT_CONFIG_ERROR == 2
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if plain in ln)
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: {re.escape(field)}", err), err
    assert "plain text" in err and "{credential: NAME}" in err


def test_refusal_does_not_echo_the_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _site_with_example(tmp_path, EXAMPLE.replace(PLAIN[0][1], PLAIN[0][2]))
    code, err = _validate(path, capsys)
    assert code == 2
    assert "s3cr3t-t0ken-4711" not in err


def test_broker_config_for_compose_uses_the_mounted_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented `symtwin governance mosquitto` command yields a config that works inside the container."""
    if shutil.which("mosquitto_passwd") is None and not Path("/usr/bin/mosquitto_passwd").exists():
        pytest.skip("mosquitto_passwd not installed (Debian package mosquitto)")
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    broker = compose["services"]["mosquitto"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in broker["volumes"]}
    out = tmp_path / "generated"
    code = main([
        "governance", "mosquitto", str(REPO / "configs" / "kalundborg.yaml"), "--out", str(out),
        "--files-dir", "/mosquitto/config", "--port", "8883", "--bind", "",
        "--tls", "/mosquitto/certs/ca.crt", "/mosquitto/certs/server.crt", "/mosquitto/certs/server.key",
    ])  # fmt: skip
    capsys.readouterr()
    assert code == 0
    conf = (out / "mosquitto.conf").read_text()
    assert broker["command"][-1] == "/mosquitto/config/mosquitto.conf"
    assert mounts["/mosquitto/config"] == "./mosquitto/generated"
    assert re.search(r"^listener 8883$", conf, flags=re.M), conf
    assert broker["ports"] == ["8883:8883"]
    assert "allow_anonymous false" in conf
    for key in ("password_file", "acl_file", "cafile", "certfile", "keyfile"):
        value = re.search(rf"^{key} (\S+)$", conf, flags=re.M)
        assert value, key
        folder = str(Path(value.group(1)).parent)
        assert folder in mounts, f"{key} {value.group(1)} is outside the container's mounts"
    for generated in ("passwd", "acl"):
        assert (out / generated).exists() and (out / generated).stat().st_mode & 0o077 == 0
    # the site's MQTT client user is one of the broker's users
    users = {ln.split(":")[0] for ln in (out / "passwd").read_text().splitlines()}
    assert yaml.safe_load(EXAMPLE)["adapters"]["mqtt"]["username"] in users
