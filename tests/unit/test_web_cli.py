"""`symtwin web hash-password` and the web: section of a site config (env-referenced hashes)."""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import pytest

from symtwin.commands import web as web_cmd
from symtwin.config import load_site
from symtwin.web.app import config_from_site
from symtwin.web.auth import AuthError, verify_password

ROOT = Path(__file__).resolve().parents[2]


def run_cmd(
    argv: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    web_cmd.add_arguments(parser)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = web_cmd.run(parser.parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_hash_password_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cmd(["hash-password", "--stdin", "--cost", "1024"], "s3cret pw\n", monkeypatch, capsys)
    assert code == 0
    h = out.strip()
    assert h.startswith("scrypt$1024$8$1$") and "s3cret" not in h
    assert verify_password("s3cret pw", h) and not verify_password("s3cret pw\n", h)


def test_hash_password_refuses_empty_and_bad_cost(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cmd(["hash-password", "--stdin"], "\n", monkeypatch, capsys)[0] == 2
    assert run_cmd(["hash-password", "--stdin", "--cost", "1000"], "pw\n", monkeypatch, capsys)[0] == 2


def site_with_web(tmp_path: Path, web_yaml: str) -> Path:
    shutil.copytree(ROOT / "configs" / "profiles", tmp_path / "profiles")
    text = (ROOT / "configs" / "demo.yaml").read_text(encoding="utf-8")
    path = tmp_path / "site.yaml"
    path.write_text(text + "\n" + web_yaml, encoding="utf-8")
    return path


def test_users_from_site_config_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from symtwin.web.auth import hash_password

    ann = hash_password("ann-pw", n=1024)
    bob = hash_password("bob-pw", n=1024)
    monkeypatch.setenv("SYMTWIN_WEB_BOB", bob)
    path = site_with_web(
        tmp_path,
        f"""web:
  session_ttl: 30 min
  users:
    - {{name: ann, party: factory, role: operator, password_hash: "{ann}"}}
    - {{name: bob, party: utility, password_hash: {{env: SYMTWIN_WEB_BOB}}}}
""",
    )
    cfg = config_from_site(load_site(path))
    assert cfg.session_ttl_s == 1800.0
    assert cfg.users["ann"].is_operator and cfg.users["ann"].party == "factory"
    assert cfg.users["bob"].role == "viewer" and verify_password("bob-pw", cfg.users["bob"].password_hash)

    monkeypatch.setenv("SYMTWIN_WEB_BOB", "plain-text-password")
    with pytest.raises(AuthError, match="bob"):
        config_from_site(load_site(path))
