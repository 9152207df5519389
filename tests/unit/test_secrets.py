from __future__ import annotations

from pathlib import Path

import pytest

from symtwin.config.schema import SecretRef
from symtwin.secrets import SecretError, resolve


def test_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMTWIN_TEST_PW", "s3cret")
    assert resolve(SecretRef(env="SYMTWIN_TEST_PW"), "MQTT password") == "s3cret"


def test_missing_env_secret_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYMTWIN_ABSENT", raising=False)
    with pytest.raises(SecretError, match="SYMTWIN_ABSENT is not set"):
        resolve(SecretRef(env="SYMTWIN_ABSENT"), "InfluxDB token")


def test_credential_file_must_be_private(tmp_path: Path) -> None:
    f = tmp_path / "mqtt-password"
    f.write_text("pw\n")
    f.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 0400"):
        resolve(SecretRef(credential="mqtt-password"), "MQTT password", tmp_path)
    f.chmod(0o400)
    assert resolve(SecretRef(credential="mqtt-password"), "MQTT password", tmp_path) == "pw"


def test_none_is_none() -> None:
    assert resolve(None, "x") is None
